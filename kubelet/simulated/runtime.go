package simulated

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// DefaultRuntimeName is what Version reports as the runtime name.
	DefaultRuntimeName = "gatehouse-simulated"
	// DefaultRuntimeVersion is what Version reports as the runtime version
	// when Options.RuntimeVersion is empty.
	DefaultRuntimeVersion = "0.1.0"
	// criAPIVersion is the CRI API version this runtime implements.
	criAPIVersion = "v1"
	// kubeAPIVersion is the legacy "version of the kubelet runtime API"
	// every CRI runtime reports in VersionResponse.version.
	kubeAPIVersion = "0.1.0"
)

var (
	_ internalapi.RuntimeService      = (*Runtime)(nil)
	_ internalapi.ImageManagerService = (*Runtime)(nil)
)

// Options configure a Runtime. The zero value is usable.
type Options struct {
	// PodCIDR is where sandbox IPs come from: one CIDR, or an IPv4 and an
	// IPv6 CIDR separated by a comma for dual stack (the first gives the
	// sandbox's IP, the second its additional IP). Empty means
	// DefaultPodCIDR until the node agent sends its own through
	// UpdateRuntimeConfig; a PodCIDR given here is kept whatever the node
	// agent sends.
	PodCIDR string
	// Clock drives timestamps and simulated exits; nil is the wall clock.
	Clock Clock
	// RuntimeName and RuntimeVersion are what Version reports
	// (DefaultRuntimeName and DefaultRuntimeVersion when empty).
	RuntimeName    string
	RuntimeVersion string
	// RuntimeHandlers are the handler names (RuntimeClass handlers)
	// accepted by RunPodSandbox besides the default handler "".
	RuntimeHandlers []string
	// Images are present from the start, as if pulled.
	Images []string
	// MissingImages fail to pull with a NotFound error, as an image that
	// does not exist in its registry does (for ErrImagePull tests). They are
	// compared after normalisation, so "busybox" and
	// "docker.io/library/busybox:latest" are the same entry.
	MissingImages []string
	// ImageFsMountpoint is the mount point reported by ImageFsInfo and in
	// container stats ("/" when empty).
	ImageFsMountpoint string
	// Logger receives what the runtime has to say that is not an error of a
	// call (a log file it could not write); nil is slog.Default().
	Logger *slog.Logger
}

// Validate reports what is wrong with the options, if anything. New accepts
// invalid options but the runtime then refuses every call (Status says why,
// so the node is NotReady with the reason); callers that can report a
// configuration error earlier should call Validate first.
func (o Options) Validate() error {
	var errs []error
	if o.PodCIDR != "" {
		if _, err := parsePodCIDRs(o.PodCIDR); err != nil {
			errs = append(errs, fmt.Errorf("PodCIDR: %w", err))
		}
	}
	for _, ref := range o.Images {
		if _, err := normalizeReference(ref); err != nil {
			errs = append(errs, fmt.Errorf("Images: %q: %w", ref, err))
		}
	}
	for _, ref := range o.MissingImages {
		if _, err := normalizeReference(ref); err != nil {
			errs = append(errs, fmt.Errorf("MissingImages: %q: %w", ref, err))
		}
	}
	for _, h := range o.RuntimeHandlers {
		if h == "" {
			errs = append(errs, errors.New("RuntimeHandlers: the default handler \"\" is always accepted and must not be listed"))
		}
	}
	return errors.Join(errs...)
}

// Runtime is an in-memory CRI runtime: pod sandboxes get IPs and containers
// go through created → running → exited, with log lines, timestamps and exit
// codes, but no process runs. It implements internalapi.RuntimeService and
// internalapi.ImageManagerService and is safe for concurrent use.
type Runtime struct {
	opts      Options
	clock     Clock
	log       *slog.Logger
	configErr error
	missing   map[string]bool // normalised references that fail to pull
	closed    atomic.Bool

	mu              sync.RWMutex
	seq             uint64
	sandboxes       map[string]*sandbox
	sandboxNames    map[string]string // reserved sandbox name → ID
	containers      map[string]*container
	containerNames  map[string]string // reserved container name → ID
	images          map[string]*image // by ID
	imageRefs       map[string]*image // by normalised tag or digest reference
	net             *ipAllocator
	cidrFromOptions bool
	subscribers     map[*subscriber]struct{}
}

// New returns a Runtime with opts. Invalid options do not make New fail; see
// Options.Validate.
func New(opts Options) *Runtime {
	if opts.RuntimeName == "" {
		opts.RuntimeName = DefaultRuntimeName
	}
	if opts.RuntimeVersion == "" {
		opts.RuntimeVersion = DefaultRuntimeVersion
	}
	if opts.ImageFsMountpoint == "" {
		opts.ImageFsMountpoint = "/"
	}
	r := &Runtime{
		opts:           opts,
		clock:          opts.Clock,
		log:            opts.Logger,
		configErr:      opts.Validate(),
		missing:        map[string]bool{},
		sandboxes:      map[string]*sandbox{},
		sandboxNames:   map[string]string{},
		containers:     map[string]*container{},
		containerNames: map[string]string{},
		images:         map[string]*image{},
		imageRefs:      map[string]*image{},
		subscribers:    map[*subscriber]struct{}{},
	}
	if r.clock == nil {
		r.clock = realClock{}
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	cidr := opts.PodCIDR
	r.cidrFromOptions = cidr != ""
	if cidr == "" {
		cidr = DefaultPodCIDR
	}
	if net, err := newIPAllocator(cidr); err == nil {
		r.net = net
	} else {
		r.net = emptyIPAllocator() // unused: configErr refuses every call
	}
	for _, ref := range opts.MissingImages {
		if n, err := normalizeReference(ref); err == nil {
			r.missing[n.String()] = true
		}
	}
	for _, ref := range opts.Images {
		if n, err := normalizeReference(ref); err == nil {
			r.addImageLocked(n, nil, "")
		}
	}
	return r
}

// enter is the common prologue of every call: a cancelled context, a closed
// or misconfigured runtime end the call before it does anything.
func (r *Runtime) enter(ctx context.Context) error {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
	}
	if r.closed.Load() {
		return status.Error(codes.Unavailable, "the simulated runtime is closed")
	}
	if r.configErr != nil {
		return status.Errorf(codes.FailedPrecondition, "the simulated runtime is misconfigured: %v", r.configErr)
	}
	return nil
}

