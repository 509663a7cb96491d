package kubelet

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

var probeT0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// probeFixture is a probe manager with a fake clock and a scripted prober.
type probeFixture struct {
	m       *probeManager
	clock   *clocktesting.FakeClock
	pod     *v1.Pod
	answers []error // per probe call: nil passes, errFail fails, others error
	calls   int
	changes int
	events  []string
	skip    bool
}

var errFail = errors.New("fail")

func newProbeFixture(t *testing.T, c v1.Container) *probeFixture {
	t.Helper()
	f := &probeFixture{clock: clocktesting.NewFakeClock(probeT0)}
	f.pod = &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"},
		Spec:       v1.PodSpec{RestartPolicy: v1.RestartPolicyAlways, Containers: []v1.Container{c}},
	}
	f.m = &probeManager{
		clock: f.clock, start: probeT0.Add(-time.Hour),
		probe: func(_ context.Context, _ probeKind, _ *v1.Pod, _ *v1.PodStatus, _ *v1.Container, _ string) (bool, error) {
			if f.calls >= len(f.answers) {
				t.Fatalf("probe call %d not scripted", f.calls+1)
			}
			err := f.answers[f.calls]
			f.calls++
			if errors.Is(err, errFail) {
				return false, nil
			}
			return err == nil, err
		},
		networkSkipped: func(*v1.Probe) bool { return f.skip },
		noNetwork:      "no network here",
		changed:        func(*v1.Pod) { f.changes++ },
		event: func(_ *v1.Pod, eventType, reason, format string, args ...any) {
			f.events = append(f.events, eventType+" "+reason+": "+fmt.Sprintf(format, args...))
		},
		pods: map[types.UID]bool{"u1": true}, workers: map[probeKey]*probeWorker{},
		results: map[resultKey]probeResult{}, statuses: map[types.UID]probeStatus{},
	}
	return f
}

// running records a status where the container "c" runs as id, started
// at start; started is what the status says of it.
func (f *probeFixture) running(id string, start time.Time, started bool) {
	st := v1.ContainerStatus{
		Name: "c", ContainerID: "containerd://" + id, Started: ptr.To(started),
		State: v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: metav1.Time{Time: start}}},
	}
	f.m.setStatus(f.pod, v1.PodStatus{Phase: v1.PodRunning, PodIP: "10.0.0.2", ContainerStatuses: []v1.ContainerStatus{st}})
}

func (f *probeFixture) worker(kind probeKind) *probeWorker {
	return newProbeWorker(f.m, f.pod, &f.pod.Spec.Containers[0], kind)
}

func (f *probeFixture) result(id string, kind probeKind) probeResult {
	return f.m.results[resultKey{id, kind}]
}

func execProbe(mod func(*v1.Probe)) *v1.Probe {
	p := &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"true"}}}}
	if mod != nil {
		mod(p)
	}
	return p
}

func TestProbeWorkerLivenessFailureThreshold(t *testing.T) {
	f := newProbeFixture(t, v1.Container{Name: "c", LivenessProbe: execProbe(func(p *v1.Probe) { p.FailureThreshold = 3 })})
	f.running("a", probeT0, true)
	w := f.worker(liveness)
	f.answers = []error{errFail, errFail, nil, errFail, errFail, errFail}
	for i := range 5 {
		if !w.doProbe(context.Background()) {
			t.Fatal("worker stopped")
		}
		if got := f.result("a", liveness); got != resultSuccess {
			t.Fatalf("after probe %d: result %v, want success (liveness starts passing; a success in between restarts the count)", i+1, got)
		}
	}
	w.doProbe(context.Background())
	if got := f.result("a", liveness); got != resultFailure {
		t.Fatalf("after the third failure in a row: %v, want failure", got)
	}
	if kind, bad := f.m.unhealthy("a"); !bad || kind != liveness {
		t.Errorf("unhealthy = %v %v", kind, bad)
	}
	if f.changes != 1 {
		t.Errorf("%d status changes signalled, want 1", f.changes)
	}
	// On hold until a new container: no more probes of this one.
	w.doProbe(context.Background())
	if f.calls != 6 {
		t.Errorf("probed %d times, want 6 (on hold after the failure)", f.calls)
	}
	// The restarted container is probed afresh, and passes at first.
	f.running("b", probeT0, true)
	f.answers = append(f.answers, errFail)
	w.doProbe(context.Background())
	if f.calls != 7 || f.result("b", liveness) != resultSuccess {
		t.Errorf("new container: %d calls, result %v", f.calls, f.result("b", liveness))
	}
	if _, ok := f.m.results[resultKey{"a", liveness}]; ok {
		t.Error("the old container's result was kept")
	}
}

