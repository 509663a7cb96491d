package kubelet

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"

	"github.com/gatehouse-dev/gatehouse/kubelet/simulated"
)

func hookPod(c v1.Container) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"},
		Spec:       v1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](30), Containers: []v1.Container{c}},
	}
}

func TestRunHandler(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError) // any answer will do
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	c := &v1.Container{Name: "c"}

	t.Run("exec", func(t *testing.T) {
		a, _, id := testAgent(t, nil)
		if msg, err := a.runHandler(context.Background(), hookPod(*c), c, id, nil, &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"touch", "/x"}}}); err != nil {
			t.Errorf("exec: %s %v", msg, err)
		}
		a, _, id = testAgent(t, map[string]string{simulated.AnnotationExecExitCode: "2"})
		msg, err := a.runHandler(context.Background(), hookPod(*c), c, id, nil, &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"touch", "/x"}}})
		if want := `Exec lifecycle hook ([touch /x]) for Container "c" in Pod "p_ns(u1)" failed - error: command 'touch /x' exited with 2`; err == nil || !strings.HasPrefix(msg, want) {
			t.Errorf("failing exec: %q %v, want a message starting %q", msg, err, want)
		}
	})
	t.Run("httpGet to the pod IP, any status", func(t *testing.T) {
		a, rec, id := testAgent(t, nil)
		h := &v1.LifecycleHandler{HTTPGet: &v1.HTTPGetAction{Path: "/started", Port: intstr.FromInt(port)}}
		if msg, err := a.runHandler(context.Background(), hookPod(*c), c, id, []string{"127.0.0.1"}, h); err != nil {
			t.Errorf("httpGet: %s %v", msg, err)
		}
		// HTTPS to a plain HTTP server is retried in HTTP, with an event.
		h = &v1.LifecycleHandler{HTTPGet: &v1.HTTPGetAction{Path: "/tls", Port: intstr.FromInt(port), Host: "127.0.0.1", Scheme: v1.URISchemeHTTPS}}
		if msg, err := a.runHandler(context.Background(), hookPod(*c), c, id, nil, h); err != nil {
			t.Errorf("httpGet HTTPS fallback: %s %v", msg, err)
		}
		if ev := drain(rec); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning LifecycleHTTPFallback") {
			t.Errorf("events %q", ev)
		}
		mu.Lock()
		defer mu.Unlock()
		if strings.Join(paths, ",") != "/started,/tls" {
			t.Errorf("server saw %q", paths)
		}
		h = &v1.LifecycleHandler{HTTPGet: &v1.HTTPGetAction{Path: "/x", Port: intstr.FromInt(port)}}
		if msg, err := a.runHandler(context.Background(), hookPod(*c), c, id, nil, h); err == nil || !strings.Contains(msg, "the pod has no IP") {
			t.Errorf("httpGet without a pod IP: %q %v", msg, err)
		}
	})
	t.Run("httpGet on the simulated runtime is not sent", func(t *testing.T) {
		a, rec, id := testAgent(t, nil)
		a.prober.noNetwork = "no network"
		h := &v1.LifecycleHandler{HTTPGet: &v1.HTTPGetAction{Path: "/never", Port: intstr.FromInt(port)}}
		if _, err := a.runHandler(context.Background(), hookPod(*c), c, id, []string{"10.99.0.2"}, h); err != nil {
			t.Error(err)
		}
		if ev := drain(rec); len(ev) != 1 || !strings.HasPrefix(ev[0], "Normal HookNotRun") {
			t.Errorf("events %q", ev)
		}
	})
	t.Run("sleep ends early when its context does", func(t *testing.T) {
		a, _, id := testAgent(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		msg, err := a.runHandler(ctx, hookPod(*c), c, id, nil, &v1.LifecycleHandler{Sleep: &v1.SleepAction{Seconds: 600}})
		if err == nil || !strings.Contains(msg, "container terminated before sleep hook finished") {
			t.Errorf("sleep: %q %v", msg, err)
		}
		if _, err := a.runHandler(context.Background(), hookPod(*c), c, id, nil, &v1.LifecycleHandler{Sleep: &v1.SleepAction{Seconds: 0}}); err != nil {
			t.Error(err)
		}
	})
	t.Run("no handler", func(t *testing.T) {
		a, _, id := testAgent(t, nil)
		if _, err := a.runHandler(context.Background(), hookPod(*c), c, id, nil, &v1.LifecycleHandler{}); err == nil {
			t.Error("an empty handler ran")
		}
	})
}

