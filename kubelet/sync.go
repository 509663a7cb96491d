package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

// podState is what the runtime has of one pod, newest first.
type podState struct {
	sandboxes  []*runtimeapi.PodSandbox
	containers []*runtimeapi.ContainerStatus
	podIPs     []string
}

func (a *Agent) podState(ctx context.Context, uid types.UID) (*podState, error) {
	selector := map[string]string{labelPodUID: string(uid), labelManaged: "true"}
	sandboxes, err := a.runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("listing pod sandboxes: %w", err)
	}
	slices.SortFunc(sandboxes, func(x, y *runtimeapi.PodSandbox) int { return int(y.Metadata.Attempt) - int(x.Metadata.Attempt) })
	containers, err := a.runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	s := &podState{sandboxes: sandboxes}
	for _, c := range containers {
		st, err := a.runtime.ContainerStatus(ctx, c.Id, false)
		if err != nil || st.GetStatus() == nil {
			continue // removed meanwhile
		}
		status := st.Status
		// Keep the sandbox the container belongs to in a label of ours.
		if status.Labels == nil {
			status.Labels = map[string]string{}
		}
		status.Labels[sandboxIDKey] = c.PodSandboxId
		s.containers = append(s.containers, status)
	}
	slices.SortFunc(s.containers, func(x, y *runtimeapi.ContainerStatus) int {
		if x.Metadata.Attempt != y.Metadata.Attempt {
			return int(y.Metadata.Attempt) - int(x.Metadata.Attempt)
		}
		return int(y.CreatedAt - x.CreatedAt)
	})
	if sb := s.ready(); sb != nil {
		st, err := a.runtime.PodSandboxStatus(ctx, sb.Id, false)
		if err == nil && st.GetStatus().GetNetwork() != nil {
			if ip := st.Status.Network.Ip; ip != "" {
				s.podIPs = append(s.podIPs, ip)
			}
			for _, ip := range st.Status.Network.AdditionalIps {
				s.podIPs = append(s.podIPs, ip.Ip)
			}
		}
	}
	return s, nil
}

// sandboxIDKey is an in-memory label: the sandbox of a container status.
const sandboxIDKey = "gatehouse.dev/sandbox-id"

// ready is the newest sandbox if it is ready.
func (s *podState) ready() *runtimeapi.PodSandbox {
	if len(s.sandboxes) > 0 && s.sandboxes[0].State == runtimeapi.PodSandboxState_SANDBOX_READY {
		return s.sandboxes[0]
	}
	return nil
}