func TestProbeWorkerReadinessSuccessThreshold(t *testing.T) {
	f := newProbeFixture(t, v1.Container{Name: "c", ReadinessProbe: execProbe(func(p *v1.Probe) { p.SuccessThreshold = 2; p.FailureThreshold = 1 })})
	f.running("a", probeT0, true)
	w := f.worker(readiness)
	f.answers = []error{nil, nil, errFail, nil}
	w.doProbe(context.Background())
	if got := f.result("a", readiness); got != resultFailure {
		t.Fatalf("after one success of two: %v, want failure (readiness starts failing)", got)
	}
	w.doProbe(context.Background())
	if got := f.result("a", readiness); got != resultSuccess {
		t.Fatalf("after two successes: %v", got)
	}
	w.doProbe(context.Background())
	if got := f.result("a", readiness); got != resultFailure {
		t.Fatalf("after one failure (threshold 1): %v", got)
	}
	w.doProbe(context.Background())
	if got := f.result("a", readiness); got != resultFailure {
		t.Fatalf("one success after a failure: %v, want still failure", got)
	}
	// A readiness failure does not put the worker on hold.
	if w.onHold {
		t.Error("readiness worker on hold")
	}
}

func TestProbeWorkerInitialDelayAndErrors(t *testing.T) {
	f := newProbeFixture(t, v1.Container{Name: "c", LivenessProbe: execProbe(func(p *v1.Probe) { p.InitialDelaySeconds = 5; p.FailureThreshold = 1 })})
	f.running("a", probeT0, true)
	w := f.worker(liveness)
	f.clock.Step(4 * time.Second)
	w.doProbe(context.Background())
	if f.calls != 0 {
		t.Fatalf("probed %d times within the initial delay", f.calls)
	}
	f.clock.Step(time.Second)
	// An error is no result: the standing one holds.
	f.answers = []error{errors.New("connection refused by the runtime"), errFail}
	w.doProbe(context.Background())
	if f.calls != 1 || f.result("a", liveness) != resultSuccess {
		t.Fatalf("after an errored probe: %d calls, result %v", f.calls, f.result("a", liveness))
	}
	w.doProbe(context.Background())
	if f.result("a", liveness) != resultFailure {
		t.Fatalf("after a failure at threshold 1: %v", f.result("a", liveness))
	}
}

func TestProbeWorkerStartupHoldsOthersBack(t *testing.T) {
	c := v1.Container{
		Name:          "c",
		StartupProbe:  execProbe(func(p *v1.Probe) { p.FailureThreshold = 2 }),
		LivenessProbe: execProbe(nil), ReadinessProbe: execProbe(nil),
	}
	f := newProbeFixture(t, c)
	f.running("a", probeT0, false)
	live, ready, start := f.worker(liveness), f.worker(readiness), f.worker(startup)
	live.doProbe(context.Background())
	ready.doProbe(context.Background())
	if f.calls != 0 {
		t.Fatalf("liveness or readiness probed before the container started: %d calls", f.calls)
	}
	st := v1.ContainerStatus{State: v1.ContainerState{Running: &v1.ContainerStateRunning{}}, Ready: true}
	f.m.applyTo(&f.pod.Spec.Containers[0], "a", &st)
	if *st.Started || st.Ready {
		t.Fatalf("before the startup probe passed: started %v ready %v", *st.Started, st.Ready)
	}
	f.answers = []error{errFail, nil}
	start.doProbe(context.Background())
	start.doProbe(context.Background())
	if f.result("a", startup) != resultSuccess || f.changes != 1 {
		t.Fatalf("startup result %v, %d changes", f.result("a", startup), f.changes)
	}
	st = v1.ContainerStatus{State: v1.ContainerState{Running: &v1.ContainerStateRunning{}}, Ready: true}
	f.m.applyTo(&f.pod.Spec.Containers[0], "a", &st)
	if !*st.Started || st.Ready {
		t.Fatalf("started, readiness not yet passed: started %v ready %v", *st.Started, st.Ready)
	}
	// The status now says started: the others run, startup no more.
	f.running("a", probeT0, true)
	f.answers = append(f.answers, nil, nil)
	start.doProbe(context.Background())
	live.doProbe(context.Background())
	ready.doProbe(context.Background())
	if f.calls != 4 {
		t.Fatalf("%d calls, want 4", f.calls)
	}
	f.m.applyTo(&f.pod.Spec.Containers[0], "a", &st)
	if !st.Ready {
		t.Error("not ready after the readiness probe passed")
	}
}

func TestProbeWorkerStartupFailureKills(t *testing.T) {
	f := newProbeFixture(t, v1.Container{Name: "c", StartupProbe: execProbe(func(p *v1.Probe) { p.FailureThreshold = 2 })})
	f.running("a", probeT0, false)
	w := f.worker(startup)
	f.answers = []error{errFail, errFail}
	w.doProbe(context.Background())
	if _, bad := f.m.unhealthy("a"); bad {
		t.Fatal("unhealthy after one failure of two")
	}
	w.doProbe(context.Background())
	if kind, bad := f.m.unhealthy("a"); !bad || kind != startup {
		t.Fatalf("unhealthy = %v %v, want startup", kind, bad)
	}
}

