package simulated

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestThousandPods runs 1,000 pods to RUNNING from 8 goroutines, the way the
// node agent's pod workers would, then tears them down. Not a timed
// assertion (see BenchmarkPodLifecycle); the time is logged.
func TestThousandPods(t *testing.T) {
	const pods, workers = 1000, 8
	f := newFixture(t, Options{PodCIDR: "10.244.0.0/16", Clock: realClock{}})
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, pods)
	sandboxes := make([]string, pods)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < pods; i += workers {
				id, err := startPod(f.ctx, f.Runtime, f.sandboxConfig(fmt.Sprintf("pod-%04d", i), nil))
				if err != nil {
					errs <- err
					return
				}
				sandboxes[i] = id
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	elapsed := time.Since(start)

	running, err := f.ListContainers(f.ctx, &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
	if err != nil {
		t.Fatal(err)
	}
	ready, err := f.ListPodSandbox(f.ctx, &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}})
	if err != nil {
		t.Fatal(err)
	}
	if len(running) != pods || len(ready) != pods {
		t.Fatalf("%d running containers and %d ready sandboxes, want %d", len(running), len(ready), pods)
	}
	ips := map[string]bool{}
	for _, id := range sandboxes {
		ip := f.ip(t, id)
		if ips[ip] {
			t.Fatalf("IP %s given twice", ip)
		}
		ips[ip] = true
	}
	t.Logf("%d pods to RUNNING in %s (%s per pod, %d workers)", pods, elapsed, elapsed/pods, workers)

	for _, id := range sandboxes {
		if err := f.StopPodSandbox(f.ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := f.RemovePodSandbox(f.ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if cs, _ := f.ListContainers(f.ctx, nil); len(cs) != 0 {
		t.Errorf("%d containers left", len(cs))
	}
	f.mu.RLock()
	left := len(f.net.owners)
	f.mu.RUnlock()
	if left != 0 {
		t.Errorf("%d IPs still allocated", left)
	}
}

// startPod is what the kubelet does for a one-container pod: sandbox, image,
// container, start.
func startPod(ctx context.Context, rt *Runtime, cfg *runtimeapi.PodSandboxConfig) (string, error) {
	sandboxID, err := rt.RunPodSandbox(ctx, cfg, "")
	if err != nil {
		return "", err
	}
	ref, err := rt.PullImage(ctx, &runtimeapi.ImageSpec{Image: "registry.k8s.io/pause:3.10"}, nil, cfg)
	if err != nil {
		return "", err
	}
	containerID, err := rt.CreateContainer(ctx, sandboxID, containerConfig("main", ref, nil), cfg)
	if err != nil {
		return "", err
	}
	if err := rt.StartContainer(ctx, containerID); err != nil {
		return "", err
	}
	if _, err := rt.ContainerStatus(ctx, containerID, false); err != nil {
		return "", err
	}
	return sandboxID, nil
}

// TestConcurrentLifecycles runs whole lifecycles, relists and simulated
// exits concurrently (run with -race).
func TestConcurrentLifecycles(t *testing.T) {
	f := newFixture(t, Options{Clock: realClock{}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // a relisting PLEG and an event consumer
		events := make(chan *runtimeapi.ContainerEventResponse, 16)
		go func() { _ = f.GetContainerEvents(ctx, events, nil) }()
		for ctx.Err() == nil {
			_, _ = f.ListPodSandbox(ctx, nil)
			_, _ = f.ListContainers(ctx, nil)
			_, _ = f.ListContainerStats(ctx, nil)
			select {
			case <-events:
			default:
			}
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				ann := map[string]string{}
				if i%2 == 0 {
					ann[AnnotationExitAfter] = "1ms"
				}
				cfg := f.sandboxConfig(fmt.Sprintf("w%d-%d", w, i), ann)
				id, err := startPod(f.ctx, f.Runtime, cfg)
				if err != nil {
					t.Error(err)
					return
				}
				cs, err := f.ListContainers(f.ctx, &runtimeapi.ContainerFilter{PodSandboxId: id})
				if err != nil || len(cs) != 1 {
					t.Errorf("containers of %s: %v %v", id, cs, err)
					return
				}
				_ = f.StopContainer(f.ctx, cs[0].Id, 1)
				_ = f.RemoveContainer(f.ctx, cs[0].Id)
				_ = f.StopPodSandbox(f.ctx, id)
				_ = f.RemovePodSandbox(f.ctx, id)
			}
		}(w)
	}
	wg.Wait()
}
