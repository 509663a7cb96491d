package simulated

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestLifecycle(t *testing.T) {
	f := newFixture(t, Options{PodCIDR: "10.244.1.0/24"})
	sbCfg := f.sandboxConfig("web", map[string]string{"team": "a"})

	sandboxID, err := f.RunPodSandbox(f.ctx, sbCfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(sandboxID) != 64 {
		t.Errorf("sandbox ID %q: want 64 hex digits", sandboxID)
	}
	sb := f.sandboxStatus(t, sandboxID)
	if sb.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("sandbox state %s, want READY", sb.State)
	}
	if sb.GetNetwork().GetIp() != "10.244.1.2" {
		t.Errorf("sandbox IP %q, want 10.244.1.2 (first address after the gateway)", sb.GetNetwork().GetIp())
	}
	if sb.CreatedAt != t0.UnixNano() {
		t.Errorf("created_at %d, want %d", sb.CreatedAt, t0.UnixNano())
	}
	if sb.Metadata.Name != "web" || sb.Metadata.Namespace != "default" || sb.Metadata.Uid != "uid-web" {
		t.Errorf("metadata %v", sb.Metadata)
	}
	if sb.Labels["app"] != "test" || sb.Annotations["team"] != "a" {
		t.Errorf("labels %v annotations %v", sb.Labels, sb.Annotations)
	}
	if got := sb.GetLinux().GetNamespaces().GetOptions().GetPid(); got != runtimeapi.NamespaceMode_CONTAINER {
		t.Errorf("pid namespace %s, want CONTAINER echoed", got)
	}

	imageRef, err := f.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: "busybox"}, nil, sbCfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(imageRef, "sha256:") {
		t.Errorf("image ref %q, want an image ID", imageRef)
	}

	f.clock.Step(time.Second)
	cfg := containerConfig("app", imageRef, nil)
	containerID, err := f.CreateContainer(f.ctx, sandboxID, cfg, sbCfg)
	if err != nil {
		t.Fatal(err)
	}
	st := f.containerStatus(t, containerID)
	if st.State != runtimeapi.ContainerState_CONTAINER_CREATED || st.CreatedAt != t0.Add(time.Second).UnixNano() || st.StartedAt != 0 {
		t.Errorf("after create: state %s created %d started %d", st.State, st.CreatedAt, st.StartedAt)
	}

	f.clock.Step(time.Second)
	if err := f.StartContainer(f.ctx, containerID); err != nil {
		t.Fatal(err)
	}
	st = f.containerStatus(t, containerID)
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.StartedAt != t0.Add(2*time.Second).UnixNano() || st.FinishedAt != 0 {
		t.Errorf("after start: state %s started %d finished %d", st.State, st.StartedAt, st.FinishedAt)
	}
	if st.ImageId != imageRef || st.Image.Image != "docker.io/library/busybox:latest" ||
		st.ImageRef != "docker.io/library/busybox@"+imageRef || st.Image.UserSpecifiedImage != "busybox" {
		t.Errorf("image: id %q spec %v ref %q", st.ImageId, st.Image, st.ImageRef)
	}
	if st.LogPath != sbCfg.LogDirectory+"/app/0.log" {
		t.Errorf("log path %q", st.LogPath)
	}
	if st.GetResources().GetLinux().GetMemoryLimitInBytes() != 64<<20 {
		t.Errorf("resources %v", st.GetResources())
	}
	if st.Labels["io.kubernetes.container.name"] != "app" {
		t.Errorf("labels %v", st.Labels)
	}
	if err := f.StartContainer(f.ctx, containerID); err == nil {
		t.Error("second StartContainer succeeded")
	} else {
		wantCode(t, err, codes.FailedPrecondition, "container is in running state")
	}

	f.clock.Step(time.Minute)
	if err := f.StopContainer(f.ctx, containerID, 30); err != nil {
		t.Fatal(err)
	}
	st = f.containerStatus(t, containerID)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 143 || st.Reason != "Error" ||
		st.FinishedAt != t0.Add(62*time.Second).UnixNano() {
		t.Errorf("after stop: state %s exit %d reason %q finished %d", st.State, st.ExitCode, st.Reason, st.FinishedAt)
	}
	if err := f.StopContainer(f.ctx, containerID, 30); err != nil {
		t.Errorf("second StopContainer: %v", err)
	}

	lines := readLog(t, st.LogPath)
	if len(lines) != 2 {
		t.Fatalf("log has %d lines, want 2: %q", len(lines), lines)
	}
	wantLog := []string{
		`simulated container app started (image busybox, command ["sleep" "3600"])`,
		`simulated container app exited with code 143 (stopped with SIGTERM)`,
	}
	for i, line := range lines {
		checkCRILogLine(t, line, wantLog[i])
	}

	if err := f.RemoveContainer(f.ctx, containerID); err != nil {
		t.Fatal(err)
	}
	_, err = f.ContainerStatus(f.ctx, containerID, false)
	wantCode(t, err, codes.NotFound, containerID)
	if err := f.RemoveContainer(f.ctx, containerID); err != nil {
		t.Errorf("RemoveContainer of a removed container: %v", err)
	}

	if err := f.StopPodSandbox(f.ctx, sandboxID); err != nil {
		t.Fatal(err)
	}
	sb = f.sandboxStatus(t, sandboxID)
	if sb.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || sb.GetNetwork().GetIp() != "" {
		t.Errorf("after stop: state %s ip %q", sb.State, sb.GetNetwork().GetIp())
	}
	if err := f.StopPodSandbox(f.ctx, sandboxID); err != nil {
		t.Errorf("second StopPodSandbox: %v", err)
	}
	if err := f.RemovePodSandbox(f.ctx, sandboxID); err != nil {
		t.Fatal(err)
	}
	_, err = f.PodSandboxStatus(f.ctx, sandboxID, false)
	wantCode(t, err, codes.NotFound, sandboxID)
	if err := f.RemovePodSandbox(f.ctx, sandboxID); err != nil {
		t.Errorf("RemovePodSandbox of a removed sandbox: %v", err)
	}
}

