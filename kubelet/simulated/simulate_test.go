package simulated

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSimulatedExit(t *testing.T) {
	tests := []struct {
		name         string
		podAnn       map[string]string
		ctrAnn       map[string]string
		runsFor      time.Duration // -1: runs until stopped
		code         int32
		reason, from string
	}{
		{"no annotation runs until stopped", nil, nil, -1, 0, "", ""},
		{"pod exit-after", map[string]string{AnnotationExitAfter: "10s"}, nil, 10 * time.Second, 0, "Completed",
			"simulated exit after 10s (pod annotation simulate.gatehouse.dev/exit-after)"},
		{"pod exit-after and exit-code", map[string]string{AnnotationExitAfter: "1m", AnnotationExitCode: "3"}, nil, time.Minute, 3, "Error",
			"pod annotation simulate.gatehouse.dev/exit-after, pod annotation simulate.gatehouse.dev/exit-code"},
		{"exit-code alone exits at start", map[string]string{AnnotationExitCode: "1"}, nil, 0, 1, "Error",
			"simulated exit on start (pod annotation simulate.gatehouse.dev/exit-code)"},
		{"zero exit-after exits at start", map[string]string{AnnotationExitAfter: "0s"}, nil, 0, 0, "Completed", "simulated exit on start"},
		{"container annotation overrides pod", map[string]string{AnnotationExitAfter: "10s", AnnotationExitCode: "1"},
			map[string]string{AnnotationExitAfter: "5s"}, 5 * time.Second, 1, "Error",
			"container annotation simulate.gatehouse.dev/exit-after, pod annotation simulate.gatehouse.dev/exit-code"},
		{"pod annotation for this container overrides pod", map[string]string{AnnotationExitAfter: "10s", AnnotationExitAfter + ".main": "2s"},
			nil, 2 * time.Second, 0, "Completed", "pod annotation simulate.gatehouse.dev/exit-after.main"},
		{"pod annotation for another container does not apply", map[string]string{AnnotationExitAfter + ".sidecar": "2s"},
			nil, -1, 0, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			_, id := f.runPod(t, "p", tc.podAnn, tc.ctrAnn)
			started := f.containerStatus(t, id).StartedAt
			if tc.runsFor < 0 {
				f.clock.Step(24 * time.Hour)
				if st := f.containerStatus(t, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
					t.Fatalf("state %s after a day, want RUNNING", st.State)
				}
				if f.clock.Waiters() != 0 {
					t.Errorf("%d timers for a container that runs until stopped", f.clock.Waiters())
				}
				return
			}
			if tc.runsFor > 0 {
				f.clock.Step(tc.runsFor - time.Millisecond)
				if st := f.containerStatus(t, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
					t.Fatalf("state %s just before %s, want RUNNING", st.State, tc.runsFor)
				}
				f.clock.Step(time.Millisecond)
			}
			st := f.containerStatus(t, id)
			if st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
				t.Fatalf("state %s after %s, want EXITED", st.State, tc.runsFor)
			}
			if st.ExitCode != tc.code || st.Reason != tc.reason || !strings.Contains(st.Message, tc.from) {
				t.Errorf("exit %d reason %q message %q, want %d %q containing %q", st.ExitCode, st.Reason, st.Message, tc.code, tc.reason, tc.from)
			}
			if st.FinishedAt != started+int64(tc.runsFor) {
				t.Errorf("finished %s after start, want %s", time.Duration(st.FinishedAt-started), tc.runsFor)
			}
			lines := readLog(t, st.LogPath)
			if len(lines) != 2 {
				t.Fatalf("log: %q", lines)
			}
			checkCRILogLine(t, lines[1], "simulated container main exited with code "+strconv.Itoa(int(tc.code)))
			// Stopping an exited container changes nothing.
			if err := f.StopContainer(f.ctx, id, 0); err != nil {
				t.Fatal(err)
			}
			if again := f.containerStatus(t, id); again.ExitCode != tc.code {
				t.Errorf("stop after exit changed the exit code to %d", again.ExitCode)
			}
		})
	}
}

func TestStopBeforeSimulatedExitCancelsTimer(t *testing.T) {
	f := newFixture(t, Options{})
	_, id := f.runPod(t, "p", map[string]string{AnnotationExitAfter: "1m", AnnotationExitCode: "0"}, nil)
	if f.clock.Waiters() != 1 {
		t.Fatalf("%d timers, want 1", f.clock.Waiters())
	}
	f.clock.Step(30 * time.Second)
	if err := f.StopContainer(f.ctx, id, 30); err != nil {
		t.Fatal(err)
	}
	if f.clock.Waiters() != 0 {
		t.Errorf("%d timers after stop, want 0", f.clock.Waiters())
	}
	f.clock.Step(time.Hour)
	if st := f.containerStatus(t, id); st.ExitCode != 143 || st.FinishedAt != t0.Add(30*time.Second).UnixNano() {
		t.Errorf("exit %d finished %d: the stop's, want 143 at +30s", st.ExitCode, st.FinishedAt)
	}
}

