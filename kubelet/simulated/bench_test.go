package simulated

import (
	"context"
	"fmt"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// BenchmarkPodLifecycle is one pod's life as the kubelet drives it: run the
// sandbox, pull, create and start a container, read its status, stop and
// remove it, stop and remove the sandbox. With logs, each container writes
// its two log lines to disk.
func BenchmarkPodLifecycle(b *testing.B) {
	for _, withLogs := range []bool{true, false} {
		b.Run(fmt.Sprintf("logs=%t", withLogs), func(b *testing.B) {
			f := newFixture(b, Options{PodCIDR: "10.0.0.0/8", Clock: realClock{}})
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cfg := f.sandboxConfig(fmt.Sprintf("pod-%d", i), nil)
				if !withLogs {
					cfg.LogDirectory = ""
				}
				sandboxID, err := startPod(ctx, f.Runtime, cfg)
				if err != nil {
					b.Fatal(err)
				}
				cs, err := f.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: sandboxID})
				if err != nil || len(cs) != 1 {
					b.Fatal(cs, err)
				}
				if err := f.StopContainer(ctx, cs[0].Id, 30); err != nil {
					b.Fatal(err)
				}
				if err := f.RemoveContainer(ctx, cs[0].Id); err != nil {
					b.Fatal(err)
				}
				if err := f.StopPodSandbox(ctx, sandboxID); err != nil {
					b.Fatal(err)
				}
				if err := f.RemovePodSandbox(ctx, sandboxID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStart1000Pods starts 1,000 one-container pods (with logs) per
// iteration: the scale test's target is 1,000 pods to RUNNING in 30 s.
func BenchmarkStart1000Pods(b *testing.B) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f := newFixture(b, Options{PodCIDR: "10.244.0.0/16", Clock: realClock{}})
		b.StartTimer()
		for p := 0; p < 1000; p++ {
			if _, err := startPod(ctx, f.Runtime, f.sandboxConfig(fmt.Sprintf("pod-%d", p), nil)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkRelist1000 is what a PLEG relist costs with 1,000 running pods:
// list all sandboxes and all containers.
func BenchmarkRelist1000(b *testing.B) {
	f := newFixture(b, Options{PodCIDR: "10.244.0.0/16", Clock: realClock{}})
	ctx := context.Background()
	for p := 0; p < 1000; p++ {
		cfg := f.sandboxConfig(fmt.Sprintf("pod-%d", p), nil)
		cfg.LogDirectory = ""
		if _, err := startPod(ctx, f.Runtime, cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if sbs, err := f.ListPodSandbox(ctx, nil); err != nil || len(sbs) != 1000 {
			b.Fatal(len(sbs), err)
		}
		if cs, err := f.ListContainers(ctx, nil); err != nil || len(cs) != 1000 {
			b.Fatal(len(cs), err)
		}
	}
}
