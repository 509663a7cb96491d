package stats

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/gatehouse-dev/gatehouse/kubelet/simulated"
)

// newRuntime is a simulated runtime on a fake clock with one running pod
// "web" of two containers.
func newRuntime(t *testing.T) (*simulated.Runtime, *simulated.FakeClock) {
	t.Helper()
	ctx := context.Background()
	clock := simulated.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	rt := simulated.New(simulated.Options{Clock: clock, Images: []string{"busybox"}})
	t.Cleanup(func() { _ = rt.Close(ctx) })
	sbCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "shop", Uid: "uid-web"},
		LogDirectory: t.TempDir(),
	}
	sb, err := rt.RunPodSandbox(ctx, sbCfg, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"app", "sidecar"} {
		id, err := rt.CreateContainer(ctx, sb, &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: "busybox"}, LogPath: name + ".log",
		}, sbCfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	clock.Step(10 * time.Second)
	return rt, clock
}

func TestSummaryFromCRI(t *testing.T) {
	rt, _ := newRuntime(t)
	p := New(Options{NodeName: "n1", Runtime: rt, Images: rt, FsPath: t.TempDir()})
	s, err := p.Get(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if s.Node.NodeName != "n1" || s.Node.CPU == nil || s.Node.CPU.UsageCoreNanoSeconds == nil || s.Node.Memory == nil || s.Node.Memory.WorkingSetBytes == nil || *s.Node.Memory.WorkingSetBytes == 0 {
		t.Errorf("node stats %+v", s.Node)
	}
	if s.Node.Fs == nil || s.Node.Fs.CapacityBytes == nil || *s.Node.Fs.CapacityBytes == 0 {
		t.Errorf("node fs %+v", s.Node.Fs)
	}
	if s.Node.Runtime == nil || s.Node.Runtime.ImageFs == nil {
		t.Errorf("node runtime fs %+v", s.Node.Runtime)
	}
	if len(s.Pods) != 1 {
		t.Fatalf("pods %+v", s.Pods)
	}
	pod := s.Pods[0]
	if pod.PodRef.Name != "web" || pod.PodRef.Namespace != "shop" || pod.PodRef.UID != "uid-web" || len(pod.Containers) != 2 {
		t.Fatalf("pod %+v", pod)
	}
	for _, c := range pod.Containers {
		// The simulated runtime: 1m of CPU and 2 MiB of working set each.
		if *c.CPU.UsageNanoCores != 1_000_000 || *c.CPU.UsageCoreNanoSeconds != uint64(10*time.Millisecond) || *c.Memory.WorkingSetBytes != 2<<20 || c.Rootfs == nil {
			t.Errorf("container %s: cpu %+v memory %+v rootfs %+v", c.Name, c.CPU, c.Memory, c.Rootfs)
		}
	}
	if *pod.CPU.UsageNanoCores != 2_000_000 || *pod.Memory.WorkingSetBytes != 4<<20 {
		t.Errorf("pod cpu %d memory %d, want 2m and 4 MiB", *pod.CPU.UsageNanoCores, *pod.Memory.WorkingSetBytes)
	}
	if pod.Network == nil || pod.Network.Name != "eth0" {
		t.Errorf("pod network %+v", pod.Network)
	}
}

// noSandboxStats is a runtime that refuses sandbox stats and reports no
// CPU rate, as containerd 1.6 may.
type noSandboxStats struct{ *simulated.Runtime }

func (noSandboxStats) ListPodSandboxStats(context.Context, *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	return nil, status.Error(codes.Unimplemented, "not implemented")
}

func (r noSandboxStats) ListContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	list, err := r.Runtime.ListContainerStats(ctx, f)
	for _, s := range list {
		s.Cpu.UsageNanoCores = nil
	}
	return list, err
}

func TestSummaryWithoutSandboxStats(t *testing.T) {
	rt, clock := newRuntime(t)
	p := New(Options{NodeName: "n1", Runtime: noSandboxStats{rt}})
	s, err := p.GetCPUAndMemoryStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pod := s.Pods[0]
	if pod.CPU.UsageNanoCores != nil || *pod.CPU.UsageCoreNanoSeconds != 2*uint64(10*time.Millisecond) || *pod.Memory.WorkingSetBytes != 4<<20 {
		t.Errorf("first sample: pod cpu %+v memory %+v; want no rate yet, the containers' sums", pod.CPU, pod.Memory)
	}
	if pod.Network != nil || pod.Containers[0].Rootfs != nil {
		t.Errorf("CPU and memory only, but network %+v rootfs %+v", pod.Network, pod.Containers[0].Rootfs)
	}
	clock.Step(5 * time.Second)
	if s, err = p.GetCPUAndMemoryStats(context.Background()); err != nil {
		t.Fatal(err)
	}
	pod = s.Pods[0]
	for _, c := range pod.Containers {
		if c.CPU.UsageNanoCores == nil || *c.CPU.UsageNanoCores != 1_000_000 {
			t.Errorf("container %s: rate from two samples %v, want 1m", c.Name, c.CPU.UsageNanoCores)
		}
	}
	if pod.CPU.UsageNanoCores == nil || *pod.CPU.UsageNanoCores != 2_000_000 {
		t.Errorf("pod rate %v, want the sum 2m", pod.CPU.UsageNanoCores)
	}
}

func TestResourceMetrics(t *testing.T) {
	rt, _ := newRuntime(t)
	p := New(Options{NodeName: "n1", Runtime: rt})
	rec := httptest.NewRecorder()
	p.ResourceMetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics/resource", nil))
	body, _ := io.ReadAll(rec.Body)
	out := string(body)
	for _, want := range []string{
		"# TYPE node_cpu_usage_seconds_total counter",
		"# TYPE node_memory_working_set_bytes gauge",
		`container_cpu_usage_seconds_total{container="app",namespace="shop",pod="web"} 0.01 `,
		`container_memory_working_set_bytes{container="sidecar",namespace="shop",pod="web"} 2.097152e+06 `,
		`container_start_time_seconds{container="app",namespace="shop",pod="web"} 1.7961192e+09`,
		`pod_cpu_usage_seconds_total{namespace="shop",pod="web"} 0.02 `,
		`pod_memory_working_set_bytes{namespace="shop",pod="web"} 4.194304e+06 `,
		"resource_scrape_error 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics/resource lacks %q:\n%s", want, out)
		}
	}
}

func TestSummaryHandler(t *testing.T) {
	rt, _ := newRuntime(t)
	h := New(Options{NodeName: "n1", Runtime: rt, Images: rt, FsPath: t.TempDir()}).SummaryHandler()
	for query, wantFs := range map[string]bool{"": true, "?only_cpu_and_memory=true": false} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/stats/summary"+query, nil))
		var s statsapi.Summary
		if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("summary%s: %v %q", query, err, rec.Body.String())
		}
		if (s.Node.Fs != nil) != wantFs || s.Node.Memory == nil || len(s.Pods) != 1 {
			t.Errorf("summary%s: node fs %v, memory %v, %d pods; want fs %v", query, s.Node.Fs, s.Node.Memory, len(s.Pods), wantFs)
		}
	}
}