func TestProbeWorkerStopsWhenContainerEndsForGood(t *testing.T) {
	f := newProbeFixture(t, v1.Container{Name: "c", ReadinessProbe: execProbe(nil)})
	f.pod.Spec.RestartPolicy = v1.RestartPolicyNever
	w := f.worker(readiness)
	st := v1.ContainerStatus{Name: "c", ContainerID: "containerd://a", State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: 1}}}
	f.m.setStatus(f.pod, v1.PodStatus{Phase: v1.PodRunning, ContainerStatuses: []v1.ContainerStatus{st}})
	if w.doProbe(context.Background()) {
		t.Error("the worker goes on for a container that will not restart")
	}
	f.pod.Spec.RestartPolicy = v1.RestartPolicyOnFailure
	if !w.doProbe(context.Background()) {
		t.Error("the worker stopped for a container that will restart")
	}
	f.m.setStatus(f.pod, v1.PodStatus{Phase: v1.PodSucceeded})
	if w.doProbe(context.Background()) {
		t.Error("the worker goes on in a finished pod")
	}
}

func TestProbeWorkerAdoptsPreviousReadiness(t *testing.T) {
	f := newProbeFixture(t, v1.Container{Name: "c", ReadinessProbe: execProbe(func(p *v1.Probe) { p.InitialDelaySeconds = 60 })})
	// As after an agent restart: the API's status says this container
	// was ready.
	f.pod.Status.ContainerStatuses = []v1.ContainerStatus{{Name: "c", ContainerID: "containerd://a", Ready: true}}
	f.running("a", probeT0, true)
	w := f.worker(readiness)
	w.doProbe(context.Background())
	if f.result("a", readiness) != resultSuccess {
		t.Errorf("adopted ready container: %v, want success kept", f.result("a", readiness))
	}
	f.running("b", probeT0, true)
	w.doProbe(context.Background())
	if f.result("b", readiness) != resultFailure {
		t.Errorf("new container: %v, want failure until probed", f.result("b", readiness))
	}
}

func TestProbeWorkerNetworkSkipped(t *testing.T) {
	f := newProbeFixture(t, v1.Container{Name: "c", ReadinessProbe: &v1.Probe{ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{}}}})
	f.skip = true
	f.running("a", probeT0, true)
	w := f.worker(readiness)
	w.doProbe(context.Background())
	w.doProbe(context.Background())
	if f.calls != 0 || f.result("a", readiness) != resultSuccess {
		t.Errorf("skipped probe: %d calls, result %v", f.calls, f.result("a", readiness))
	}
	if len(f.events) != 1 || f.events[0] != "Normal ProbeNotRun: Readiness probe of container c not sent: no network here; it counts as passing" {
		t.Errorf("events %q, want one ProbeNotRun", f.events)
	}
}

func TestProbeManagerRunsWorkers(t *testing.T) {
	f := newProbeFixture(t, v1.Container{Name: "c", ReadinessProbe: execProbe(func(p *v1.Probe) { p.PeriodSeconds = 1 })})
	delete(f.m.pods, "u1")
	probed := make(chan struct{}, 10)
	f.m.probe = func(context.Context, probeKind, *v1.Pod, *v1.PodStatus, *v1.Container, string) (bool, error) {
		probed <- struct{}{}
		return true, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.m.addPod(ctx, f.pod)
	f.m.addPod(ctx, f.pod) // once per pod
	if n := len(f.m.workers); n != 1 {
		t.Fatalf("%d workers, want 1", n)
	}
	// A status with the running container triggers a first probe at
	// once, without waiting for the period.
	f.running("a", probeT0, true)
	<-probed
	f.m.removePod("u1")
	f.m.wait()
	if len(f.m.workers) != 0 || len(f.m.results) != 0 {
		t.Errorf("after removePod: %d workers, %d results", len(f.m.workers), len(f.m.results))
	}
}

func TestProbeKillGrace(t *testing.T) {
	pod := &v1.Pod{Spec: v1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](30)}}
	if g := probeKillGrace(pod, &v1.Probe{}); g != 30 {
		t.Errorf("pod's grace: %d", g)
	}
	if g := probeKillGrace(pod, &v1.Probe{TerminationGracePeriodSeconds: ptr.To[int64](5)}); g != 5 {
		t.Errorf("probe's grace: %d", g)
	}
	pod.DeletionGracePeriodSeconds = ptr.To[int64](1)
	if g := probeKillGrace(pod, &v1.Probe{TerminationGracePeriodSeconds: ptr.To[int64](5)}); g != 1 {
		t.Errorf("deletion's grace: %d", g)
	}
}
