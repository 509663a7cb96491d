package simulated

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestContainerEvents(t *testing.T) {
	f := newFixture(t, Options{})
	if err := f.GetContainerEvents(f.ctx, nil, nil); status.Code(err) != codes.InvalidArgument {
		t.Errorf("GetContainerEvents without a channel: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan *runtimeapi.ContainerEventResponse, 100)
	connected := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- f.GetContainerEvents(ctx, events, func(s runtimeapi.RuntimeService_GetContainerEventsClient) {
			if s.Context() != ctx {
				t.Error("stream context is not the call's")
			}
			close(connected)
		})
	}()
	select {
	case <-connected:
	case <-time.After(5 * time.Second):
		t.Fatal("not connected")
	}

	sandboxID, containerID := f.runPod(t, "p", map[string]string{AnnotationExitAfter: "1s"}, nil)
	f.clock.Step(time.Second)
	if err := f.RemovePodSandbox(f.ctx, sandboxID); err != nil {
		t.Fatal(err)
	}

	type ev struct {
		id string
		t  runtimeapi.ContainerEventType
	}
	want := []ev{
		{sandboxID, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT},
		{containerID, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT},
		{containerID, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT},
		{containerID, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT},
		{sandboxID, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT},
		{containerID, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT},
		{sandboxID, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT},
	}
	for i, w := range want {
		select {
		case got := <-events:
			if got.ContainerId != w.id || got.ContainerEventType != w.t {
				t.Errorf("event %d: %s %s, want %s %s", i, got.ContainerId, got.ContainerEventType, w.id, w.t)
			}
			if got.PodSandboxStatus.GetId() != sandboxID || got.CreatedAt == 0 {
				t.Errorf("event %d: sandbox %q created %d", i, got.PodSandboxStatus.GetId(), got.CreatedAt)
			}
			if i == 3 && (len(got.ContainersStatuses) != 1 || got.ContainersStatuses[0].State != runtimeapi.ContainerState_CONTAINER_EXITED) {
				t.Errorf("stopped event: container statuses %v", got.ContainersStatuses)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d (%v) not received", i, w)
		}
	}

	cancel()
	select {
	case err := <-done:
		if status.Code(err) != codes.Canceled {
			t.Errorf("GetContainerEvents returned %v, want Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GetContainerEvents did not return on cancel")
	}
	f.mu.RLock()
	n := len(f.subscribers)
	f.mu.RUnlock()
	if n != 0 {
		t.Errorf("%d subscribers left", n)
	}
}

func TestContainerEventsEndOnClose(t *testing.T) {
	f := newFixture(t, Options{})
	done := make(chan error, 1)
	connected := make(chan struct{})
	go func() {
		done <- f.GetContainerEvents(context.Background(), make(chan *runtimeapi.ContainerEventResponse), func(runtimeapi.RuntimeService_GetContainerEventsClient) { close(connected) })
	}()
	<-connected
	// A subscriber that does not read must not block the runtime.
	f.runPod(t, "p", nil, nil)
	if err := f.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("GetContainerEvents returned %v, want Unavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GetContainerEvents did not return on Close")
	}
	err := f.GetContainerEvents(context.Background(), make(chan *runtimeapi.ContainerEventResponse), nil)
	if status.Code(err) != codes.Unavailable {
		t.Errorf("GetContainerEvents after Close: %v", err)
	}
}