var criLogRE = regexp.MustCompile(`^(\S+) stdout F (.*)$`)

func checkCRILogLine(t *testing.T, line, wantText string) {
	t.Helper()
	m := criLogRE.FindStringSubmatch(line)
	if m == nil {
		t.Errorf("log line %q is not in the CRI format", line)
		return
	}
	if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
		t.Errorf("log line %q: timestamp: %v", line, err)
	}
	if m[2] != wantText {
		t.Errorf("log line text %q, want %q", m[2], wantText)
	}
}

func TestStopExitCodes(t *testing.T) {
	tests := []struct {
		name    string
		signal  runtimeapi.Signal
		timeout int64
		code    int32
		logWhy  string
	}{
		{"SIGTERM with grace period", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, 30, 143, "stopped with SIGTERM"},
		{"no grace period", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, 0, 137, "killed with SIGKILL"},
		{"negative grace period", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, -1, 137, "killed with SIGKILL"},
		{"SIGQUIT stop signal", runtimeapi.Signal_SIGNAL_SIGQUIT, 30, 131, "stopped with SIGQUIT"},
		{"SIGINT stop signal", runtimeapi.Signal_SIGNAL_SIGINT, 30, 130, "stopped with SIGINT"},
		{"SIGRTMIN+1 stop signal", runtimeapi.Signal_SIGNAL_SIGRTMINPLUS1, 30, 128 + 35, "stopped with SIGRTMIN+1"},
		{"ignored stop signal", runtimeapi.Signal_SIGNAL_SIGWINCH, 30, 137, "ignored SIGWINCH, killed with SIGKILL after the 30s grace period"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{Images: []string{"busybox"}})
			sbCfg := f.sandboxConfig("p", nil)
			sandboxID, err := f.RunPodSandbox(f.ctx, sbCfg, "")
			if err != nil {
				t.Fatal(err)
			}
			cfg := containerConfig("c", "busybox", nil)
			cfg.StopSignal = tc.signal
			id, err := f.CreateContainer(f.ctx, sandboxID, cfg, sbCfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.StartContainer(f.ctx, id); err != nil {
				t.Fatal(err)
			}
			if err := f.StopContainer(f.ctx, id, tc.timeout); err != nil {
				t.Fatal(err)
			}
			st := f.containerStatus(t, id)
			if st.ExitCode != tc.code || st.Reason != "Error" {
				t.Errorf("exit code %d reason %q, want %d Error", st.ExitCode, st.Reason, tc.code)
			}
			lines := readLog(t, st.LogPath)
			checkCRILogLine(t, lines[len(lines)-1], fmt.Sprintf("simulated container c exited with code %d (%s)", tc.code, tc.logWhy))
		})
	}
}

