package simulated

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type sandbox struct {
	id             string
	name           string // reserved name: <name>_<namespace>_<uid>_<attempt>
	seq            uint64
	config         *runtimeapi.PodSandboxConfig // own copy, never changed
	runtimeHandler string
	state          runtimeapi.PodSandboxState
	createdAt      int64
	hostNetwork    bool
	ips            []netip.Addr // released when the sandbox stops
	containers     map[string]*container
	// from UpdatePodSandboxResources; kept, not reported (CRI has no field)
	overhead, resources *runtimeapi.LinuxContainerResources
}

func (s *sandbox) order() uint64 { return s.seq }

// makeSandboxName is containerd's: the name a sandbox reserves until it is
// removed, so a second RunPodSandbox for the same pod attempt fails.
func makeSandboxName(m *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{m.Name, m.Namespace, m.Uid, strconv.FormatUint(uint64(m.Attempt), 10)}, "_")
}

func (r *Runtime) sandboxNotFound(id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "pod sandbox ID must not be empty")
	}
	return status.Errorf(codes.NotFound, "an error occurred when try to find sandbox %q: not found", id)
}

// RunPodSandbox creates a READY sandbox with an IP from the pod CIDR (none
// for host-network sandboxes). The sandbox name (pod name, namespace, UID
// and attempt) stays reserved until RemovePodSandbox, as in containerd.
func (r *Runtime) RunPodSandbox(ctx context.Context, config *runtimeapi.PodSandboxConfig, runtimeHandler string) (string, error) {
	if err := r.enter(ctx); err != nil {
		return "", err
	}
	if config == nil {
		return "", status.Error(codes.InvalidArgument, "pod sandbox config is required")
	}
	meta := config.GetMetadata()
	if meta == nil {
		return "", status.Error(codes.InvalidArgument, "sandbox config must include metadata")
	}
	if meta.GetName() == "" {
		return "", status.Error(codes.InvalidArgument, "sandbox config metadata must include a name")
	}
	if runtimeHandler != "" && !slices.Contains(r.opts.RuntimeHandlers, runtimeHandler) {
		return "", status.Errorf(codes.InvalidArgument, "no runtime for %q is configured", runtimeHandler)
	}
	if err := validateSandboxAnnotations(config.GetAnnotations()); err != nil {
		return "", status.Error(codes.InvalidArgument, err.Error())
	}
	sb := &sandbox{
		id:             newID(),
		name:           makeSandboxName(meta),
		config:         proto.Clone(config).(*runtimeapi.PodSandboxConfig),
		runtimeHandler: runtimeHandler,
		state:          runtimeapi.PodSandboxState_SANDBOX_READY,
		hostNetwork:    config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE,
		containers:     map[string]*container{},
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if id, ok := r.sandboxNames[sb.name]; ok {
		return "", status.Errorf(codes.AlreadyExists, "failed to reserve sandbox name %q: name %q is reserved for %q", sb.name, sb.name, id)
	}
	if !sb.hostNetwork {
		ips, err := r.net.allocate(sb.id)
		if err != nil {
			return "", status.Errorf(codes.ResourceExhausted, "failed to setup network for sandbox %q: %v", sb.name, err)
		}
		sb.ips = ips
	}
	r.seq++
	sb.seq = r.seq
	sb.createdAt = r.now()
	r.sandboxes[sb.id] = sb
	r.sandboxNames[sb.name] = sb.id
	r.emitLocked(sb.id, sb, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	return sb.id, nil
}

// StopPodSandbox kills the sandbox's running containers (exit code 137, as
// for a StopContainer without grace period), releases its IPs and makes it
// NOTREADY. Stopping a stopped sandbox does nothing.
func (r *Runtime) StopPodSandbox(ctx context.Context, podSandboxID string) error {
	if err := r.enter(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	sb, ok := r.sandboxes[podSandboxID]
	if !ok {
		r.mu.Unlock()
		return r.sandboxNotFound(podSandboxID)
	}
	killed := r.stopSandboxLocked(sb)
	r.mu.Unlock()
	r.flushLogs(killed)
	return nil
}

func (r *Runtime) stopSandboxLocked(sb *sandbox) []*container {
	var killed []*container
	for _, c := range sb.containers {
		if c.state == runtimeapi.ContainerState_CONTAINER_RUNNING {
			r.killLocked(c, 0)
			killed = append(killed, c)
		}
	}
	if sb.state == runtimeapi.PodSandboxState_SANDBOX_READY {
		sb.state = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
		r.net.release(sb.ips)
		sb.ips = nil
		r.emitLocked(sb.id, sb, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
	}
	return killed
}

// RemovePodSandbox stops the sandbox if needed, removes its containers and
// releases its name. Removing an unknown sandbox is not an error.
func (r *Runtime) RemovePodSandbox(ctx context.Context, podSandboxID string) error {
	if err := r.enter(ctx); err != nil {
		return err
	}
	if podSandboxID == "" {
		return r.sandboxNotFound("")
	}
	r.mu.Lock()
	sb, ok := r.sandboxes[podSandboxID]
	if !ok {
		r.mu.Unlock()
		return nil
	}
	killed := r.stopSandboxLocked(sb)
	for _, c := range sb.containers {
		r.removeContainerLocked(c)
	}
	delete(r.sandboxes, sb.id)
	delete(r.sandboxNames, sb.name)
	r.emitLocked(sb.id, sb, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	r.mu.Unlock()
	r.flushLogs(killed)
	return nil
}

// PodSandboxStatus returns the sandbox's status with the statuses of its
// containers.
func (r *Runtime) PodSandboxStatus(ctx context.Context, podSandboxID string, verbose bool) (*runtimeapi.PodSandboxStatusResponse, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	sb, ok := r.sandboxes[podSandboxID]
	if !ok {
		return nil, r.sandboxNotFound(podSandboxID)
	}
	resp := &runtimeapi.PodSandboxStatusResponse{
		Status:             r.sandboxStatusLocked(sb),
		ContainersStatuses: r.containerStatusesLocked(sb),
		Timestamp:          r.now(),
	}
	if verbose {
		resp.Info = map[string]string{"info": sandboxInfo(sb)}
	}
	return resp, nil
}

func sandboxInfo(sb *sandbox) string {
	ips := make([]string, len(sb.ips))
	for i, ip := range sb.ips {
		ips[i] = ip.String()
	}
	b, _ := json.Marshal(map[string]any{
		"simulated":      true,
		"name":           sb.name,
		"runtimeHandler": sb.runtimeHandler,
		"hostNetwork":    sb.hostNetwork,
		"ips":            ips,
		"hostname":       sb.config.GetHostname(),
		"logDirectory":   sb.config.GetLogDirectory(),
	})
	return string(b)
}

func (r *Runtime) sandboxStatusLocked(sb *sandbox) *runtimeapi.PodSandboxStatus {
	network := &runtimeapi.PodSandboxNetworkStatus{}
	if len(sb.ips) > 0 {
		network.Ip = sb.ips[0].String()
		for _, ip := range sb.ips[1:] {
			network.AdditionalIps = append(network.AdditionalIps, &runtimeapi.PodIP{Ip: ip.String()})
		}
	}
	ns := &runtimeapi.NamespaceOption{}
	if opts := sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions(); opts != nil {
		ns = proto.Clone(opts).(*runtimeapi.NamespaceOption)
	}
	return &runtimeapi.PodSandboxStatus{
		Id:             sb.id,
		Metadata:       copySandboxMetadata(sb.config.GetMetadata()),
		State:          sb.state,
		CreatedAt:      sb.createdAt,
		Network:        network,
		Linux:          &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: ns}},
		Labels:         copyMap(sb.config.GetLabels()),
		Annotations:    copyMap(sb.config.GetAnnotations()),
		RuntimeHandler: sb.runtimeHandler,
	}
}

func copySandboxMetadata(m *runtimeapi.PodSandboxMetadata) *runtimeapi.PodSandboxMetadata {
	return &runtimeapi.PodSandboxMetadata{Name: m.GetName(), Uid: m.GetUid(), Namespace: m.GetNamespace(), Attempt: m.GetAttempt()}
}

// ListPodSandbox lists the sandboxes that match every field of the filter
// (ID, state, labels), oldest first.
func (r *Runtime) ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	var matched []*sandbox
	if id := filter.GetId(); id != "" {
		if sb, ok := r.sandboxes[id]; ok {
			matched = append(matched, sb)
		}
	} else {
		matched = make([]*sandbox, 0, len(r.sandboxes))
		for _, sb := range r.sandboxes {
			matched = append(matched, sb)
		}
	}
	bySeq(matched)
	out := make([]*runtimeapi.PodSandbox, 0, len(matched))
	for _, sb := range matched {
		if st := filter.GetState(); st != nil && st.GetState() != sb.state {
			continue
		}
		if !matchLabels(filter.GetLabelSelector(), sb.config.GetLabels()) {
			continue
		}
		out = append(out, &runtimeapi.PodSandbox{
			Id:             sb.id,
			Metadata:       copySandboxMetadata(sb.config.GetMetadata()),
			State:          sb.state,
			CreatedAt:      sb.createdAt,
			Labels:         copyMap(sb.config.GetLabels()),
			Annotations:    copyMap(sb.config.GetAnnotations()),
			RuntimeHandler: sb.runtimeHandler,
		})
	}
	return out, nil
}

// UpdatePodSandboxResources records the pod-level resources; nothing
// enforces them.
func (r *Runtime) UpdatePodSandboxResources(ctx context.Context, request *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	if request == nil {
		return nil, status.Error(codes.InvalidArgument, "update pod sandbox resources request is required")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, ok := r.sandboxes[request.GetPodSandboxId()]
	if !ok {
		return nil, r.sandboxNotFound(request.GetPodSandboxId())
	}
	if o := request.GetOverhead(); o != nil {
		sb.overhead = proto.Clone(o).(*runtimeapi.LinuxContainerResources)
	}
	if res := request.GetResources(); res != nil {
		sb.resources = proto.Clone(res).(*runtimeapi.LinuxContainerResources)
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}

// PortForward is not supported: there is no network namespace to forward
// into.
func (r *Runtime) PortForward(ctx context.Context, request *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return nil, unimplemented("PortForward")
}

// CheckpointPod is not supported.
func (r *Runtime) CheckpointPod(ctx context.Context, options *runtimeapi.CheckpointPodRequest) error {
	return unimplemented("CheckpointPod")
}

// RestorePod is not supported.
func (r *Runtime) RestorePod(ctx context.Context, options *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	return nil, unimplemented("RestorePod")
}
