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
	deadline := time.After(readyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case ce := <-errs:
			return fmt.Errorf("%s: %w", ce.component, ce.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("%s not ready after %s (last answer: %s)", name, readyTimeout, last)
		case <-tick.C:
		}
	}
}

// waitDefaultServiceAccount waits until the ServiceAccount controller has
// created default/default.
func waitDefaultServiceAccount(ctx context.Context, admin *rest.Config, errs <-chan componentError) error {
	client, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	deadline := time.After(readyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading the default ServiceAccount: %w", err)
		}
		select {
		case ce := <-errs:
			return fmt.Errorf("%s: %w", ce.component, ce.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("kube-controller-manager did not create the default ServiceAccount within %s", readyTimeout)
		case <-tick.C:
		}
	}
}
