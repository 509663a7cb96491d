package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	internalapi "k8s.io/cri-api/pkg/apis"
	"k8s.io/utils/clock"
)

// Config is what the node agent needs.
type Config struct {
	// NodeName is the Node's name; the client must be authenticated as
	// system:node:<NodeName> in system:nodes, so that the Node authorizer
	// and NodeRestriction apply as they do to a kubelet.
	NodeName string
	Client   kubernetes.Interface
	// Runtime and Images are the CRI services.
	Runtime internalapi.RuntimeService
	Images  internalapi.ImageManagerService
	// DataDir holds pod volumes and container logs (the kubelet's
	// /var/lib/kubelet and /var/log/pods).
	DataDir string
	// PodCIDR is the Node's spec.podCIDR (the runtime's CNI allocates
	// from it).
	PodCIDR string
	// NodeIP is the Node's InternalIP, where the API server reaches the
	// kubelet API; the first non-loopback host address when nil.
	NodeIP net.IP
	// Server, when set, serves the kubelet API (see ServerConfig).
	Server *ServerConfig
	// ClusterDomain and ClusterDNS are given to pods with dnsPolicy
	// ClusterFirst; without ClusterDNS such pods get the host's resolvers,
	// as upstream's kubelet does (with a MissingClusterDNS event).
	ClusterDomain string
	ClusterDNS    []string
	// Version is reported as the kubelet version in nodeInfo.
	Version string
	// BackoffInitial and BackoffMax bound container restart and image
	// pull back-off (upstream: 10 s doubling to 5 min).
	BackoffInitial, BackoffMax time.Duration
	// MaxPods is the Node's pods capacity (upstream's --max-pods, 110).
	MaxPods int
	// RelistPeriod is how often the runtime is listed for container
	// state changes (upstream's PLEG: 1 s).
	RelistPeriod time.Duration
	Logger       *slog.Logger
}

// Agent is a running node agent.
type Agent struct {
	cfg       Config
	client    kubernetes.Interface
	runtime   internalapi.RuntimeService
	images    internalapi.ImageManagerService
	logger    *slog.Logger
	recorder  record.EventRecorder
	pods      corelisters.PodLister
	podsSync  cache.InformerSynced
	backoff   *flowcontrol.Backoff
	pullBack  *flowcontrol.Backoff
	runtimeID string // "containerd://1.6.20"

	mu            sync.Mutex
	workers       map[types.UID]*podWorker
	workersCtx    context.Context
	cancelWorkers context.CancelFunc
	workersWG     sync.WaitGroup
	// relisted is the state of every container at the last relist.
	relisted map[string]relistEntry
	ready    chan struct{}
	// prober runs probes; probes schedules them and keeps their results.
	prober *prober
	probes *probeManager
}

// New checks the configuration.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.NodeName == "":
		return nil, errors.New("kubelet: NodeName is required")
	case cfg.Client == nil:
		return nil, errors.New("kubelet: Client is required")
	case cfg.Runtime == nil || cfg.Images == nil:
		return nil, errors.New("kubelet: a CRI runtime is required")
	case cfg.DataDir == "":
		return nil, errors.New("kubelet: DataDir is required")
	}
	if cfg.BackoffInitial == 0 {
		cfg.BackoffInitial = 10 * time.Second
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 5 * time.Minute
	}
	if cfg.MaxPods == 0 {
		cfg.MaxPods = defaultMaxPods
	}
	if cfg.RelistPeriod == 0 {
		cfg.RelistPeriod = time.Second
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NodeIP == nil {
		cfg.NodeIP = hostIP()
	}
	for _, dir := range []string{podsDir(cfg.DataDir), logsDir(cfg.DataDir)} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("kubelet: %w", err)
		}
	}
	a := &Agent{
		cfg: cfg, client: cfg.Client, runtime: cfg.Runtime, images: cfg.Images, logger: cfg.Logger,
		backoff:  flowcontrol.NewBackOff(cfg.BackoffInitial, cfg.BackoffMax),
		pullBack: flowcontrol.NewBackOff(cfg.BackoffInitial, cfg.BackoffMax),
		workers:  map[types.UID]*podWorker{}, relisted: map[string]relistEntry{},
		ready: make(chan struct{}),
	}
	a.prober = newProber(a, noPodNetwork(cfg.Runtime))
	a.probes = newProbeManager(a, a.prober, clock.RealClock{})
	return a, nil
}

// Ready is closed once the Node is registered and the pods bound to it
// are being synced.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Run registers the Node and runs its pods until ctx is done. Stopping
// leaves the pods' containers running: a restarted agent adopts them.
func (a *Agent) Run(ctx context.Context) error {
	version, err := a.runtime.Version(ctx, "v1")
	if err != nil {
		return fmt.Errorf("container runtime: %w", err)
	}
	a.runtimeID = version.RuntimeName + "://" + version.RuntimeVersion
	a.mu.Lock()
	a.workersCtx, a.cancelWorkers = context.WithCancel(ctx)
	a.mu.Unlock()
	if err := a.registerNode(ctx); err != nil {
		return err
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	a.recorder = broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: a.cfg.NodeName})

	// Only the pods bound to this node: the Node authorizer lets a node
	// list and watch pods with exactly this field selector.
	factory := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName).String()
	}))
	podInformer := factory.Core().V1().Pods()
	a.pods, a.podsSync = podInformer.Lister(), podInformer.Informer().HasSynced
	_, _ = podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.podChanged(obj) },
		UpdateFunc: func(_, obj any) { a.podChanged(obj) },
		DeleteFunc: func(obj any) { a.podChanged(obj) },
	})
	// Shutdown waits for the informers, which stop with informersCtx:
	// cancelled first (defers run last first), also on early returns.
	informersCtx, stopInformers := context.WithCancel(ctx)
	factory.Start(informersCtx.Done())
	defer factory.Shutdown()
	defer stopInformers()
	if !cache.WaitForCacheSync(ctx.Done(), a.podsSync) {
		return ctx.Err()
	}

	var wg sync.WaitGroup
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	// Containers of pods this node no longer has (deleted while the
	// agent was down) are stopped and removed.
	a.adoptOrCleanUp(ctx)
	run(a.relistLoop)
	run(a.heartbeatLoop)
	serverErr := make(chan error, 1)
	if a.cfg.Server != nil {
		srv, err := a.newServer(*a.cfg.Server)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); serverErr <- srv.run(ctx) }()
	}
	close(a.ready)
	a.logger.Info("node agent ready", "node", a.cfg.NodeName, "runtime", a.runtimeID)

	select {
	case <-ctx.Done():
	case err = <-serverErr:
	}
	a.stopWorkers()
	a.probes.wait()
	wg.Wait()
	return err
}

func podsDir(dataDir string) string { return filepath.Join(dataDir, "pods") }
func logsDir(dataDir string) string { return filepath.Join(dataDir, "logs") }

// hostIP is the address of the host's default route, or loopback.
func hostIP() net.IP {
	if ip, err := utilnet.ChooseHostInterface(); err == nil {
		return ip
	}
	return net.IPv4(127, 0, 0, 1)
}