// instances are the containers of one name, newest first.
func (s *podState) instances(name string) []*runtimeapi.ContainerStatus {
	var out []*runtimeapi.ContainerStatus
	for _, c := range s.containers {
		if c.Metadata.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// latestIn is the newest container of name in sandbox id.
func (s *podState) latestIn(id, name string) *runtimeapi.ContainerStatus {
	for _, c := range s.instances(name) {
		if c.Labels[sandboxIDKey] == id {
			return c
		}
	}
	return nil
}

func running(c *runtimeapi.ContainerStatus) bool {
	return c != nil && c.State == runtimeapi.ContainerState_CONTAINER_RUNNING
}

func exited(c *runtimeapi.ContainerStatus) bool {
	return c != nil && c.State == runtimeapi.ContainerState_CONTAINER_EXITED
}

// syncPod brings the runtime to what the pod asks and reports its status.
// It returns when to sync again (0: on the next change) and whether the
// worker is done (the pod is gone and nothing of it is left).
func (a *Agent) syncPod(ctx context.Context, w *podWorker, pod *v1.Pod) (time.Duration, bool) {
	state, err := a.podState(ctx, w.uid)
	if err != nil {
		a.logger.Warn("pod sync", "pod", w.namespace+"/"+w.name, "err", err)
		return 2 * time.Second, false
	}
	if pod == nil {
		// Gone from the API (deleted after its containers stopped, force
		// deleted, or deleted while the agent was down).
		a.probes.removePod(w.uid)
		a.killPod(ctx, nil, state, 2)
		a.removePod(ctx, w.uid, state)
		return 0, true
	}
	if pod.DeletionTimestamp != nil {
		a.probes.removePod(pod.UID)
		return a.terminate(ctx, w, pod, state), false
	}
	if w.startTime == nil {
		t := time.Now()
		if pod.Status.StartTime != nil {
			t = pod.Status.StartTime.Time
		}
		w.startTime = &t
	}
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		// Finished for good: stop what is left, keep the containers for
		// their logs until the pod is deleted.
		if !w.terminated {
			a.probes.removePod(pod.UID)
			a.killPod(ctx, pod, state, gracePeriod(pod))
			w.terminated = true
		}
		return 0, false
	}

	a.probes.addPod(ctx, pod)
	sync := &podSync{agent: a, worker: w, pod: pod, state: state, waiting: map[string]waitingReason{}}
	requeue := sync.run(ctx)
	if state, err = a.podState(ctx, w.uid); err == nil {
		sync.state = state
	}
	status := a.podStatus(pod, w, sync)
	if (status.Phase == v1.PodSucceeded || status.Phase == v1.PodFailed) && awaitingOOMReason(&status, time.Now()) {
		// The final status is written once; containerd can report a
		// container's OOM kill just after its exit, so a fresh exit 137
		// not yet explained is read again first.
		return oomReasonRetry, false
	}
	a.probes.setStatus(pod, status)
	if err := a.postStatus(ctx, pod, status); apierrors.IsNotFound(err) {
		return 0, false // deleted meanwhile: the informer says so next
	} else if err != nil {
		a.logger.Warn("pod status", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		requeue = min(nonZero(requeue, time.Second), time.Second)
	}
	if status.Phase == v1.PodSucceeded || status.Phase == v1.PodFailed {
		a.probes.removePod(pod.UID)
		a.killPod(ctx, pod, sync.state, gracePeriod(pod))
		w.terminated = true
		return 0, false
	}
	a.collectGarbage(ctx, sync.state, pod)
	return requeue, false
}

// oomReasonRetry and oomReasonWait: how often and how long after a
// container's exit 137 its status is read again for the OOMKilled reason.
const (
	oomReasonRetry = 100 * time.Millisecond
	oomReasonWait  = 2 * time.Second
)

// awaitingOOMReason reports whether a container of status exited 137
// (SIGKILL) with no reason but Error less than oomReasonWait ago: the
// runtime's OOM event may still come.
func awaitingOOMReason(status *v1.PodStatus, now time.Time) bool {
	for _, list := range [][]v1.ContainerStatus{status.InitContainerStatuses, status.ContainerStatuses} {
		for _, cs := range list {
			if t := cs.State.Terminated; t != nil && t.ExitCode == 137 && t.Reason == "Error" && now.Sub(t.FinishedAt.Time) < oomReasonWait {
				return true
			}
		}
	}
	return false
}

func nonZero(d, otherwise time.Duration) time.Duration {
	if d == 0 {
		return otherwise
	}
	return d
}

// volumeRefresh is how often a pod's volumes are written again; tokens
// are requested for an hour, as upstream's default, and rewritten well
// before they expire.
const volumeRefresh = 10 * time.Minute

// waitingReason is why a container is not running (ContainerCreating,
// ErrImagePull, CrashLoopBackOff, ...), for its status.
type waitingReason struct{ reason, message string }

// podSync is one sync of one pod.
type podSync struct {
	agent   *Agent
	worker  *podWorker
	pod     *v1.Pod
	state   *podState
	sandbox *runtimeapi.PodSandbox
	config  *runtimeapi.PodSandboxConfig
	volumes map[string]string
	waiting map[string]waitingReason
	// initDone: every init container completed.
	initDone bool
	// failed: a container failed for good (restartPolicy Never).
	failed bool
}

// run creates the sandbox if needed, then the init containers in order,
// then the app containers; it returns when to sync again.
func (s *podSync) run(ctx context.Context) time.Duration {
	a, pod := s.agent, s.pod
	// Volumes are set up once per worker and refreshed now and then
	// (service account tokens, ConfigMaps and Secrets that changed).
	if w := s.worker; w.volumes == nil || time.Since(w.volumesAt) > volumeRefresh {
		volumes, err := a.mountVolumes(ctx, pod)
		if err != nil {
			a.event(pod, v1.EventTypeWarning, "FailedMount", "MountVolume.SetUp failed: %v", err)
			s.setAllWaiting("ContainerCreating", "")
			return 2 * time.Second
		}
		w.volumes, w.volumesAt = volumes, time.Now()
	}
	s.volumes = s.worker.volumes
	s.sandbox = s.state.ready()
	if s.sandbox == nil {
		if s.finished() {
			return 0
		}
		// Containers of a sandbox that died are stopped before the new
		// one starts, as the kubelet does.
		a.killContainers(ctx, pod, s.state, gracePeriod(pod))
		attempt := uint32(0)
		if len(s.state.sandboxes) > 0 {
			attempt = s.state.sandboxes[0].Metadata.Attempt + 1
			a.event(pod, v1.EventTypeNormal, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
		}
		s.config = a.sandboxConfig(pod, attempt)
		a.missingClusterDNS(pod)
		if err := os.MkdirAll(s.config.LogDirectory, 0o750); err != nil {
			a.event(pod, v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
			return 2 * time.Second
		}
		id, err := a.runtime.RunPodSandbox(ctx, s.config, "")
		if err != nil {
			a.event(pod, v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
			s.setAllWaiting("ContainerCreating", "")
			return a.cfg.BackoffInitial
		}
		if s.state, err = a.podState(ctx, pod.UID); err != nil {
			return time.Second
		}
		s.sandbox = s.state.ready()
		if s.sandbox == nil || s.sandbox.Id != id {
			return time.Second
		}
	}

	var requeue time.Duration
	later := func(d time.Duration) {
		if d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	// Init containers, one at a time, each to completion; restartable
	// ones (sidecars) start and keep running.
	s.initDone = true
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		current := s.state.latestIn(s.sandbox.Id, c.Name)
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
		if sidecar && s.killUnhealthy(ctx, c, current) {
			later(100 * time.Millisecond)
			continue
		}
		switch {
		case current == nil:
			later(s.start(ctx, c, true))
			if !sidecar {
				s.initDone = false
			}
		case running(current):
			if !sidecar {
				s.initDone = false
			}
		case exited(current) && current.ExitCode == 0 && !sidecar:
			continue
		case exited(current):
			if pod.Spec.RestartPolicy == v1.RestartPolicyNever && !sidecar {
				s.failed, s.initDone = true, false
				return 0
			}
			later(s.restart(ctx, c, current, true))
			if !sidecar {
				s.initDone = false
			}
		}
		if !s.initDone {
			for j := i + 1; j < len(pod.Spec.InitContainers); j++ {
				s.waiting[pod.Spec.InitContainers[j].Name] = waitingReason{reason: "PodInitializing"}
			}
			for _, c := range pod.Spec.Containers {
				s.waiting[c.Name] = waitingReason{reason: "PodInitializing"}
			}
			return requeue
		}
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		current := s.state.latestIn(s.sandbox.Id, c.Name)
		if s.killUnhealthy(ctx, c, current) {
			// Restarted (per restartPolicy) by the next sync.
			later(100 * time.Millisecond)
			continue
		}
		switch {
		case current == nil:
			later(s.start(ctx, c, false))
		case exited(current) && shouldRestart(pod.Spec.RestartPolicy, current.ExitCode):
			later(s.restart(ctx, c, current, false))
		}
	}
	return requeue
}

// sandboxConfig is the config of the pod's sandbox, built when first
// needed: a sync of a pod whose containers all run needs none (it reads
// the host's resolv.conf).
func (s *podSync) sandboxConfig() *runtimeapi.PodSandboxConfig {
	if s.config == nil {
		s.config = s.agent.sandboxConfig(s.pod, s.sandbox.Metadata.Attempt)
	}
	return s.config
}

// finished: no container will run again (restartPolicy Never or
// OnFailure, and every container has exited as such).
func (s *podSync) finished() bool {
	if s.pod.Spec.RestartPolicy == v1.RestartPolicyAlways || len(s.state.containers) == 0 {
		return false
	}
	for _, c := range s.pod.Spec.Containers {
		inst := s.state.instances(c.Name)
		if len(inst) == 0 || !exited(inst[0]) || shouldRestart(s.pod.Spec.RestartPolicy, inst[0].ExitCode) {
			return false
		}
	}
	return true
}

func shouldRestart(policy v1.RestartPolicy, exitCode int32) bool {
	switch policy {
	case v1.RestartPolicyNever:
		return false
	case v1.RestartPolicyOnFailure:
		return exitCode != 0
	}
	return true
}

func (s *podSync) setAllWaiting(reason, message string) {
	for _, c := range s.pod.Spec.InitContainers {
		s.waiting[c.Name] = waitingReason{reason, message}
	}
	for _, c := range s.pod.Spec.Containers {
		s.waiting[c.Name] = waitingReason{reason, message}
	}
}

// restart starts a container again after its back-off (CrashLoopBackOff
// while it lasts: 10 s doubling to 5 min, reset after 10 min without
// failing, with client-go's Backoff as upstream's kubelet uses it).
func (s *podSync) restart(ctx context.Context, c *v1.Container, last *runtimeapi.ContainerStatus, init bool) time.Duration {
	a := s.agent
	key := string(s.pod.UID) + "/" + c.Name
	finished := time.Unix(0, last.FinishedAt)
	if a.backoff.IsInBackOffSince(key, finished) {
		wait := a.backoff.Get(key)
		s.waiting[c.Name] = waitingReason{"CrashLoopBackOff", fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", wait, c.Name, podDesc(s.pod))}
		a.event(s.pod, v1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s", c.Name, podDesc(s.pod))
		return max(time.Until(finished.Add(wait)), 100*time.Millisecond)
	}
	a.backoff.Next(key, finished)
	return s.start(ctx, c, init)
}

// start pulls the image as the pull policy says, then creates and starts
// the container; it returns when to try again on failure.
func (s *podSync) start(ctx context.Context, c *v1.Container, init bool) time.Duration {
	a, pod := s.agent, s.pod
	imageRef, waiting, retry := a.ensureImage(ctx, pod, c, s.sandboxConfig())
	if imageRef == "" {
		s.waiting[c.Name] = waiting
		a.event(pod, v1.EventTypeWarning, "Failed", "Error: %s", waiting.reason)
		return retry
	}
	attempt := uint32(0)
	if prev := s.state.instances(c.Name); len(prev) > 0 {
		attempt = prev[0].Metadata.Attempt + 1
	}
	config, err := a.containerConfig(ctx, pod, c, attempt, imageRef, s.state.podIPs, s.volumes)
	if err != nil {
		s.waiting[c.Name] = waitingReason{"CreateContainerConfigError", err.Error()}
		a.event(pod, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return 2 * time.Second
	}
	id, err := a.runtime.CreateContainer(ctx, s.sandbox.Id, config, s.sandboxConfig())
	if err != nil {
		s.waiting[c.Name] = waitingReason{"CreateContainerError", err.Error()}
		a.event(pod, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return 2 * time.Second
	}
	a.event(pod, v1.EventTypeNormal, "Created", "Created container: %s", c.Name)
	if err := a.runtime.StartContainer(ctx, id); err != nil {
		s.waiting[c.Name] = waitingReason{"RunContainerError", err.Error()}
		a.event(pod, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return 2 * time.Second
	}
	a.event(pod, v1.EventTypeNormal, "Started", "Started container %s", c.Name)
	if msg, failed := s.postStart(ctx, c, id); failed {
		s.waiting[c.Name] = waitingReason{reasonPostStartHookError, msg}
	}
	return 0
}

// terminate stops a pod being deleted within its grace period, then
// deletes the pod object, as the kubelet's status manager does once
// nothing of the pod runs.
func (a *Agent) terminate(ctx context.Context, w *podWorker, pod *v1.Pod, state *podState) time.Duration {
	if !w.terminated {
		grace := gracePeriod(pod)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = *pod.DeletionGracePeriodSeconds
		}
		a.killPod(ctx, pod, state, grace)
		w.terminated = true
		if st, err := a.podState(ctx, w.uid); err == nil {
			state = st
		}
		sync := &podSync{agent: a, worker: w, pod: pod, state: state, waiting: map[string]waitingReason{}, initDone: true}
		status := a.podStatus(pod, w, sync)
		if status.Phase != v1.PodSucceeded && status.Phase != v1.PodFailed {
			// Stopped by deletion: the kubelet reports the phase the
			// containers ended in, Failed when any did not succeed.
			status.Phase = v1.PodFailed
			if allSucceeded(status) {
				status.Phase = v1.PodSucceeded
			}
		}
		if err := a.postStatus(ctx, pod, status); err != nil && !apierrors.IsNotFound(err) {
			a.logger.Warn("pod status", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
	err := a.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      metav1.NewUIDPreconditions(string(pod.UID)),
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		a.logger.Warn("deleting pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		return time.Second
	}
	return 0
}

func allSucceeded(status v1.PodStatus) bool {
	for _, c := range status.ContainerStatuses {
		if c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 {
			return false
		}
	}
	return true
}

func gracePeriod(pod *v1.Pod) int64 {
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return v1.DefaultTerminationGracePeriodSeconds
}

// killPod stops every container (in parallel, each within the grace
// period: the runtime sends SIGTERM, then SIGKILL when it ends) and then
// the sandbox.
func (a *Agent) killPod(ctx context.Context, pod *v1.Pod, state *podState, grace int64) {
	a.killContainers(ctx, pod, state, grace)
	for _, sb := range state.sandboxes {
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			if err := a.runtime.StopPodSandbox(ctx, sb.Id); err != nil {
				a.logger.Warn("stopping pod sandbox", "sandbox", sb.Id, "err", err)
			}
		}
	}
}

func (a *Agent) killContainers(ctx context.Context, pod *v1.Pod, state *podState, grace int64) {
	done := make(chan struct{})
	n := 0
	for _, c := range state.containers {
		if !running(c) && c.State != runtimeapi.ContainerState_CONTAINER_CREATED {
			continue
		}
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			a.killContainer(ctx, pod, c.Id, c.Metadata.Name, running(c), state.podIPs, grace, "")
		}()
	}
	for range n {
		<-done
	}
}

// removePod removes the pod's containers, sandboxes and files.
func (a *Agent) removePod(ctx context.Context, uid types.UID, state *podState) {
	for _, c := range state.containers {
		_ = a.runtime.RemoveContainer(ctx, c.Id)
	}
	for _, sb := range state.sandboxes {
		if err := a.runtime.RemovePodSandbox(ctx, sb.Id); err != nil {
			a.logger.Warn("removing pod sandbox", "sandbox", sb.Id, "err", err)
		}
	}
	a.unmountVolumes(uid)
	if len(state.sandboxes) > 0 {
		m := state.sandboxes[0].Metadata
		_ = os.RemoveAll(podLogDir(a.cfg.DataDir, m.Namespace, m.Name, uid))
	}
}

// collectGarbage keeps, per container name, the current instance and the
// one before it (for kubectl logs --previous), and removes sandboxes that
// are neither ready nor hold a kept container.
func (a *Agent) collectGarbage(ctx context.Context, state *podState, pod *v1.Pod) {
	keep := map[string]bool{}
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		for i, inst := range state.instances(c.Name) {
			if i < 2 || running(inst) {
				keep[inst.Id] = true
				keep[inst.Labels[sandboxIDKey]] = true
				continue
			}
			_ = a.runtime.RemoveContainer(ctx, inst.Id)
		}
	}
	for i, sb := range state.sandboxes {
		if i > 0 && sb.State != runtimeapi.PodSandboxState_SANDBOX_READY && !keep[sb.Id] {
			_ = a.runtime.RemovePodSandbox(ctx, sb.Id)
		}
	}
}

func (a *Agent) event(pod *v1.Pod, eventType, reason, format string, args ...any) {
	if a.recorder != nil {
		a.recorder.Eventf(pod, eventType, reason, format, args...)
	}
}

// podDesc is the kubelet's way of naming a pod in messages.
func podDesc(pod *v1.Pod) string {
	return fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
}

// podLogDir is the pod's log directory, as the kubelet's /var/log/pods.
func podLogDir(dataDir, namespace, name string, uid types.UID) string {
	return filepath.Join(logsDir(dataDir), namespace+"_"+name+"_"+string(uid))
}

func restartCount(c *runtimeapi.ContainerStatus) int32 {
	if n, err := strconv.Atoi(c.Annotations[annotationRestartCount]); err == nil {
		return int32(n)
	}
	return int32(c.Metadata.Attempt)
}
