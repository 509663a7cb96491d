package simulated

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	utilexec "k8s.io/utils/exec"
)

type container struct {
	id        string
	name      string // reserved name: <container>_<pod>_<namespace>_<uid>_<attempt>
	seq       uint64
	sandbox   *sandbox
	config    *runtimeapi.ContainerConfig // own copy, never changed
	imageID   string                      // sha256:… (what PullImage returned)
	imageRef  string                      // repo digest, docker.io/library/busybox@sha256:…
	imageName string                      // repo tag, docker.io/library/busybox:latest
	logPath   string                      // LogDirectory/LogPath, empty when either is

	behaviour  behaviour
	stopSignal int

	state                            runtimeapi.ContainerState
	createdAt, startedAt, finishedAt int64
	exitCode                         int32
	reason, message                  string
	resources                        *runtimeapi.ContainerResources
	timer                            Timer // simulated exit, while running
	starting, removed                bool

	// pending holds log lines not yet written (guarded by Runtime.mu);
	// writeMu serialises writing them, so lines reach the file in the
	// order the state changed, while no file I/O happens under Runtime.mu.
	pending []string
	writeMu sync.Mutex
}

func (c *container) order() uint64 { return c.seq }

// makeContainerName is containerd's: the name a container reserves until it
// is removed, so one attempt of a pod's container is created once.
func makeContainerName(c *runtimeapi.ContainerMetadata, s *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{c.Name, s.Name, s.Namespace, s.Uid, strconv.FormatUint(uint64(c.Attempt), 10)}, "_")
}

func (r *Runtime) containerNotFound(id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "container ID must not be empty")
	}
	return status.Errorf(codes.NotFound, "an error occurred when try to find container %q: not found", id)
}

// stateName is how containerd names states in its errors.
func stateName(s runtimeapi.ContainerState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "CONTAINER_"))
}

