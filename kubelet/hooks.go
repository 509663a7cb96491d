package kubelet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/kubernetes/pkg/kubelet/events"
	httpprobe "k8s.io/kubernetes/pkg/probe/http"
)

// Lifecycle hooks, with upstream's semantics (kubelet/lifecycle/handlers.go
// and kuberuntime_container.go's startContainer and killContainer):
// postStart runs right after the container started, and its failure kills
// the container; preStop runs before every kill of a container, within the
// grace period, and the container gets what is left of it.

// minimumGracePeriodInSeconds is the least a container is given to stop,
// even when its preStop hook used the whole grace period (upstream's).
const minimumGracePeriodInSeconds = 2

// reasonPostStartHookError is the waiting reason of a container whose
// postStart hook failed (upstream's ErrPostStartHook).
const reasonPostStartHookError = "PostStartHookError"

// lifecycleHTTPClient sends httpGet hooks. Hooks may point anywhere, so
// TLS is not verified and the client carries no credentials, as
// upstream's; redirects to other hosts are not followed. Connections are
// not kept: the next request goes to another pod, or to none.
var lifecycleHTTPClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives: true,
	},
	CheckRedirect: httpprobe.RedirectChecker(false),
}

// runHandler runs one lifecycle handler against a container; on failure
// it returns upstream's message as well as the error.
func (a *Agent) runHandler(ctx context.Context, pod *v1.Pod, c *v1.Container, containerID string, podIPs []string, h *v1.LifecycleHandler) (string, error) {
	switch {
	case h.Exec != nil:
		// No timeout of its own: the caller's context bounds it.
		stdout, stderr, err := a.runtime.ExecSync(ctx, containerID, h.Exec.Command, 0)
		if err != nil {
			return fmt.Sprintf("Exec lifecycle hook (%v) for Container %q in Pod %q failed - error: %v, message: %q", h.Exec.Command, c.Name, podDesc(pod), err, string(append(stdout, stderr...))), err
		}
		return "", nil
	case h.HTTPGet != nil:
		if a.prober.noNetwork != "" {
			a.event(pod, v1.EventTypeNormal, "HookNotRun", "HTTP lifecycle hook (%s) of container %s not sent: %s", h.HTTPGet.Path, c.Name, a.prober.noNetwork)
			return "", nil
		}
		if err := a.runHTTPHandler(ctx, pod, c, h.HTTPGet, podIPs); err != nil {
			return fmt.Sprintf("HTTP lifecycle hook (%s) for Container %q in Pod %q failed - error: %v", h.HTTPGet.Path, c.Name, podDesc(pod), err), err
		}
		return "", nil
	case h.Sleep != nil:
		select {
		case <-ctx.Done():
			err := errors.New("container terminated before sleep hook finished")
			return fmt.Sprintf("Sleep lifecycle hook (%d) for Container %q in Pod %q failed - error: %v", h.Sleep.Seconds, c.Name, podDesc(pod), err), err
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
			return "", nil
		}
	}
	err := fmt.Errorf("invalid handler: %v", h)
	return fmt.Sprintf("Cannot run handler: %v", err), err
}

// runHTTPHandler sends the hook's GET to its host, the pod IP when none
// is given. Any response counts as success, as upstream; an HTTPS hook
// answered in plain HTTP is retried over HTTP, with an event.
func (a *Agent) runHTTPHandler(ctx context.Context, pod *v1.Pod, c *v1.Container, get *v1.HTTPGetAction, podIPs []string) error {
	host := get.Host
	if host == "" {
		if len(podIPs) == 0 {
			return errors.New("failed to find networking container: the pod has no IP")
		}
		host = podIPs[0]
	}
	req, err := httpprobe.NewRequestForHTTPGetAction(get, c, host, "lifecycle")
	if err != nil {
		return err
	}
	resp, err := lifecycleHTTPClient.Do(req.WithContext(ctx))
	discardBody(resp)
	if isHTTPResponseError(err) {
		req := req.Clone(ctx)
		req.URL.Scheme = "http"
		req.Header.Del("Authorization")
		resp, httpErr := lifecycleHTTPClient.Do(req)
		discardBody(resp)
		if httpErr == nil {
			a.event(pod, v1.EventTypeWarning, "LifecycleHTTPFallback", "request to HTTPS lifecycle hook %s got HTTP response, retry with HTTP succeeded", req.URL.Host)
			err = nil
		}
	}
	return err
}

func discardBody(resp *http.Response) {
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
}

