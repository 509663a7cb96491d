package kubelet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// This file is upstream's prober manager and worker
// (k8s.io/kubernetes/pkg/kubelet/prober/prober_manager.go, worker.go): one
// goroutine per container and probe kind probes at the probe's period,
// counts results against its thresholds, and keeps the result per
// container ID. The pod worker reads the results: liveness and startup
// failures kill the container (sync.go), startup and readiness set the
// container's started and ready (status.go).

// probeResult is a probe's standing result for one container.
type probeResult int

const (
	resultUnknown probeResult = iota
	resultSuccess
	resultFailure
)

type probeKey struct {
	uid       types.UID
	container string
	kind      probeKind
}

type resultKey struct {
	containerID string // the CRI container ID
	kind        probeKind
}

// probeStatus is the last status the pod worker computed for a pod, with
// the pod it computed it for: what the probe workers read, as upstream's
// read the status manager.
type probeStatus struct {
	pod    *v1.Pod
	status v1.PodStatus
}

// probeManager runs the probe workers of every pod and keeps their
// results.
type probeManager struct {
	clock clock.WithTicker
	// start is when the manager started: workers started soon after it
	// (the agent restarted) wait a random part of their period first, so
	// that probes of adopted pods do not all run at once.
	start time.Time
	// probe runs one probe (prober.probe); networkSkipped says a probe
	// passes without being sent (prober.networkSkipped).
	probe          func(ctx context.Context, kind probeKind, pod *v1.Pod, status *v1.PodStatus, c *v1.Container, containerID string) (bool, error)
	networkSkipped func(*v1.Probe) bool
	noNetwork      string
	// changed is told when a result changes what the pod's status says:
	// the pod is synced again.
	changed func(pod *v1.Pod)
	event   func(pod *v1.Pod, eventType, reason, format string, args ...any)

	mu       sync.Mutex
	pods     map[types.UID]bool
	workers  map[probeKey]*probeWorker
	results  map[resultKey]probeResult
	statuses map[types.UID]probeStatus
	wg       sync.WaitGroup
}

func newProbeManager(a *Agent, p *prober, clk clock.WithTicker) *probeManager {
	return &probeManager{
		clock: clk, start: clk.Now(),
		probe: p.probe, networkSkipped: p.networkSkipped, noNetwork: p.noNetwork,
		changed: func(pod *v1.Pod) { a.enqueue(pod.UID, pod.Namespace, pod.Name) },
		event:   a.event,
		pods:    map[types.UID]bool{}, workers: map[probeKey]*probeWorker{},
		results: map[resultKey]probeResult{}, statuses: map[types.UID]probeStatus{},
	}
}

// addPod starts the workers of a pod's probes, once per pod: those of its
// containers and of its restartable init containers (sidecars), the only
// ones that may have probes.
func (m *probeManager) addPod(ctx context.Context, pod *v1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pods[pod.UID] {
		return
	}
	m.pods[pod.UID] = true
	var containers []*v1.Container
	for i := range pod.Spec.InitContainers {
		if c := &pod.Spec.InitContainers[i]; isSidecar(c) {
			containers = append(containers, c)
		}
	}
	for i := range pod.Spec.Containers {
		containers = append(containers, &pod.Spec.Containers[i])
	}
	for _, c := range containers {
		for _, kind := range probeKinds {
			if kind.spec(c) == nil {
				continue
			}
			w := newProbeWorker(m, pod, c, kind)
			m.workers[w.key] = w
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				w.run(ctx)
			}()
		}
	}
}

// removePod stops the pod's workers; their results go with them.
func (m *probeManager) removePod(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.pods[uid] {
		return
	}
	delete(m.pods, uid)
	delete(m.statuses, uid)
	for key, w := range m.workers {
		if key.uid == uid {
			w.stopNow()
		}
	}
}

// wait returns once every worker has ended (their context is done).
func (m *probeManager) wait() { m.wg.Wait() }

// setStatus records the status the pod worker computed, and has the
// readiness probe of a container without a result yet run now rather
// than at its next period (as upstream's UpdatePodStatus does).
func (m *probeManager) setStatus(pod *v1.Pod, status v1.PodStatus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.pods[pod.UID] {
		return
	}
	m.statuses[pod.UID] = probeStatus{pod: pod, status: status}
	for _, st := range slices.Concat(status.InitContainerStatuses, status.ContainerStatuses) {
		if st.State.Running == nil {
			continue
		}
		w := m.workers[probeKey{pod.UID, st.Name, readiness}]
		if _, ok := m.results[resultKey{criID(st.ContainerID), readiness}]; w != nil && !ok {
			w.triggerNow()
		}
	}
}

// applyTo sets a running container's started and ready from its probes,
// as upstream's UpdatePodStatus: started once the startup probe passed
// (at once without one), ready once started and the readiness probe
// passed (at once without one).
func (m *probeManager) applyTo(c *v1.Container, containerID string, st *v1.ContainerStatus) {
	if st.State.Running == nil || (c.StartupProbe == nil && c.ReadinessProbe == nil) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	started := c.StartupProbe == nil || m.results[resultKey{containerID, startup}] == resultSuccess
	st.Started = ptr.To(started)
	if !started {
		st.Ready = false
		return
	}
	if c.ReadinessProbe != nil {
		st.Ready = m.results[resultKey{containerID, readiness}] == resultSuccess
	}
}