// CreateContainer creates a container in the sandbox. Its image must be
// present (pulled, or listed in Options.Images), its simulation annotations
// valid; the container name (name, pod, attempt) must not be taken.
func (r *Runtime) CreateContainer(ctx context.Context, podSandboxID string, config *runtimeapi.ContainerConfig, sandboxConfig *runtimeapi.PodSandboxConfig) (string, error) {
	if err := r.enter(ctx); err != nil {
		return "", err
	}
	if podSandboxID == "" {
		return "", r.sandboxNotFound("")
	}
	if config == nil {
		return "", status.Error(codes.InvalidArgument, "container config is required")
	}
	meta := config.GetMetadata()
	if meta == nil {
		return "", status.Error(codes.InvalidArgument, "container config must include metadata")
	}
	if meta.GetName() == "" {
		return "", status.Error(codes.InvalidArgument, "container config metadata must include a name")
	}
	imageName := config.GetImage().GetImage()
	if imageName == "" {
		return "", status.Error(codes.InvalidArgument, "container config must include an image")
	}
	stopSignal, ok := signalNumber(config.GetStopSignal())
	if !ok {
		return "", status.Errorf(codes.InvalidArgument, "unknown stop signal %v", config.GetStopSignal())
	}
	c := &container{
		id:         newID(),
		config:     proto.Clone(config).(*runtimeapi.ContainerConfig),
		stopSignal: stopSignal,
		state:      runtimeapi.ContainerState_CONTAINER_CREATED,
	}
	if res := config.GetLinux().GetResources(); res != nil {
		c.resources = &runtimeapi.ContainerResources{Linux: proto.Clone(res).(*runtimeapi.LinuxContainerResources)}
	} else if res := config.GetWindows().GetResources(); res != nil {
		c.resources = &runtimeapi.ContainerResources{Windows: proto.Clone(res).(*runtimeapi.WindowsContainerResources)}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	sb, ok := r.sandboxes[podSandboxID]
	if !ok {
		return "", status.Errorf(codes.NotFound, "failed to find sandbox id %q: not found", podSandboxID)
	}
	b, err := resolveBehaviour(meta.GetName(), config.GetAnnotations(), sb.config.GetAnnotations())
	if err != nil {
		return "", status.Error(codes.InvalidArgument, err.Error())
	}
	c.behaviour = b
	c.name = makeContainerName(meta, sb.config.GetMetadata())
	if id, ok := r.containerNames[c.name]; ok {
		return "", status.Errorf(codes.AlreadyExists, "failed to reserve container name %q: name %q is reserved for %q", c.name, c.name, id)
	}
	img, normalized, err := r.resolveImageLocked(imageName)
	if err != nil {
		return "", invalidImage(imageName, err)
	}
	if img == nil {
		return "", status.Errorf(codes.NotFound, "failed to resolve image %q: no image %q found: not found", imageName, normalized)
	}
	c.imageID = img.id
	c.imageRef = img.repoDigests[0]
	c.imageName = img.ref.String()
	if dir, p := sb.config.GetLogDirectory(), config.GetLogPath(); dir != "" && p != "" {
		c.logPath = filepath.Join(dir, p)
	}
	c.sandbox = sb
	r.seq++
	c.seq = r.seq
	c.createdAt = r.now()
	r.containers[c.id] = c
	r.containerNames[c.name] = c.id
	sb.containers[c.id] = c
	r.emitLocked(c.id, sb, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	return c.id, nil
}

// StartContainer makes a created container running and writes its first log
// line. A container with simulation annotations then exits by itself. If its
// sandbox is not ready, or its log file cannot be created, the start fails and
// the container is exited with code 128, reason StartError, as in containerd.
func (r *Runtime) StartContainer(ctx context.Context, containerID string) error {
	if err := r.enter(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	c, ok := r.containers[containerID]
	if !ok {
		r.mu.Unlock()
		return r.containerNotFound(containerID)
	}
	if c.state != runtimeapi.ContainerState_CONTAINER_CREATED {
		r.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "failed to start container %q: container is in %s state", containerID, stateName(c.state))
	}
	if c.starting {
		r.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "failed to start container %q: container is already in starting state", containerID)
	}
	if err := r.checkSandboxRunningLocked(c); err != nil {
		r.mu.Unlock()
		return err
	}
	c.starting = true
	path := c.logPath
	r.mu.Unlock()

	// Open the log file outside the runtime's lock, but holding the
	// container's writer lock, so that an exit line (from a timer or a
	// stop) cannot be written before the start line.
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	var logFile logFile
	if path != "" {
		f, err := openLog(path)
		if err != nil {
			msg := fmt.Sprintf("failed to create and open log file %q: %v", path, err)
			r.mu.Lock()
			c.starting = false
			if !c.removed {
				r.startFailedLocked(c, msg)
			}
			r.mu.Unlock()
			return status.Errorf(codes.Internal, "failed to start container %q: %s", containerID, msg)
		}
		logFile = f
		defer f.Close()
	}

	r.mu.Lock()
	c.starting = false
	if c.removed {
		r.mu.Unlock()
		return r.containerNotFound(containerID)
	}
	if err := r.checkSandboxRunningLocked(c); err != nil {
		r.mu.Unlock()
		return err
	}
	now := r.now()
	c.state = runtimeapi.ContainerState_CONTAINER_RUNNING
	c.startedAt = now
	r.logLocked(c, now, c.startLine())
	r.emitLocked(c.id, c.sandbox, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	if b := c.behaviour; b.exits {
		if b.after <= 0 {
			r.simulatedExitLocked(c, now)
		} else {
			c.timer = r.clock.AfterFunc(b.after, func() { r.simulatedExit(c) })
		}
	}
	lines := c.pending
	c.pending = nil
	r.mu.Unlock()
	r.writeLog(logFile, path, lines)
	return nil
}

// checkSandboxRunningLocked fails the start of a container whose sandbox
// is not ready.
func (r *Runtime) checkSandboxRunningLocked(c *container) error {
	if c.sandbox.state == runtimeapi.PodSandboxState_SANDBOX_READY {
		return nil
	}
	msg := fmt.Sprintf("sandbox container %q is not running", c.sandbox.id)
	r.startFailedLocked(c, msg)
	return status.Errorf(codes.FailedPrecondition, "failed to start container %q: %s", c.id, msg)
}

func (r *Runtime) startFailedLocked(c *container, msg string) {
	c.state = runtimeapi.ContainerState_CONTAINER_EXITED
	c.finishedAt = r.now()
	c.exitCode = exitCodeStartError
	c.reason = reasonStartError
	c.message = msg
	r.emitLocked(c.id, c.sandbox, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
}

func (c *container) startLine() string {
	image := c.config.GetImage().GetUserSpecifiedImage()
	if image == "" {
		image = c.imageName
	}
	cmd := append(append([]string(nil), c.config.GetCommand()...), c.config.GetArgs()...)
	return fmt.Sprintf("simulated container %s started (image %s, command %q)", c.config.GetMetadata().GetName(), image, cmd)
}

func (r *Runtime) simulatedExit(c *container) {
	r.mu.Lock()
	if c.removed || c.state != runtimeapi.ContainerState_CONTAINER_RUNNING || r.closed.Load() {
		r.mu.Unlock()
		return
	}
	c.timer = nil
	r.simulatedExitLocked(c, c.startedAt+int64(c.behaviour.after))
	r.mu.Unlock()
	r.flush(c)
}

func (r *Runtime) simulatedExitLocked(c *container, at int64) {
	b := c.behaviour
	var msg string
	if b.after > 0 {
		msg = fmt.Sprintf("simulated exit after %s (%s)", b.after, b.why)
	} else {
		msg = fmt.Sprintf("simulated exit on start (%s)", b.why)
	}
	r.exitLocked(c, at, b.code, reasonFor(b.code), msg,
		fmt.Sprintf("simulated container %s exited with code %d", c.config.GetMetadata().GetName(), b.code))
}

// exitLocked ends a running container.
func (r *Runtime) exitLocked(c *container, at int64, code int32, reason, message, logText string) {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.state = runtimeapi.ContainerState_CONTAINER_EXITED
	c.finishedAt = at
	c.exitCode = code
	c.reason = reason
	c.message = message
	r.logLocked(c, at, logText)
	r.emitLocked(c.id, c.sandbox, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
}

// killLocked stops a running container as StopContainer with this grace
// period would: a simulated process exits at once on its stop signal
// (SIGTERM unless the config names another) and so reports 128+signal, 143
// for SIGTERM; with no grace period, or a stop signal whose default action
// does not end a process, it is SIGKILLed: 137.
func (r *Runtime) killLocked(c *container, timeout int64) {
	sig := c.stopSignal
	how := "stopped with " + signalName(sig)
	switch {
	case timeout <= 0:
		sig, how = signalKill, "killed with SIGKILL"
	case !terminates(sig):
		how = fmt.Sprintf("ignored %s, killed with SIGKILL after the %ds grace period", signalName(sig), timeout)
		sig = signalKill
	}
	code := int32(128 + sig)
	r.exitLocked(c, r.now(), code, reasonFor(code), "",
		fmt.Sprintf("simulated container %s exited with code %d (%s)", c.config.GetMetadata().GetName(), code, how))
}

// StopContainer stops a running container (see killLocked for the exit
// code). Stopping a container that is not running does nothing.
func (r *Runtime) StopContainer(ctx context.Context, containerID string, timeout int64) error {
	if err := r.enter(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	c, ok := r.containers[containerID]
	if !ok {
		r.mu.Unlock()
		return r.containerNotFound(containerID)
	}
	if c.state != runtimeapi.ContainerState_CONTAINER_RUNNING {
		r.mu.Unlock()
		return nil
	}
	r.killLocked(c, timeout)
	r.mu.Unlock()
	r.flush(c)
	return nil
}

// RemoveContainer removes the container, killing it first if it runs.
// Removing an unknown container is not an error.
func (r *Runtime) RemoveContainer(ctx context.Context, containerID string) error {
	if err := r.enter(ctx); err != nil {
		return err
	}
	if containerID == "" {
		return r.containerNotFound("")
	}
	r.mu.Lock()
	c, ok := r.containers[containerID]
	if !ok {
		r.mu.Unlock()
		return nil
	}
	killed := c.state == runtimeapi.ContainerState_CONTAINER_RUNNING
	if killed {
		r.killLocked(c, 0)
	}
	r.removeContainerLocked(c)
	r.mu.Unlock()
	if killed {
		r.flush(c)
	}
	return nil
}

func (r *Runtime) removeContainerLocked(c *container) {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.removed = true
	delete(r.containers, c.id)
	delete(r.containerNames, c.name)
	delete(c.sandbox.containers, c.id)
	r.emitLocked(c.id, c.sandbox, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
}

// ListContainers lists the containers that match every field of the filter
// (ID, state, sandbox, labels), oldest first.
func (r *Runtime) ListContainers(ctx context.Context, filter *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	matched := r.selectContainersLocked(filter.GetId(), filter.GetPodSandboxId(), filter.GetLabelSelector())
	out := make([]*runtimeapi.Container, 0, len(matched))
	for _, c := range matched {
		if st := filter.GetState(); st != nil && st.GetState() != c.state {
			continue
		}
		out = append(out, &runtimeapi.Container{
			Id:           c.id,
			PodSandboxId: c.sandbox.id,
			Metadata:     copyContainerMetadata(c.config.GetMetadata()),
			Image:        c.imageSpec(),
			ImageRef:     c.imageID,
			State:        c.state,
			CreatedAt:    c.createdAt,
			Labels:       copyMap(c.config.GetLabels()),
			Annotations:  copyMap(c.config.GetAnnotations()),
			ImageId:      c.imageID,
		})
	}
	return out, nil
}

// selectContainersLocked returns the containers with this ID, in this
// sandbox and with these labels (each ignored when empty), oldest first.
func (r *Runtime) selectContainersLocked(id, sandboxID string, labels map[string]string) []*container {
	var candidates map[string]*container
	switch {
	case id != "":
		candidates = map[string]*container{}
		if c, ok := r.containers[id]; ok {
			candidates[id] = c
		}
	case sandboxID != "":
		if sb, ok := r.sandboxes[sandboxID]; ok {
			candidates = sb.containers
		}
	default:
		candidates = r.containers
	}
	out := make([]*container, 0, len(candidates))
	for _, c := range candidates {
		if sandboxID != "" && c.sandbox.id != sandboxID {
			continue
		}
		if !matchLabels(labels, c.config.GetLabels()) {
			continue
		}
		out = append(out, c)
	}
	bySeq(out)
	return out
}

func copyContainerMetadata(m *runtimeapi.ContainerMetadata) *runtimeapi.ContainerMetadata {
	return &runtimeapi.ContainerMetadata{Name: m.GetName(), Attempt: m.GetAttempt()}
}

func (c *container) imageSpec() *runtimeapi.ImageSpec {
	spec := c.config.GetImage()
	return &runtimeapi.ImageSpec{
		Image:              c.imageName,
		Annotations:        copyMap(spec.GetAnnotations()),
		UserSpecifiedImage: spec.GetUserSpecifiedImage(),
		RuntimeHandler:     spec.GetRuntimeHandler(),
	}
}

// ContainerStatus returns the container's status.
func (r *Runtime) ContainerStatus(ctx context.Context, containerID string, verbose bool) (*runtimeapi.ContainerStatusResponse, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.containers[containerID]
	if !ok {
		return nil, r.containerNotFound(containerID)
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: c.status()}
	if verbose {
		info := map[string]any{"simulated": true, "sandboxID": c.sandbox.id, "name": c.name, "pid": 0}
		if c.behaviour.exits {
			info["exitAfter"] = c.behaviour.after.String()
			info["exitCode"] = c.behaviour.code
			info["decidedBy"] = c.behaviour.why
		}
		b, _ := json.Marshal(info)
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

func (c *container) status() *runtimeapi.ContainerStatus {
	var mounts []*runtimeapi.Mount
	for _, m := range c.config.GetMounts() {
		mounts = append(mounts, proto.Clone(m).(*runtimeapi.Mount))
	}
	var resources *runtimeapi.ContainerResources
	if c.resources != nil {
		resources = proto.Clone(c.resources).(*runtimeapi.ContainerResources)
	}
	stopSignal := c.config.GetStopSignal()
	if stopSignal == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		stopSignal = runtimeapi.Signal_SIGNAL_SIGTERM
	}
	return &runtimeapi.ContainerStatus{
		Id:          c.id,
		Metadata:    copyContainerMetadata(c.config.GetMetadata()),
		State:       c.state,
		CreatedAt:   c.createdAt,
		StartedAt:   c.startedAt,
		FinishedAt:  c.finishedAt,
		ExitCode:    c.exitCode,
		Image:       c.imageSpec(),
		ImageRef:    c.imageRef,
		ImageId:     c.imageID,
		Reason:      c.reason,
		Message:     c.message,
		Labels:      copyMap(c.config.GetLabels()),
		Annotations: copyMap(c.config.GetAnnotations()),
		Mounts:      mounts,
		LogPath:     c.logPath,
		Resources:   resources,
		User:        c.user(),
		StopSignal:  stopSignal,
	}
}

// user is the identity the container's process would have: the configured
// user and group (root when unset, as in an image without USER), its group
// and the supplemental groups.
func (c *container) user() *runtimeapi.ContainerUser {
	sc := c.config.GetLinux().GetSecurityContext()
	uid := sc.GetRunAsUser().GetValue()
	gid := sc.GetRunAsGroup().GetValue()
	groups := []int64{gid}
	for _, g := range sc.GetSupplementalGroups() {
		if g != gid && !containsInt64(groups, g) {
			groups = append(groups, g)
		}
	}
	return &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{Uid: uid, Gid: gid, SupplementalGroups: groups}}
}

func containsInt64(s []int64, v int64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// UpdateContainerResources replaces the Linux and/or Windows resources of a
// created or running container; nothing enforces them, ContainerStatus
// reports them.
func (r *Runtime) UpdateContainerResources(ctx context.Context, containerID string, resources *runtimeapi.ContainerResources) error {
	if err := r.enter(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[containerID]
	if !ok {
		return r.containerNotFound(containerID)
	}
	if c.state != runtimeapi.ContainerState_CONTAINER_CREATED && c.state != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return status.Errorf(codes.FailedPrecondition, "failed to update resources of container %q: container is in %s state", containerID, stateName(c.state))
	}
	if resources.GetLinux() == nil && resources.GetWindows() == nil {
		return nil
	}
	updated := &runtimeapi.ContainerResources{}
	if c.resources != nil {
		updated = proto.Clone(c.resources).(*runtimeapi.ContainerResources)
	}
	if l := resources.GetLinux(); l != nil {
		updated.Linux = proto.Clone(l).(*runtimeapi.LinuxContainerResources)
	}
	if w := resources.GetWindows(); w != nil {
		updated.Windows = proto.Clone(w).(*runtimeapi.WindowsContainerResources)
	}
	c.resources = updated
	return nil
}

// ReopenContainerLog succeeds for a running container. The runtime opens
// the log file for each line it writes, so after the node agent rotates
// the file the next line goes to a new one anyway.
func (r *Runtime) ReopenContainerLog(ctx context.Context, containerID string) error {
	if err := r.enter(ctx); err != nil {
		return err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.containers[containerID]
	if !ok {
		return r.containerNotFound(containerID)
	}
	if c.state != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return status.Errorf(codes.FailedPrecondition, "failed to reopen log of container %q: container is not running", containerID)
	}
	return nil
}

// ExecSync runs no command, there being no process: it answers as a
// command that exits with code 0, or with the code of the
// AnnotationExecExitCode annotation, so exec probes and hooks pass or fail
// as the pod says. A non-zero code is a utilexec.CodeExitError, as the CRI
// client returns it. The container must be running, as in containerd.
func (r *Runtime) ExecSync(ctx context.Context, containerID string, cmd []string, timeout time.Duration) ([]byte, []byte, error) {
	if err := r.enter(ctx); err != nil {
		return nil, nil, err
	}
	if len(cmd) == 0 {
		return nil, nil, status.Error(codes.InvalidArgument, "exec command must not be empty")
	}
	r.mu.Lock()
	c, ok := r.containers[containerID]
	if !ok {
		r.mu.Unlock()
		return nil, nil, r.containerNotFound(containerID)
	}
	state, b := c.state, c.behaviour
	r.mu.Unlock()
	if state != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "failed to exec in container: container is in %s state", state)
	}
	if b.execCode == 0 {
		return nil, nil, nil
	}
	stderr := []byte(fmt.Sprintf("simulated exec exit code %d (%s)\n", b.execCode, b.execWhy))
	return nil, stderr, utilexec.CodeExitError{
		Err:  fmt.Errorf("command '%s' exited with %d: %s", strings.Join(cmd, " "), b.execCode, stderr),
		Code: int(b.execCode),
	}
}

// Exec is not supported.
func (r *Runtime) Exec(ctx context.Context, request *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	return nil, unimplemented("Exec")
}

// Attach is not supported.
func (r *Runtime) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	return nil, unimplemented("Attach")
}

// CheckpointContainer is not supported.
func (r *Runtime) CheckpointContainer(ctx context.Context, options *runtimeapi.CheckpointContainerRequest) error {
	return unimplemented("CheckpointContainer")
}