// stopRecorder records the grace periods StopContainer is given.
type stopRecorder struct {
	internalapi.RuntimeService
	mu    sync.Mutex
	grace []int64
}

func (s *stopRecorder) StopContainer(ctx context.Context, id string, timeout int64) error {
	s.mu.Lock()
	s.grace = append(s.grace, timeout)
	s.mu.Unlock()
	return s.RuntimeService.StopContainer(ctx, id, timeout)
}

func TestKillContainerRunsPreStop(t *testing.T) {
	for _, tc := range []struct {
		name      string
		podAnn    map[string]string
		hook      *v1.LifecycleHandler
		grace     int64
		wantGrace int64
		wantEvent string
		// notRunning: killed as a created container (no hook).
		notRunning bool
	}{
		{name: "no hook", grace: 30, wantGrace: 30},
		{name: "exec hook", hook: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"true"}}}, grace: 30, wantGrace: 30},
		{name: "failing hook", podAnn: map[string]string{simulated.AnnotationExecExitCode: "1"},
			hook: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"false"}}}, grace: 30, wantGrace: 30,
			wantEvent: "Warning FailedPreStopHook PreStopHook failed"},
		// The hook takes the grace period: the container still gets 2 s.
		{name: "sleep hook", hook: &v1.LifecycleHandler{Sleep: &v1.SleepAction{Seconds: 1}}, grace: 1, wantGrace: 2},
		{name: "grace period 0 skips the hook", hook: &v1.LifecycleHandler{Sleep: &v1.SleepAction{Seconds: 60}}, grace: 0, wantGrace: 2},
		{name: "not running: no hook", hook: &v1.LifecycleHandler{Sleep: &v1.SleepAction{Seconds: 60}}, notRunning: true, grace: 30, wantGrace: 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, rec, id := testAgent(t, tc.podAnn)
			stops := &stopRecorder{RuntimeService: a.runtime}
			a.runtime = stops
			c := v1.Container{Name: "c"}
			if tc.hook != nil {
				c.Lifecycle = &v1.Lifecycle{PreStop: tc.hook}
			}
			a.killContainer(context.Background(), hookPod(c), id, "c", !tc.notRunning, nil, tc.grace, "")
			if len(stops.grace) != 1 || stops.grace[0] != tc.wantGrace {
				t.Errorf("StopContainer grace periods %v, want [%d]", stops.grace, tc.wantGrace)
			}
			st, err := a.runtime.ContainerStatus(context.Background(), id, false)
			if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED {
				t.Errorf("container after kill: %v %v", st, err)
			}
			events := drain(rec)
			if len(events) == 0 || events[0] != "Normal Killing Stopping container c" {
				t.Errorf("events %q, want Killing first", events)
			}
			if tc.wantEvent != "" && (len(events) != 2 || events[1] != tc.wantEvent) {
				t.Errorf("events %q, want %q", events, tc.wantEvent)
			}
		})
	}
}

func TestPostStartFailureKills(t *testing.T) {
	a, rec, id := testAgent(t, map[string]string{simulated.AnnotationExecExitCode: "1"})
	c := v1.Container{Name: "c", Lifecycle: &v1.Lifecycle{PostStart: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"false"}}}}}
	s := &podSync{agent: a, pod: hookPod(c), state: &podState{}}
	msg, failed := s.postStart(context.Background(), &s.pod.Spec.Containers[0], id)
	if !failed || !strings.HasPrefix(msg, `Exec lifecycle hook ([false]) for Container "c" in Pod "p_ns(u1)" failed`) {
		t.Fatalf("postStart: %v %q", failed, msg)
	}
	st, err := a.runtime.ContainerStatus(context.Background(), id, false)
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("container after a failed postStart: %v %v", st, err)
	}
	want := []string{"Warning FailedPostStartHook PostStartHook failed", "Normal Killing FailedPostStartHook"}
	if got := drain(rec); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events %q, want %q", got, want)
	}

	// Without a hook, or with one that passes, nothing happens.
	a, rec, id = testAgent(t, nil)
	s = &podSync{agent: a, pod: hookPod(c), state: &podState{}}
	if _, failed := s.postStart(context.Background(), &s.pod.Spec.Containers[0], id); failed {
		t.Error("a passing postStart failed")
	}
	if got := drain(rec); len(got) != 0 {
		t.Errorf("events %q", got)
	}
}