func (r *Runtime) now() int64 { return r.clock.Now().UnixNano() }

// newID returns 64 hex digits, as containerd's IDs are.
func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}

func unimplemented(what string) error {
	return status.Errorf(codes.Unimplemented, "%s is not supported by the simulated runtime: it runs no processes", what)
}

// Version returns the runtime name and version and the CRI API version.
func (r *Runtime) Version(ctx context.Context, apiVersion string) (*runtimeapi.VersionResponse, error) {
	if err := r.enterAlways(ctx); err != nil {
		return nil, err
	}
	return &runtimeapi.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       r.opts.RuntimeName,
		RuntimeVersion:    r.opts.RuntimeVersion,
		RuntimeApiVersion: criAPIVersion,
	}, nil
}

// enterAlways is enter for the calls that still answer on a misconfigured
// runtime (Version, Status), so the node agent can say what is wrong.
func (r *Runtime) enterAlways(ctx context.Context) error {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
	}
	if r.closed.Load() {
		return status.Error(codes.Unavailable, "the simulated runtime is closed")
	}
	return nil
}

// Status reports RuntimeReady and NetworkReady: both true, unless the
// options are invalid (both false, with the reason). Every runtime handler
// claims every feature, since nothing is enforced anyway and a simulated
// node should admit the pods a real one would.
func (r *Runtime) Status(ctx context.Context, verbose bool) (*runtimeapi.StatusResponse, error) {
	if err := r.enterAlways(ctx); err != nil {
		return nil, err
	}
	runtimeReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	networkReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if r.configErr != nil {
		for _, c := range []*runtimeapi.RuntimeCondition{runtimeReady, networkReady} {
			c.Status = false
			c.Reason = "InvalidConfiguration"
			c.Message = "simulated runtime: " + r.configErr.Error()
		}
	}
	features := &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: true}
	handlers := []*runtimeapi.RuntimeHandler{{Name: "", Features: features}}
	for _, h := range r.opts.RuntimeHandlers {
		handlers = append(handlers, &runtimeapi.RuntimeHandler{Name: h, Features: features})
	}
	resp := &runtimeapi.StatusResponse{
		Status:          &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{runtimeReady, networkReady}},
		RuntimeHandlers: handlers,
		Features: &runtimeapi.RuntimeFeatures{
			SupplementalGroupsPolicy:  true,
			UserNamespacesHostNetwork: true,
			MountOptions:              true,
		},
	}
	if verbose {
		r.mu.RLock()
		info := map[string]any{
			"runtime":         r.opts.RuntimeName,
			"podCIDR":         r.net.cidrs,
			"sandboxes":       len(r.sandboxes),
			"containers":      len(r.containers),
			"images":          len(r.images),
			"runtimeHandlers": r.opts.RuntimeHandlers,
		}
		r.mu.RUnlock()
		b, _ := json.Marshal(info)
		resp.Info = map[string]string{"config": string(b)}
	}
	return resp, nil
}

// RuntimeConfig reports the cgroupfs driver, containerd's default; no
// cgroup is made, so the node agent's choice does not matter.
func (r *Runtime) RuntimeConfig(ctx context.Context) (*runtimeapi.RuntimeConfigResponse, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	return &runtimeapi.RuntimeConfigResponse{
		Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: runtimeapi.CgroupDriver_CGROUPFS},
	}, nil
}

// UpdateRuntimeConfig takes the node's pod CIDR(s) from the node agent, to
// allocate the IPs of new sandboxes from, unless Options.PodCIDR was set.
// Sandboxes keep the IPs they have.
func (r *Runtime) UpdateRuntimeConfig(ctx context.Context, runtimeConfig *runtimeapi.RuntimeConfig) error {
	if err := r.enter(ctx); err != nil {
		return err
	}
	cidr := runtimeConfig.GetNetworkConfig().GetPodCidr()
	if cidr == "" || r.cidrFromOptions {
		return nil
	}
	ranges, err := parsePodCIDRs(cidr)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.net.cidrs != cidr {
		r.net.setRanges(cidr, ranges)
	}
	return nil
}

// Close stops the timers of simulated exits and ends the GetContainerEvents
// streams. Every later call fails with codes.Unavailable; Close itself can
// be called again.
func (r *Runtime) Close(ctx context.Context) error {
	if r.closed.Swap(true) {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.containers {
		if c.timer != nil {
			c.timer.Stop()
			c.timer = nil
		}
	}
	for s := range r.subscribers {
		s.close()
	}
	return nil
}

// matchLabels reports whether labels hold every key=value of the selector.
func matchLabels(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func bySeq[T interface{ order() uint64 }](items []T) {
	slices.SortFunc(items, func(a, b T) int {
		switch {
		case a.order() < b.order():
			return -1
		case a.order() > b.order():
			return 1
		}
		return 0
	})
}
