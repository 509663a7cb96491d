package simulated

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxQueuedEvents bounds the events kept for one GetContainerEvents caller
// that does not keep up; older ones are dropped first (the kubelet's evented
// PLEG relists periodically, which repairs a gap).
const maxQueuedEvents = 10000

type subscriber struct {
	mu      sync.Mutex
	queue   []*runtimeapi.ContainerEventResponse
	dropped int
	wake    chan struct{} // capacity 1
	done    chan struct{} // closed by Runtime.Close
	once    sync.Once
}

func (s *subscriber) push(ev *runtimeapi.ContainerEventResponse) {
	s.mu.Lock()
	if len(s.queue) >= maxQueuedEvents {
		s.queue = s.queue[1:]
		s.dropped++
	}
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) take() []*runtimeapi.ContainerEventResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}

func (s *subscriber) close() { s.once.Do(func() { close(s.done) }) }

// emitLocked sends an event to GetContainerEvents callers, with the
// sandbox's status and its containers' statuses as containerd does. The
// events of a sandbox carry the sandbox ID as container ID. Nothing is built
// when no one listens.
func (r *Runtime) emitLocked(containerID string, sb *sandbox, t runtimeapi.ContainerEventType) {
	if len(r.subscribers) == 0 {
		return
	}
	ev := &runtimeapi.ContainerEventResponse{
		ContainerId:        containerID,
		ContainerEventType: t,
		CreatedAt:          r.now(),
		PodSandboxStatus:   r.sandboxStatusLocked(sb),
		ContainersStatuses: r.containerStatusesLocked(sb),
	}
	for s := range r.subscribers {
		s.push(ev)
	}
}

func (r *Runtime) containerStatusesLocked(sb *sandbox) []*runtimeapi.ContainerStatus {
	cs := make([]*container, 0, len(sb.containers))
	for _, c := range sb.containers {
		cs = append(cs, c)
	}
	bySeq(cs)
	out := make([]*runtimeapi.ContainerStatus, len(cs))
	for i, c := range cs {
		out[i] = c.status()
	}
	return out
}

// GetContainerEvents sends container (and sandbox) lifecycle events to
// containerEventsCh until ctx ends or the runtime is closed, and returns
// why. Several callers may listen at once; each gets every event (the same
// message, which callers must not modify). connectionEstablishedCallback,
// if not nil, is called once listening has begun, with a stream that only
// has a Context: events come on the channel.
func (r *Runtime) GetContainerEvents(ctx context.Context, containerEventsCh chan *runtimeapi.ContainerEventResponse, connectionEstablishedCallback func(runtimeapi.RuntimeService_GetContainerEventsClient)) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := r.enter(ctx); err != nil {
		return err
	}
	if containerEventsCh == nil {
		return status.Error(codes.InvalidArgument, "a channel for the events is required")
	}
	s := &subscriber{wake: make(chan struct{}, 1), done: make(chan struct{})}
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		return status.Error(codes.Unavailable, "the simulated runtime is closed")
	}
	r.subscribers[s] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.subscribers, s)
		r.mu.Unlock()
	}()
	if connectionEstablishedCallback != nil {
		connectionEstablishedCallback(eventStream{ctx: ctx})
	}
	closed := status.Error(codes.Unavailable, "the simulated runtime is closed")
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.done:
			return closed
		case <-s.wake:
		}
		for _, ev := range s.take() {
			select {
			case containerEventsCh <- ev:
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			case <-s.done:
				return closed
			}
		}
	}
}

// eventStream is what the connection callback of GetContainerEvents gets in
// place of a gRPC stream: there is no connection, events come on the
// channel.
type eventStream struct{ ctx context.Context }

var _ runtimeapi.RuntimeService_GetContainerEventsClient = eventStream{}

func (eventStream) Recv() (*runtimeapi.ContainerEventResponse, error) {
	return nil, status.Error(codes.Unimplemented, "the simulated runtime sends container events on the channel given to GetContainerEvents")
}
func (eventStream) Header() (metadata.MD, error) { return metadata.MD{}, nil }
func (eventStream) Trailer() metadata.MD         { return metadata.MD{} }
func (eventStream) CloseSend() error             { return nil }
func (s eventStream) Context() context.Context   { return s.ctx }
func (eventStream) SendMsg(any) error {
	return status.Error(codes.Unimplemented, "the simulated runtime has no event stream to send on")
}
func (eventStream) RecvMsg(any) error {
	return status.Error(codes.Unimplemented, "the simulated runtime sends container events on the channel given to GetContainerEvents")
}