func TestStopCreatedContainerKeepsItCreated(t *testing.T) {
	f := newFixture(t, Options{Images: []string{"busybox"}})
	sbCfg := f.sandboxConfig("p", nil)
	sandboxID, _ := f.RunPodSandbox(f.ctx, sbCfg, "")
	id, err := f.CreateContainer(f.ctx, sandboxID, containerConfig("c", "busybox", nil), sbCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.StopContainer(f.ctx, id, 10); err != nil {
		t.Fatal(err)
	}
	if st := f.containerStatus(t, id); st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("state %s, want CREATED (containerd leaves a created container alone)", st.State)
	}
}

func TestStopPodSandboxKillsContainers(t *testing.T) {
	f := newFixture(t, Options{})
	sandboxID, containerID := f.runPod(t, "p", nil, nil)
	sbCfg := f.sandboxConfig("p", nil)
	created, err := f.CreateContainer(f.ctx, sandboxID, containerConfig("late", "busybox", nil), sbCfg)
	if err != nil {
		t.Fatal(err)
	}

	if err := f.StopPodSandbox(f.ctx, sandboxID); err != nil {
		t.Fatal(err)
	}
	st := f.containerStatus(t, containerID)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 || st.Reason != "Error" {
		t.Errorf("running container after StopPodSandbox: %s %d %q, want EXITED 137 Error", st.State, st.ExitCode, st.Reason)
	}

	// A container cannot start in a stopped sandbox: containerd fails the
	// start and reports the container exited with 128, StartError.
	err = f.StartContainer(f.ctx, created)
	wantCode(t, err, codes.FailedPrecondition, "is not running")
	st = f.containerStatus(t, created)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 128 || st.Reason != "StartError" || !strings.Contains(st.Message, "not running") {
		t.Errorf("container started in a stopped sandbox: %s %d %q %q", st.State, st.ExitCode, st.Reason, st.Message)
	}

	if err := f.RemovePodSandbox(f.ctx, sandboxID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{containerID, created} {
		_, err := f.ContainerStatus(f.ctx, id, false)
		wantCode(t, err, codes.NotFound, "not found")
	}
}

func TestRemoveRunningSandboxKillsAndRemovesContainers(t *testing.T) {
	f := newFixture(t, Options{})
	sandboxID, containerID := f.runPod(t, "p", nil, nil)
	logPath := f.containerStatus(t, containerID).LogPath
	if err := f.RemovePodSandbox(f.ctx, sandboxID); err != nil {
		t.Fatal(err)
	}
	if cs, _ := f.ListContainers(f.ctx, nil); len(cs) != 0 {
		t.Errorf("%d containers left", len(cs))
	}
	lines := readLog(t, logPath)
	checkCRILogLine(t, lines[len(lines)-1], "simulated container main exited with code 137 (killed with SIGKILL)")
}

func TestNotFoundAndInvalid(t *testing.T) {
	f := newFixture(t, Options{})
	const missing = "0000000000000000000000000000000000000000000000000000000000000000"
	_, err := f.PodSandboxStatus(f.ctx, missing, false)
	wantCode(t, err, codes.NotFound, "not found")
	wantCode(t, f.StopPodSandbox(f.ctx, missing), codes.NotFound, "not found")
	_, err = f.ContainerStatus(f.ctx, missing, false)
	wantCode(t, err, codes.NotFound, "not found")
	wantCode(t, f.StartContainer(f.ctx, missing), codes.NotFound, "not found")
	wantCode(t, f.StopContainer(f.ctx, missing, 0), codes.NotFound, "not found")
	wantCode(t, f.UpdateContainerResources(f.ctx, missing, nil), codes.NotFound, "not found")
	wantCode(t, f.ReopenContainerLog(f.ctx, missing), codes.NotFound, "not found")
	_, err = f.ContainerStats(f.ctx, missing)
	wantCode(t, err, codes.NotFound, "not found")
	_, err = f.PodSandboxStats(f.ctx, missing)
	wantCode(t, err, codes.NotFound, "not found")
	_, err = f.UpdatePodSandboxResources(f.ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: missing})
	wantCode(t, err, codes.NotFound, "not found")
	_, err = f.CreateContainer(f.ctx, missing, containerConfig("c", "busybox", nil), nil)
	wantCode(t, err, codes.NotFound, "failed to find sandbox id")
	if err := f.RemovePodSandbox(f.ctx, missing); err != nil {
		t.Errorf("RemovePodSandbox of an unknown sandbox: %v", err)
	}
	if err := f.RemoveContainer(f.ctx, missing); err != nil {
		t.Errorf("RemoveContainer of an unknown container: %v", err)
	}

	// Bad input is an InvalidArgument error, never a panic.
	_, err = f.RunPodSandbox(f.ctx, nil, "")
	wantCode(t, err, codes.InvalidArgument, "config is required")
	_, err = f.RunPodSandbox(f.ctx, &runtimeapi.PodSandboxConfig{}, "")
	wantCode(t, err, codes.InvalidArgument, "must include metadata")
	_, err = f.RunPodSandbox(f.ctx, f.sandboxConfig("p", nil), "kata")
	wantCode(t, err, codes.InvalidArgument, `no runtime for "kata"`)
	sandboxID, err := f.RunPodSandbox(f.ctx, f.sandboxConfig("p", nil), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.CreateContainer(f.ctx, sandboxID, nil, nil)
	wantCode(t, err, codes.InvalidArgument, "config is required")
	_, err = f.CreateContainer(f.ctx, sandboxID, &runtimeapi.ContainerConfig{}, nil)
	wantCode(t, err, codes.InvalidArgument, "must include metadata")
	_, err = f.CreateContainer(f.ctx, sandboxID, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}, nil)
	wantCode(t, err, codes.InvalidArgument, "must include an image")
	_, err = f.CreateContainer(f.ctx, sandboxID, containerConfig("c", "Not A Reference", nil), nil)
	wantCode(t, err, codes.InvalidArgument, "failed to parse image reference")
	bad := containerConfig("c", "busybox", nil)
	bad.StopSignal = 999
	_, err = f.CreateContainer(f.ctx, sandboxID, bad, nil)
	wantCode(t, err, codes.InvalidArgument, "unknown stop signal")
	_, err = f.CreateContainer(f.ctx, "", containerConfig("c", "busybox", nil), nil)
	wantCode(t, err, codes.InvalidArgument, "must not be empty")
	wantCode(t, f.RemovePodSandbox(f.ctx, ""), codes.InvalidArgument, "must not be empty")
	wantCode(t, f.RemoveContainer(f.ctx, ""), codes.InvalidArgument, "must not be empty")
	_, err = f.UpdatePodSandboxResources(f.ctx, nil)
	wantCode(t, err, codes.InvalidArgument, "request is required")
	_, err = f.PullImage(f.ctx, nil, nil, nil)
	wantCode(t, err, codes.InvalidArgument, "must not be empty")
	_, err = f.ImageStatus(f.ctx, nil, false)
	wantCode(t, err, codes.InvalidArgument, "must not be empty")
	wantCode(t, f.RemoveImage(f.ctx, nil), codes.InvalidArgument, "must not be empty")
	if _, err := f.ListPodSandbox(f.ctx, nil); err != nil {
		t.Errorf("ListPodSandbox(nil): %v", err)
	}
	if _, err := f.ListContainers(f.ctx, nil); err != nil {
		t.Errorf("ListContainers(nil): %v", err)
	}
	if _, err := f.ListImages(f.ctx, nil); err != nil {
		t.Errorf("ListImages(nil): %v", err)
	}
	if err := f.UpdateRuntimeConfig(f.ctx, nil); err != nil {
		t.Errorf("UpdateRuntimeConfig(nil): %v", err)
	}
	//nolint:staticcheck // a nil context must not panic either
	if _, err := f.Version(nil, ""); err != nil {
		t.Errorf("Version(nil ctx): %v", err)
	}
}