// unhealthy is the probe a running container failed for good (liveness,
// or startup past its failureThreshold): it is to be killed.
func (m *probeManager) unhealthy(containerID string) (probeKind, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, kind := range []probeKind{liveness, startup} {
		if m.results[resultKey{containerID, kind}] == resultFailure {
			return kind, true
		}
	}
	return 0, false
}

// setResult records a result; changed says whether the pod's status may
// change with it (initial values do not change it).
func (m *probeManager) setResult(pod *v1.Pod, containerID string, kind probeKind, r probeResult, notify bool) {
	m.mu.Lock()
	key := resultKey{containerID, kind}
	old, had := m.results[key]
	m.results[key] = r
	m.mu.Unlock()
	if notify && (!had || old != r) {
		m.changed(pod)
	}
}

func (m *probeManager) removeResult(containerID string, kind probeKind) {
	m.mu.Lock()
	delete(m.results, resultKey{containerID, kind})
	m.mu.Unlock()
}

func (m *probeManager) status(uid types.UID) (probeStatus, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.statuses[uid]
	return s, ok
}

// Upstream's defaults for probe fields left at zero (the API server sets
// them on pods it admits; objects built otherwise may lack them).
func withProbeDefaults(p *v1.Probe) *v1.Probe {
	p = p.DeepCopy()
	if p.TimeoutSeconds <= 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds <= 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold <= 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold <= 0 {
		p.FailureThreshold = 3
	}
	return p
}

