package simulated

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

type fixture struct {
	*Runtime
	clock  *FakeClock
	logDir string
	ctx    context.Context
}

func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	clock := NewFakeClock(t0)
	if opts.Clock == nil {
		opts.Clock = clock
	}
	f := &fixture{Runtime: New(opts), clock: clock, logDir: t.TempDir(), ctx: context.Background()}
	t.Cleanup(func() { _ = f.Close(context.Background()) })
	return f
}

func (f *fixture) sandboxConfig(name string, annotations map[string]string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: filepath.Join(f.logDir, "default_"+name),
		Labels:       map[string]string{"io.kubernetes.pod.name": name, "app": "test"},
		Annotations:  annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

func containerConfig(name, image string, annotations map[string]string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata:    &runtimeapi.ContainerMetadata{Name: name},
		Image:       &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: "busybox"},
		Command:     []string{"sleep"},
		Args:        []string{"3600"},
		Labels:      map[string]string{"io.kubernetes.container.name": name},
		Annotations: annotations,
		LogPath:     name + "/0.log",
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
			CpuShares: 2, MemoryLimitInBytes: 64 << 20,
		}},
	}
}

// runPod runs a sandbox and starts one busybox container in it.
func (f *fixture) runPod(t testing.TB, name string, podAnn, ctrAnn map[string]string) (sandboxID, containerID string) {
	t.Helper()
	sbCfg := f.sandboxConfig(name, podAnn)
	sandboxID, err := f.RunPodSandbox(f.ctx, sbCfg, "")
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	ref, err := f.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: "busybox"}, nil, sbCfg)
	if err != nil {
		t.Fatalf("PullImage: %v", err)
	}
	containerID, err = f.CreateContainer(f.ctx, sandboxID, containerConfig("main", ref, ctrAnn), sbCfg)
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if err := f.StartContainer(f.ctx, containerID); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	return sandboxID, containerID
}

func (f *fixture) containerStatus(t testing.TB, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := f.ContainerStatus(f.ctx, id, false)
	if err != nil {
		t.Fatalf("ContainerStatus(%s): %v", id, err)
	}
	return resp.GetStatus()
}

func (f *fixture) sandboxStatus(t testing.TB, id string) *runtimeapi.PodSandboxStatus {
	t.Helper()
	resp, err := f.PodSandboxStatus(f.ctx, id, false)
	if err != nil {
		t.Fatalf("PodSandboxStatus(%s): %v", id, err)
	}
	return resp.GetStatus()
}

func wantCode(t testing.TB, err error, code codes.Code, contains string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %s error containing %q, got nil", code, contains)
	}
	if got := status.Code(err); got != code {
		t.Fatalf("want code %s, got %s: %v", code, got, err)
	}
	if !strings.Contains(status.Convert(err).Message(), contains) {
		t.Fatalf("want error containing %q, got %q", contains, status.Convert(err).Message())
	}
}

func readLog(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading log: %v", err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func renameFile(from, to string) error { return os.Rename(from, to) }

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