func TestUnsupported(t *testing.T) {
	f := newFixture(t, Options{})
	_, containerID := f.runPod(t, "p", nil, nil)
	_, err := f.Exec(f.ctx, &runtimeapi.ExecRequest{ContainerId: containerID})
	wantCode(t, err, codes.Unimplemented, "Exec is not supported by the simulated runtime")
	_, err = f.Attach(f.ctx, &runtimeapi.AttachRequest{ContainerId: containerID})
	wantCode(t, err, codes.Unimplemented, "Attach is not supported by the simulated runtime")
	_, err = f.PortForward(f.ctx, &runtimeapi.PortForwardRequest{})
	wantCode(t, err, codes.Unimplemented, "PortForward is not supported by the simulated runtime")
	wantCode(t, f.CheckpointContainer(f.ctx, &runtimeapi.CheckpointContainerRequest{}), codes.Unimplemented, "not supported")
	wantCode(t, f.CheckpointPod(f.ctx, &runtimeapi.CheckpointPodRequest{}), codes.Unimplemented, "not supported")
	_, err = f.RestorePod(f.ctx, &runtimeapi.RestorePodRequest{})
	wantCode(t, err, codes.Unimplemented, "not supported")
}

func TestNameReservation(t *testing.T) {
	f := newFixture(t, Options{Images: []string{"busybox"}})
	cfg := f.sandboxConfig("p", nil)
	first, err := f.RunPodSandbox(f.ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.RunPodSandbox(f.ctx, cfg, "")
	wantCode(t, err, codes.AlreadyExists,
		fmt.Sprintf(`failed to reserve sandbox name "p_default_uid-p_0": name "p_default_uid-p_0" is reserved for %q`, first))

	// The next attempt of the same pod has its own name; a stopped
	// sandbox keeps its name until it is removed.
	next := f.sandboxConfig("p", nil)
	next.Metadata.Attempt = 1
	if _, err := f.RunPodSandbox(f.ctx, next, ""); err != nil {
		t.Errorf("attempt 1: %v", err)
	}
	if err := f.StopPodSandbox(f.ctx, first); err != nil {
		t.Fatal(err)
	}
	_, err = f.RunPodSandbox(f.ctx, cfg, "")
	wantCode(t, err, codes.AlreadyExists, "is reserved for")
	if err := f.RemovePodSandbox(f.ctx, first); err != nil {
		t.Fatal(err)
	}
	again, err := f.RunPodSandbox(f.ctx, cfg, "")
	if err != nil {
		t.Fatalf("after removal: %v", err)
	}

	// Containers reserve <container>_<pod>_<namespace>_<uid>_<attempt>.
	c1, err := f.CreateContainer(f.ctx, again, containerConfig("c", "busybox", nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.CreateContainer(f.ctx, again, containerConfig("c", "busybox", nil), cfg)
	wantCode(t, err, codes.AlreadyExists, fmt.Sprintf(`failed to reserve container name "c_p_default_uid-p_0": name "c_p_default_uid-p_0" is reserved for %q`, c1))
	restart := containerConfig("c", "busybox", nil)
	restart.Metadata.Attempt = 1
	if _, err := f.CreateContainer(f.ctx, again, restart, cfg); err != nil {
		t.Errorf("container attempt 1: %v", err)
	}
	if err := f.RemoveContainer(f.ctx, c1); err != nil {
		t.Fatal(err)
	}
	if _, err := f.CreateContainer(f.ctx, again, containerConfig("c", "busybox", nil), cfg); err != nil {
		t.Errorf("after removing the container: %v", err)
	}
}

func TestListFilters(t *testing.T) {
	f := newFixture(t, Options{})
	sbA, ctrA := f.runPod(t, "a", nil, nil)
	sbB, ctrB := f.runPod(t, "b", nil, nil)
	sbC, ctrC := f.runPod(t, "c", nil, nil)
	if err := f.StopPodSandbox(f.ctx, sbC); err != nil {
		t.Fatal(err)
	}
	cfgB := f.sandboxConfig("b", nil)
	createdB, err := f.CreateContainer(f.ctx, sbB, containerConfig("sidecar", "busybox", nil), cfgB)
	if err != nil {
		t.Fatal(err)
	}

	ready := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	notReady := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	sandboxTests := []struct {
		name   string
		filter *runtimeapi.PodSandboxFilter
		want   []string
	}{
		{"all", nil, []string{sbA, sbB, sbC}},
		{"empty filter", &runtimeapi.PodSandboxFilter{}, []string{sbA, sbB, sbC}},
		{"id", &runtimeapi.PodSandboxFilter{Id: sbB}, []string{sbB}},
		{"unknown id", &runtimeapi.PodSandboxFilter{Id: "nope"}, nil},
		{"ready", &runtimeapi.PodSandboxFilter{State: ready}, []string{sbA, sbB}},
		{"not ready", &runtimeapi.PodSandboxFilter{State: notReady}, []string{sbC}},
		{"label", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"io.kubernetes.pod.name": "a"}}, []string{sbA}},
		{"labels and state", &runtimeapi.PodSandboxFilter{State: notReady, LabelSelector: map[string]string{"app": "test"}}, []string{sbC}},
		{"label mismatch", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "other"}}, nil},
		{"id and state mismatch", &runtimeapi.PodSandboxFilter{Id: sbA, State: notReady}, nil},
	}
	for _, tc := range sandboxTests {
		t.Run("sandboxes/"+tc.name, func(t *testing.T) {
			got, err := f.ListPodSandbox(f.ctx, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, sb := range got {
				ids = append(ids, sb.Id)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", ids, tc.want)
			}
		})
	}

	state := func(s runtimeapi.ContainerState) *runtimeapi.ContainerStateValue {
		return &runtimeapi.ContainerStateValue{State: s}
	}
	containerTests := []struct {
		name   string
		filter *runtimeapi.ContainerFilter
		want   []string
	}{
		{"all", nil, []string{ctrA, ctrB, ctrC, createdB}},
		{"id", &runtimeapi.ContainerFilter{Id: ctrA}, []string{ctrA}},
		{"sandbox", &runtimeapi.ContainerFilter{PodSandboxId: sbB}, []string{ctrB, createdB}},
		{"unknown sandbox", &runtimeapi.ContainerFilter{PodSandboxId: "nope"}, nil},
		{"id in another sandbox", &runtimeapi.ContainerFilter{Id: ctrA, PodSandboxId: sbB}, nil},
		{"running", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_RUNNING)}, []string{ctrA, ctrB}},
		{"exited", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_EXITED)}, []string{ctrC}},
		{"created", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_CREATED)}, []string{createdB}},
		{"label", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"io.kubernetes.container.name": "sidecar"}}, []string{createdB}},
		{"sandbox and state", &runtimeapi.ContainerFilter{PodSandboxId: sbB, State: state(runtimeapi.ContainerState_CONTAINER_RUNNING)}, []string{ctrB}},
	}
	for _, tc := range containerTests {
		t.Run("containers/"+tc.name, func(t *testing.T) {
			got, err := f.ListContainers(f.ctx, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, c := range got {
				ids = append(ids, c.Id)
				if c.ImageId == "" || c.ImageRef != c.ImageId || c.Image.GetImage() != "docker.io/library/busybox:latest" {
					t.Errorf("container %s image: id %q ref %q spec %v", c.Id, c.ImageId, c.ImageRef, c.Image)
				}
			}
			if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", ids, tc.want)
			}
		})
	}

	stats, err := f.ListContainerStats(f.ctx, &runtimeapi.ContainerStatsFilter{PodSandboxId: sbB})
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0].Attributes.Id != ctrB {
		t.Errorf("ListContainerStats of sandbox b: %v, want the running container only", stats)
	}
	podStats, err := f.ListPodSandboxStats(f.ctx, &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "test"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(podStats) != 2 {
		t.Errorf("ListPodSandboxStats: %d, want the 2 ready sandboxes", len(podStats))
	}
}