func isSidecar(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

// criID is the CRI ID of a status's containerID ("containerd://<id>").
func criID(containerID string) string {
	if _, id, ok := strings.Cut(containerID, "://"); ok {
		return id
	}
	return containerID
}

// probeWorker probes one container of one pod for one kind.
type probeWorker struct {
	m         *probeManager
	key       probeKey
	kind      probeKind
	pod       *v1.Pod // as added; probes are immutable in a pod's spec
	container *v1.Container
	spec      *v1.Probe
	sidecar   bool
	stop      chan struct{}
	trigger   chan struct{}

	// containerID is the container probed (CRI ID); a new one resets
	// the count and ends a hold.
	containerID string
	lastResult  probeResult
	resultRun   int
	// onHold: the container failed (liveness) or finished (startup) its
	// probe; nothing more is probed until a new container.
	onHold bool
	// skipNoted: the event saying a network probe is not sent was given.
	skipNoted bool
}

func newProbeWorker(m *probeManager, pod *v1.Pod, c *v1.Container, kind probeKind) *probeWorker {
	return &probeWorker{
		m: m, key: probeKey{pod.UID, c.Name, kind}, kind: kind, pod: pod, container: c, spec: withProbeDefaults(kind.spec(c)),
		sidecar: isSidecar(c), stop: make(chan struct{}, 1), trigger: make(chan struct{}, 1),
	}
}

func (w *probeWorker) stopNow() {
	select {
	case w.stop <- struct{}{}:
	default:
	}
}

func (w *probeWorker) triggerNow() {
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

// run probes every period until the pod is removed, the container ends
// for good, or ctx is done.
func (w *probeWorker) run(ctx context.Context) {
	m := w.m
	period := time.Duration(w.spec.PeriodSeconds) * time.Second
	defer func() {
		if w.containerID != "" {
			m.removeResult(w.containerID, w.kind)
		}
		m.mu.Lock()
		if m.workers[w.key] == w {
			delete(m.workers, w.key)
		}
		m.mu.Unlock()
	}()
	// Soon after an agent restart, workers of adopted pods all start at
	// once: each waits a random part of its period first.
	if period > m.clock.Since(m.start) {
		select {
		case <-ctx.Done():
			return
		case <-w.stop:
			return
		case <-m.clock.After(time.Duration(rand.Float64() * float64(period))):
		}
	}
	timer := m.clock.NewTimer(period)
	defer timer.Stop()
	for w.doProbe(ctx) {
		select {
		case <-ctx.Done():
			return
		case <-w.stop:
			return
		case <-timer.C():
			timer.Reset(period)
		case <-w.trigger:
			// The next periodic probe comes a period after this one.
			if !timer.Stop() {
				select {
				case <-timer.C():
				default:
				}
			}
			timer.Reset(period)
		}
	}
}

// doProbe probes once (when it is time to) and records the result; it
// says whether to go on. It follows upstream's worker.doProbe.
func (w *probeWorker) doProbe(ctx context.Context) bool {
	m := w.m
	ps, ok := m.status(w.key.uid)
	if !ok {
		return true // not synced yet
	}
	status := &ps.status
	if status.Phase == v1.PodFailed || status.Phase == v1.PodSucceeded {
		return false
	}
	statuses := status.ContainerStatuses
	if w.sidecar {
		statuses = status.InitContainerStatuses
	}
	c := findStatus(statuses, w.container.Name)
	if c == nil || c.ContainerID == "" {
		return true // not created yet
	}
	if id := criID(c.ContainerID); id != w.containerID {
		if w.containerID != "" {
			m.removeResult(w.containerID, w.kind)
		}
		w.containerID = id
		m.setResult(w.pod, id, w.kind, w.initialValue(ps.pod, c), false)
		w.onHold, w.lastResult, w.resultRun = false, resultUnknown, 0
	}
	if w.onHold {
		return true
	}
	if c.State.Running == nil {
		m.setResult(w.pod, w.containerID, w.kind, resultFailure, false)
		// Go on while the container will be restarted.
		return c.State.Terminated == nil || w.pod.Spec.RestartPolicy != v1.RestartPolicyNever || w.sidecar
	}
	if ps.pod.DeletionTimestamp != nil && (w.kind == liveness || w.kind == startup) {
		// Being deleted: no liveness or startup kill any more.
		m.setResult(w.pod, w.containerID, w.kind, resultSuccess, false)
		return false
	}
	if m.clock.Since(c.State.Running.StartedAt.Time) < time.Duration(w.spec.InitialDelaySeconds)*time.Second {
		return true
	}
	if c.Started != nil && *c.Started {
		if w.kind == startup {
			return true // done; kept for a restarted container
		}
	} else if w.kind != startup {
		return true // held back until the startup probe passes
	}

	var result probeResult
	if m.networkSkipped(w.spec) {
		if !w.skipNoted {
			w.skipNoted = true
			m.event(w.pod, v1.EventTypeNormal, "ProbeNotRun", "%s probe of container %s not sent: %s; it counts as passing", w.kind, w.container.Name, m.noNetwork)
		}
		result = resultSuccess
	} else {
		ok, err := m.probe(ctx, w.kind, w.pod, status, w.container, w.containerID)
		if err != nil {
			return true // no result: thrown away, as upstream
		}
		result = resultFailure
		if ok {
			result = resultSuccess
		}
	}
	if w.lastResult == result {
		w.resultRun++
	} else {
		w.lastResult, w.resultRun = result, 1
	}
	if (result == resultFailure && w.resultRun < int(w.spec.FailureThreshold)) ||
		(result == resultSuccess && w.resultRun < int(w.spec.SuccessThreshold)) {
		return true // below the threshold: the standing result holds
	}
	m.setResult(w.pod, w.containerID, w.kind, result, true)
	if (w.kind == liveness && result == resultFailure) || w.kind == startup {
		// The container is to be killed, or has started: no more
		// probes until a new container.
		w.onHold, w.resultRun = true, 0
	}
	return true
}

// initialValue is a new container's result before its first probe:
// liveness passes, readiness fails, startup is unknown, as upstream. A
// container the agent adopts after a restart keeps what the pod's status
// said of it, so a ready pod does not flap.
func (w *probeWorker) initialValue(pod *v1.Pod, now *v1.ContainerStatus) probeResult {
	statuses := pod.Status.ContainerStatuses
	if w.sidecar {
		statuses = pod.Status.InitContainerStatuses
	}
	if prev := findStatus(statuses, w.container.Name); prev != nil && prev.ContainerID == now.ContainerID {
		switch {
		case w.kind == readiness && prev.Ready, w.kind == startup && prev.Started != nil && *prev.Started:
			return resultSuccess
		}
	}
	switch w.kind {
	case liveness:
		return resultSuccess
	case readiness:
		return resultFailure
	}
	return resultUnknown
}

// killUnhealthy kills a running container that failed its liveness or
// startup probe, as upstream's computePodActions and killContainer do;
// the sync restarts it per restartPolicy, with the usual back-off. It
// says whether it killed.
func (s *podSync) killUnhealthy(ctx context.Context, c *v1.Container, current *runtimeapi.ContainerStatus) bool {
	a := s.agent
	if !running(current) {
		return false
	}
	kind, bad := a.probes.unhealthy(current.Id)
	if !bad {
		return false
	}
	message := fmt.Sprintf("Container %s failed %s probe", c.Name, strings.ToLower(kind.String()))
	if s.pod.Spec.RestartPolicy != v1.RestartPolicyNever {
		message += ", will be restarted"
	}
	a.killContainer(ctx, s.pod, current.Id, c.Name, true, s.state.podIPs, probeKillGrace(s.pod, kind.spec(c)), message)
	return true
}

// probeKillGrace is the grace period of a kill after a failed probe:
// the probe's terminationGracePeriodSeconds when set, otherwise the
// pod's (upstream's setTerminationGracePeriod).
func probeKillGrace(pod *v1.Pod, spec *v1.Probe) int64 {
	if pod.DeletionGracePeriodSeconds != nil {
		return *pod.DeletionGracePeriodSeconds
	}
	if spec != nil && spec.TerminationGracePeriodSeconds != nil {
		return *spec.TerminationGracePeriodSeconds
	}
	return gracePeriod(pod)
}