func isHTTPResponseError(err error) bool {
	var urlErr *url.Error
	return err != nil && errors.As(err, &urlErr) && strings.Contains(urlErr.Err.Error(), "server gave HTTP response to HTTPS client")
}

// postStart runs the container's postStart hook, if it has one, once it
// has started. When the hook fails the container is killed (its preStop
// hook runs first, as upstream), with a FailedPostStartHook event; the
// returned message is then the container's waiting message. The hook ends
// early if the pod is deleted meanwhile.
func (s *podSync) postStart(ctx context.Context, c *v1.Container, containerID string) (string, bool) {
	a, pod := s.agent, s.pod
	if c.Lifecycle == nil || c.Lifecycle.PostStart == nil {
		return "", false
	}
	hookCtx, cancel := a.untilDeleted(ctx, pod)
	msg, err := a.runHandler(hookCtx, pod, c, containerID, s.state.podIPs, c.Lifecycle.PostStart)
	cancel()
	if err == nil {
		return "", false
	}
	a.logger.Warn("postStart hook failed", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "err", err)
	// The message stays out of the event: it may hold secrets (upstream).
	a.event(pod, v1.EventTypeWarning, events.FailedPostStartHook, "PostStartHook failed")
	grace := gracePeriod(pod)
	if pod.DeletionGracePeriodSeconds != nil {
		grace = *pod.DeletionGracePeriodSeconds
	}
	a.killContainer(ctx, pod, containerID, c.Name, true, s.state.podIPs, grace, "FailedPostStartHook")
	return msg, true
}

// untilDeleted is ctx, also cancelled once the pod is being deleted (or
// gone): a hook does not hold up the pod's deletion.
func (a *Agent) untilDeleted(ctx context.Context, pod *v1.Pod) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if a.pods == nil {
		return ctx, cancel
	}
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			current, err := a.pods.Pods(pod.Namespace).Get(pod.Name)
			if apierrors.IsNotFound(err) || (err == nil && (current.UID != pod.UID || current.DeletionTimestamp != nil)) {
				cancel()
				return
			}
		}
	}()
	return ctx, cancel
}

// killContainer stops one container as upstream's killContainer: the
// Killing event (message, or "Stopping container <name>"), the preStop
// hook within the grace period, then StopContainer with the rest of the
// grace period, at least minimumGracePeriodInSeconds. The hook runs in
// running containers only (upstream kills those), and not without the pod
// (deleted meanwhile), which gets no event either.
func (a *Agent) killContainer(ctx context.Context, pod *v1.Pod, containerID, name string, isRunning bool, podIPs []string, grace int64, message string) {
	var spec *v1.Container
	if pod != nil {
		spec = containerSpec(pod, name)
		if message == "" {
			message = "Stopping container " + name
		}
		a.event(pod, v1.EventTypeNormal, events.KillingContainer, "%s", message)
	}
	if isRunning && spec != nil && spec.Lifecycle != nil && spec.Lifecycle.PreStop != nil && grace > 0 {
		grace -= a.preStop(ctx, pod, spec, containerID, podIPs, grace)
	}
	grace = max(grace, minimumGracePeriodInSeconds)
	if err := a.runtime.StopContainer(ctx, containerID, grace); err != nil {
		a.logger.Warn("stopping container", "container", name, "id", containerID, "err", err)
	}
}

// preStop runs the container's preStop hook for at most grace seconds and
// returns the whole seconds it took. A failure gives a FailedPreStopHook
// event; a hook still running when the grace period ends is stopped.
func (a *Agent) preStop(ctx context.Context, pod *v1.Pod, c *v1.Container, containerID string, podIPs []string, grace int64) int64 {
	start := time.Now()
	hookCtx, cancel := context.WithTimeout(ctx, time.Duration(grace)*time.Second)
	defer cancel()
	_, err := a.runHandler(hookCtx, pod, c, containerID, podIPs, c.Lifecycle.PreStop)
	switch {
	case err != nil && errors.Is(hookCtx.Err(), context.DeadlineExceeded):
		a.logger.Info("preStop hook not completed in the grace period", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "gracePeriod", grace)
	case err != nil:
		a.logger.Warn("preStop hook failed", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "err", err)
		a.event(pod, v1.EventTypeWarning, events.FailedPreStopHook, "PreStopHook failed")
	}
	return int64(time.Since(start).Seconds())
}

// containerSpec is the pod's container (or init container) of that name.
func containerSpec(pod *v1.Pod, name string) *v1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}
