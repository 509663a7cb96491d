package controlplane

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// readyTimeout bounds each component's start; a cold start is ~1 s, so a
// minute means something is wrong and the user should see the log.
const readyTimeout = 60 * time.Second

// waitHealthy polls endpoint with the admin identity until it answers 200,
// a component fails, or the timeout passes.
func waitHealthy(ctx context.Context, name string, admin *rest.Config, endpoint string, errs <-chan componentError) error {
	transport, err := rest.TransportFor(admin)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: transport, Timeout: 2 * time.Second}
	var last string
	return pollReady(ctx, errs, func() (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, body)
		return resp.StatusCode == http.StatusOK, nil
	}, func() error {
		return fmt.Errorf("%s not ready after %s (last answer: %s)", name, readyTimeout, last)
	})
}

// waitDefaultServiceAccount waits until the ServiceAccount controller has
// created default/default.
func waitDefaultServiceAccount(ctx context.Context, admin *rest.Config, errs <-chan componentError) error {
	client, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	return pollReady(ctx, errs, func() (bool, error) {
		_, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading the default ServiceAccount: %w", err)
		}
		return true, nil
	}, func() error {
		return fmt.Errorf("kube-controller-manager did not create the default ServiceAccount within %s", readyTimeout)
	})
}

// pollReady calls check every 50 ms until it is done or fails, a component
// fails, ctx ends, or readyTimeout passes (then timedOut says why).
func pollReady(ctx context.Context, errs <-chan componentError, check func() (bool, error), timedOut func() error) error {
	deadline := time.After(readyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if done, err := check(); done || err != nil {
			return err
		}
		select {
		case ce := <-errs:
			return fmt.Errorf("%s: %w", ce.component, ce.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return timedOut()
		case <-tick.C:
		}
	}
}
