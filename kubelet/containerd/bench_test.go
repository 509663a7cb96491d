package containerd_test

import (
	"context"
	"slices"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/gatehouse-dev/gatehouse/kubelet/containerd"
	"github.com/gatehouse-dev/gatehouse/kubelet/containerd/containerdtest"
	"github.com/gatehouse-dev/gatehouse/kubelet/images"
)

// The node's start-up figures, each reported as its median over the
// iterations (run with -benchtime=Nx, e.g. 7x):
//
//	go test ./kubelet/containerd -run '^$' -bench . -benchtime 7x

func reportMedian(b *testing.B, samples []time.Duration) { reportMedianAs(b, samples, "median-ms") }

func reportMedianAs(b *testing.B, samples []time.Duration, unit string) {
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, unit)
}

// BenchmarkStart: containerd from exec to CRI answering Version, on a data
// dir it has used before (a Gatehouse restart).
func BenchmarkStart(b *testing.B) {
	node := containerdtest.Start(b)
	var samples []time.Duration
	for b.Loop() {
		if err := node.Process.Stop(); err != nil {
			b.Fatal(err)
		}
		p, err := containerd.Start(context.Background(), node.Config)
		if err != nil {
			b.Fatal(err)
		}
		node.Process = p
		samples = append(samples, p.StartupTime)
	}
	reportMedian(b, samples)
}

// BenchmarkEnsurePause: importing and unpacking the pause image into a
// containerd that lacks it.
func BenchmarkEnsurePause(b *testing.B) {
	node := containerdtest.Start(b)
	is := node.Images(b)
	ctx := context.Background()
	var samples []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, imported, err := images.EnsurePause(ctx, node.Endpoint()); err != nil || !imported {
			b.Fatalf("EnsurePause: imported %v, %v", imported, err)
		}
		samples = append(samples, time.Since(start))
		if err := is.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: images.PauseImage}); err != nil {
			b.Fatal(err)
		}
	}
	reportMedian(b, samples)
}

// BenchmarkPodStart: RunPodSandbox, then CreateContainer and StartContainer
// of one busybox container with limits.
func BenchmarkPodStart(b *testing.B) {
	node := containerdtest.Start(b)
	prepareImages(b, node)
	rt := node.Runtime(b)
	var samples, sandbox []time.Duration
	for b.Loop() {
		start := time.Now()
		p := runPod(b, node, rt, "bench")
		sandbox = append(sandbox, time.Since(start))
		p.start(b, "sleep", &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuPeriod: 100000, CpuQuota: 50000}, "sleep", "3600")
		samples = append(samples, time.Since(start))
		b.StopTimer()
		p.remove(b)
		b.StartTimer()
	}
	reportMedian(b, samples)
	reportMedianAs(b, sandbox, "sandbox-median-ms")
}
