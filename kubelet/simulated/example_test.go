package simulated_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/gatehouse-dev/gatehouse/kubelet/simulated"
)

// A Job-like pod whose container completes 10 seconds after it starts, on a
// fake clock.
func Example() {
	ctx := context.Background()
	logs, _ := os.MkdirTemp("", "simulated-example")
	defer os.RemoveAll(logs)

	clock := simulated.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rt := simulated.New(simulated.Options{PodCIDR: "10.244.0.0/24", Clock: clock})
	defer rt.Close(ctx)

	sandboxConfig := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "job", Namespace: "default", Uid: "1"},
		LogDirectory: filepath.Join(logs, "default_job_1"),
		Annotations:  map[string]string{simulated.AnnotationExitAfter: "10s"},
	}
	sandboxID, err := rt.RunPodSandbox(ctx, sandboxConfig, "")
	if err != nil {
		panic(err)
	}
	sandbox, _ := rt.PodSandboxStatus(ctx, sandboxID, false)
	fmt.Println("sandbox", sandbox.Status.State, sandbox.Status.Network.Ip)

	imageRef, err := rt.PullImage(ctx, &runtimeapi.ImageSpec{Image: "busybox"}, nil, sandboxConfig)
	if err != nil {
		panic(err)
	}
	containerID, err := rt.CreateContainer(ctx, sandboxID, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "work"},
		Image:    &runtimeapi.ImageSpec{Image: imageRef},
		Command:  []string{"sh", "-c", "do-work"},
		LogPath:  "work/0.log",
	}, sandboxConfig)
	if err != nil {
		panic(err)
	}
	if err := rt.StartContainer(ctx, containerID); err != nil {
		panic(err)
	}
	st, _ := rt.ContainerStatus(ctx, containerID, false)
	fmt.Println("container", st.Status.State, st.Status.Image.Image)

	clock.Step(10 * time.Second)
	st, _ = rt.ContainerStatus(ctx, containerID, false)
	fmt.Println("container", st.Status.State, st.Status.ExitCode, st.Status.Reason)

	log, _ := os.ReadFile(st.Status.LogPath)
	fmt.Print(string(log))
	// Output:
	// sandbox SANDBOX_READY 10.244.0.2
	// container CONTAINER_RUNNING docker.io/library/busybox:latest
	// container CONTAINER_EXITED 0 Completed
	// 2026-01-01T00:00:00Z stdout F simulated container work started (image docker.io/library/busybox:latest, command ["sh" "-c" "do-work"])
	// 2026-01-01T00:00:10Z stdout F simulated container work exited with code 0
}