func TestRemoveBeforeSimulatedExit(t *testing.T) {
	f := newFixture(t, Options{})
	sandboxID, id := f.runPod(t, "p", map[string]string{AnnotationExitAfter: "1m"}, nil)
	if err := f.RemoveContainer(f.ctx, id); err != nil {
		t.Fatal(err)
	}
	if f.clock.Waiters() != 0 {
		t.Errorf("%d timers after removal, want 0", f.clock.Waiters())
	}
	f.clock.Step(time.Hour) // nothing fires, nothing panics
	if cs, _ := f.ListContainers(f.ctx, &runtimeapi.ContainerFilter{PodSandboxId: sandboxID}); len(cs) != 0 {
		t.Errorf("containers left: %v", cs)
	}
}

// A Job-like pod: an init container and a main container, each exiting
// after its own time, as the kubelet runs them one after the other.
func TestJobLikePod(t *testing.T) {
	f := newFixture(t, Options{Images: []string{"busybox"}})
	cfg := f.sandboxConfig("job", map[string]string{
		AnnotationExitAfter:           "20s",
		AnnotationExitAfter + ".init": "5s",
	})
	sandboxID, err := f.RunPodSandbox(f.ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	initID, err := f.CreateContainer(f.ctx, sandboxID, containerConfig("init", "busybox", nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.StartContainer(f.ctx, initID); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(5 * time.Second)
	if st := f.containerStatus(t, initID); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Reason != "Completed" {
		t.Fatalf("init: %s %q", st.State, st.Reason)
	}
	mainID, err := f.CreateContainer(f.ctx, sandboxID, containerConfig("main", "busybox", nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.StartContainer(f.ctx, mainID); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(19 * time.Second)
	if st := f.containerStatus(t, mainID); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("main at 19s: %s", st.State)
	}
	f.clock.Step(time.Second)
	if st := f.containerStatus(t, mainID); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 {
		t.Fatalf("main at 20s: %s %d", st.State, st.ExitCode)
	}
}

func TestInvalidSimulationAnnotations(t *testing.T) {
	podTests := []struct {
		name string
		ann  map[string]string
		want string
	}{
		{"bad duration", map[string]string{AnnotationExitAfter: "soon"}, `invalid pod annotation simulate.gatehouse.dev/exit-after="soon": want a duration`},
		{"negative duration", map[string]string{AnnotationExitAfter: "-1s"}, "zero or more"},
		{"bad exit code", map[string]string{AnnotationExitCode: "256"}, "want an exit code from 0 to 255"},
		{"bad exit code for a container", map[string]string{AnnotationExitCode + ".main": "x"}, "simulate.gatehouse.dev/exit-code.main"},
		{"unknown key", map[string]string{AnnotationPrefix + "exit-afer": "1s"}, "unknown pod annotation simulate.gatehouse.dev/exit-afer (known: simulate.gatehouse.dev/exit-after, simulate.gatehouse.dev/exit-code, simulate.gatehouse.dev/exec-exit-code)"},
	}
	for _, tc := range podTests {
		t.Run("pod/"+tc.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			_, err := f.RunPodSandbox(f.ctx, f.sandboxConfig("p", tc.ann), "")
			wantCode(t, err, codes.InvalidArgument, tc.want)
		})
	}
	containerTests := []struct {
		name string
		ann  map[string]string
		want string
	}{
		{"bad duration", map[string]string{AnnotationExitAfter: "1 minute"}, "invalid container annotation simulate.gatehouse.dev/exit-after"},
		{"container-scoped key on a container", map[string]string{AnnotationExitAfter + ".main": "1s"}, "unknown container annotation"},
	}
	for _, tc := range containerTests {
		t.Run("container/"+tc.name, func(t *testing.T) {
			f := newFixture(t, Options{Images: []string{"busybox"}})
			cfg := f.sandboxConfig("p", nil)
			sandboxID, err := f.RunPodSandbox(f.ctx, cfg, "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.CreateContainer(f.ctx, sandboxID, containerConfig("main", "busybox", tc.ann), cfg)
			wantCode(t, err, codes.InvalidArgument, tc.want)
		})
	}
}

func TestFakeClock(t *testing.T) {
	c := NewFakeClock(t0)
	var fired []string
	c.AfterFunc(2*time.Second, func() { fired = append(fired, "2s@"+c.Now().Sub(t0).String()) })
	c.AfterFunc(time.Second, func() {
		fired = append(fired, "1s@"+c.Now().Sub(t0).String())
		c.AfterFunc(time.Second, func() { fired = append(fired, "chained@"+c.Now().Sub(t0).String()) })
	})
	stopped := c.AfterFunc(time.Second, func() { fired = append(fired, "stopped") })
	if !stopped.Stop() || stopped.Stop() {
		t.Error("Stop: want true once, then false")
	}
	c.Step(5 * time.Second)
	if got := strings.Join(fired, " "); got != "1s@1s 2s@2s chained@2s" {
		t.Errorf("fired %q", got)
	}
	if c.Now() != t0.Add(5*time.Second) || c.Waiters() != 0 {
		t.Errorf("now %s waiters %d", c.Now(), c.Waiters())
	}
}