func TestReturnedMessagesAreCopies(t *testing.T) {
	f := newFixture(t, Options{})
	sandboxID, containerID := f.runPod(t, "p", map[string]string{"k": "v"}, nil)
	sb := f.sandboxStatus(t, sandboxID)
	sb.Annotations["k"] = "changed"
	sb.Labels["app"] = "changed"
	sb.Metadata.Name = "changed"
	st := f.containerStatus(t, containerID)
	st.Labels["io.kubernetes.container.name"] = "changed"
	st.Resources.Linux.MemoryLimitInBytes = 1

	sb = f.sandboxStatus(t, sandboxID)
	st = f.containerStatus(t, containerID)
	if sb.Annotations["k"] != "v" || sb.Labels["app"] != "test" || sb.Metadata.Name != "p" ||
		st.Labels["io.kubernetes.container.name"] != "main" || st.Resources.Linux.MemoryLimitInBytes != 64<<20 {
		t.Error("changing a returned message changed the runtime's state")
	}

	// Nor does changing the config after the call.
	cfg := f.sandboxConfig("q", nil)
	id, err := f.RunPodSandbox(f.ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Labels["app"] = "changed"
	cfg.Metadata.Name = "changed"
	if sb := f.sandboxStatus(t, id); sb.Labels["app"] != "test" || sb.Metadata.Name != "q" {
		t.Error("changing the config after RunPodSandbox changed the sandbox")
	}
}

func TestUpdateResources(t *testing.T) {
	f := newFixture(t, Options{})
	sandboxID, containerID := f.runPod(t, "p", nil, nil)
	err := f.UpdateContainerResources(f.ctx, containerID, &runtimeapi.ContainerResources{
		Linux: &runtimeapi.LinuxContainerResources{CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 128 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := f.containerStatus(t, containerID).GetResources().GetLinux()
	if res.CpuQuota != 50000 || res.MemoryLimitInBytes != 128<<20 {
		t.Errorf("resources after update: %v", res)
	}
	if _, err := f.UpdatePodSandboxResources(f.ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: sandboxID, Resources: &runtimeapi.LinuxContainerResources{CpuShares: 10},
	}); err != nil {
		t.Errorf("UpdatePodSandboxResources: %v", err)
	}
	if err := f.ReopenContainerLog(f.ctx, containerID); err != nil {
		t.Errorf("ReopenContainerLog of a running container: %v", err)
	}
	if err := f.StopContainer(f.ctx, containerID, 0); err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.UpdateContainerResources(f.ctx, containerID, &runtimeapi.ContainerResources{}), codes.FailedPrecondition, "exited state")
	wantCode(t, f.ReopenContainerLog(f.ctx, containerID), codes.FailedPrecondition, "not running")
}

func TestLogRotation(t *testing.T) {
	f := newFixture(t, Options{})
	_, containerID := f.runPod(t, "p", nil, nil)
	path := f.containerStatus(t, containerID).LogPath
	// The kubelet rotates by renaming the file and asking the runtime to
	// reopen it; the next line goes to a new file.
	if err := renameFile(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := f.ReopenContainerLog(f.ctx, containerID); err != nil {
		t.Fatal(err)
	}
	if err := f.StopContainer(f.ctx, containerID, 10); err != nil {
		t.Fatal(err)
	}
	lines := readLog(t, path)
	if len(lines) != 1 || !strings.Contains(lines[0], "exited with code 143") {
		t.Errorf("new log file: %q", lines)
	}
}

func TestNoLogDirectory(t *testing.T) {
	f := newFixture(t, Options{Images: []string{"busybox"}})
	cfg := f.sandboxConfig("p", nil)
	cfg.LogDirectory = ""
	sandboxID, err := f.RunPodSandbox(f.ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.CreateContainer(f.ctx, sandboxID, containerConfig("c", "busybox", nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.StartContainer(f.ctx, id); err != nil {
		t.Fatal(err)
	}
	if st := f.containerStatus(t, id); st.LogPath != "" || st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("log path %q state %s: want no log and running", st.LogPath, st.State)
	}
}

func TestStartFailsWhenLogCannotBeCreated(t *testing.T) {
	f := newFixture(t, Options{Images: []string{"busybox"}})
	cfg := f.sandboxConfig("p", nil)
	// A file where the container's log directory should be.
	if err := writeFile(cfg.LogDirectory, "not a directory"); err != nil {
		t.Fatal(err)
	}
	sandboxID, err := f.RunPodSandbox(f.ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.CreateContainer(f.ctx, sandboxID, containerConfig("c", "busybox", nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.StartContainer(f.ctx, id), codes.Internal, "failed to create and open log file")
	if st := f.containerStatus(t, id); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Reason != "StartError" || st.ExitCode != 128 {
		t.Errorf("after a failed start: %s %q %d", st.State, st.Reason, st.ExitCode)
	}
}

func TestVersionStatusConfig(t *testing.T) {
	f := newFixture(t, Options{RuntimeVersion: "1.2.3", RuntimeHandlers: []string{"runc"}})
	v, err := f.Version(f.ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "gatehouse-simulated" || v.RuntimeVersion != "1.2.3" || v.RuntimeApiVersion != "v1" || v.Version != "0.1.0" {
		t.Errorf("version %v", v)
	}
	st, err := f.Status(f.ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]bool{}
	for _, c := range st.GetStatus().GetConditions() {
		conds[c.Type] = c.Status
	}
	if !conds[runtimeapi.RuntimeReady] || !conds[runtimeapi.NetworkReady] {
		t.Errorf("conditions %v", st.GetStatus().GetConditions())
	}
	if len(st.RuntimeHandlers) != 2 || st.RuntimeHandlers[1].Name != "runc" {
		t.Errorf("runtime handlers %v", st.RuntimeHandlers)
	}
	if st.Info["config"] == "" {
		t.Error("verbose status has no info")
	}
	if _, err := f.RunPodSandbox(f.ctx, f.sandboxConfig("p", nil), "runc"); err != nil {
		t.Errorf("RunPodSandbox with a configured handler: %v", err)
	}
	rc, err := f.RuntimeConfig(f.ctx)
	if err != nil || rc.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_CGROUPFS {
		t.Errorf("RuntimeConfig: %v %v", rc, err)
	}
}

func TestInvalidOptions(t *testing.T) {
	opts := Options{PodCIDR: "10.0.0.0/33", MissingImages: []string{"UPPER"}}
	if err := opts.Validate(); err == nil || !strings.Contains(err.Error(), "PodCIDR") || !strings.Contains(err.Error(), "MissingImages") {
		t.Errorf("Validate: %v", err)
	}
	f := newFixture(t, opts)
	st, err := f.Status(f.ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Status.Conditions {
		if c.Status || c.Reason != "InvalidConfiguration" || !strings.Contains(c.Message, "invalid pod CIDR") {
			t.Errorf("condition %v: want false with the reason", c)
		}
	}
	_, err = f.RunPodSandbox(f.ctx, f.sandboxConfig("p", nil), "")
	wantCode(t, err, codes.FailedPrecondition, "misconfigured")
}

func TestCloseAndCancel(t *testing.T) {
	f := newFixture(t, Options{})
	_, containerID := f.runPod(t, "p", map[string]string{AnnotationExitAfter: "1h"}, nil)
	if f.clock.Waiters() != 1 {
		t.Fatalf("%d timers, want 1", f.clock.Waiters())
	}
	ctx, cancel := contextWithCancel()
	cancel()
	_, err := f.ListContainers(ctx, nil)
	wantCode(t, err, codes.Canceled, "")

	if err := f.Close(f.ctx); err != nil {
		t.Fatal(err)
	}
	if f.clock.Waiters() != 0 {
		t.Errorf("%d timers after Close, want 0", f.clock.Waiters())
	}
	_, err = f.ContainerStatus(f.ctx, containerID, false)
	wantCode(t, err, codes.Unavailable, "closed")
	if err := f.Close(f.ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestStats(t *testing.T) {
	f := newFixture(t, Options{})
	sandboxID, containerID := f.runPod(t, "p", nil, nil)
	f.clock.Step(10 * time.Second)
	st, err := f.ContainerStats(f.ctx, containerID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Cpu.UsageNanoCores.Value != 1_000_000 || st.Cpu.UsageCoreNanoSeconds.Value != uint64(10*time.Millisecond) ||
		st.Memory.WorkingSetBytes.Value != 2<<20 || st.Memory.AvailableBytes.Value != 62<<20 || st.Attributes.Metadata.Name != "main" {
		t.Errorf("container stats %v", st)
	}
	ps, err := f.PodSandboxStats(f.ctx, sandboxID)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Linux.Process.ProcessCount.Value != 1 || len(ps.Linux.Containers) != 1 || ps.Linux.Memory.WorkingSetBytes.Value != 2<<20 || ps.Linux.Network.DefaultInterface.Name != "eth0" {
		t.Errorf("pod stats %v", ps)
	}
	if d, err := f.ListMetricDescriptors(f.ctx); err != nil || len(d) != 0 {
		t.Errorf("ListMetricDescriptors: %v %v", d, err)
	}
	if m, err := f.ListPodSandboxMetrics(f.ctx); err != nil || len(m) != 0 {
		t.Errorf("ListPodSandboxMetrics: %v %v", m, err)
	}
}

func TestContainerUser(t *testing.T) {
	f := newFixture(t, Options{Images: []string{"busybox"}})
	cfg := f.sandboxConfig("p", nil)
	sandboxID, _ := f.RunPodSandbox(f.ctx, cfg, "")
	cc := containerConfig("c", "busybox", nil)
	cc.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		RunAsUser:          &runtimeapi.Int64Value{Value: 1000},
		RunAsGroup:         &runtimeapi.Int64Value{Value: 3000},
		SupplementalGroups: []int64{4000, 3000},
	}
	id, err := f.CreateContainer(f.ctx, sandboxID, cc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	u := f.containerStatus(t, id).GetUser().GetLinux()
	if u.Uid != 1000 || u.Gid != 3000 || fmt.Sprint(u.SupplementalGroups) != "[3000 4000]" {
		t.Errorf("user %v", u)
	}
}
