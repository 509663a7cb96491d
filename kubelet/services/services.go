package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/gatehouse-dev/gatehouse/kubelet/services/dns"
	"github.com/gatehouse-dev/gatehouse/kubelet/services/proxy"
)

// Defaults of Config.
const (
	DefaultMinSyncInterval = 100 * time.Millisecond
	DefaultResyncInterval  = time.Minute
	retryInterval          = 5 * time.Second
)

// Config is what Start needs.
type Config struct {
	NodeName string
	// Client is the node's (system:node:<NodeName>); it lists Services,
	// EndpointSlices and ServiceCIDRs.
	Client kubernetes.Interface
	// PodCIDR is the node's pod range; its first address is the bridge's,
	// where the DNS server listens.
	PodCIDR string
	// ClusterDomain is the DNS zone; empty means cluster.local.
	ClusterDomain string
	// StateDir keeps the kernel settings' previous values while ours are
	// set (see proxy.Sysctls).
	StateDir string
	// ResolvConf names the host's resolvers, to which other names are
	// forwarded; empty means /etc/resolv.conf.
	ResolvConf string
	// MinSyncInterval coalesces changes: the rules are rewritten at most
	// this often. ResyncInterval rewrites them anyway, repairing changes
	// made behind our back.
	MinSyncInterval, ResyncInterval time.Duration
	Logger                          *slog.Logger
}

// Services is the running Service routing and cluster DNS of a node.
type Services struct {
	cfg        Config
	nft        proxy.NFT
	sysctls    *proxy.Sysctls
	gateway    netip.Addr
	podCIDR    netip.Prefix
	clusterDNS []string
	dns        *dns.Server

	services   corelisters.ServiceLister
	slices     discoverylisters.EndpointSliceLister
	cidrs      networkinglisters.ServiceCIDRLister
	dirty      chan struct{}
	lastScript string

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// Start sets the kernel settings, starts the informers, writes the rules
// once they have synced (replacing a table a previous run left) and
// starts the DNS server. It returns once the rules are in place.
func Start(ctx context.Context, cfg Config) (s *Services, err error) {
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.MinSyncInterval == 0 {
		cfg.MinSyncInterval = DefaultMinSyncInterval
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StateDir == "" {
		return nil, errors.New("services: StateDir is required")
	}
	podCIDR, err := netip.ParsePrefix(cfg.PodCIDR)
	if err != nil || !podCIDR.Addr().Is4() {
		return nil, fmt.Errorf("services: pod CIDR %q: an IPv4 range is required", cfg.PodCIDR)
	}
	s = &Services{
		cfg: cfg, podCIDR: podCIDR.Masked(), gateway: podCIDR.Masked().Addr().Next(),
		sysctls: &proxy.Sysctls{StateFile: filepath.Join(cfg.StateDir, "sysctls.json")},
		dirty:   make(chan struct{}, 1),
	}
	if err := s.nft.Available(); err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	// Fail early, with the reason, when the node identity may not read
	// EndpointSlices, rather than wait for an informer that never syncs.
	if _, err := cfg.Client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		if apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("services: node %s may not list EndpointSlices (the control plane binds the ClusterRole system:node-proxier to the group system:nodes): %w", cfg.NodeName, err)
		}
		return nil, fmt.Errorf("services: listing EndpointSlices: %w", err)
	}
	if err := s.sysctls.Apply(proxy.RequiredSysctls); err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	defer func() {
		if err != nil {
			s.cancel()
			s.wg.Wait()
			_ = s.sysctls.Restore()
		}
	}()

	factory := informers.NewSharedInformerFactory(cfg.Client, 0)
	svcInformer := factory.Core().V1().Services()
	sliceInformer := factory.Discovery().V1().EndpointSlices()
	s.services, s.slices = svcInformer.Lister(), sliceInformer.Lister()
	synced := []cache.InformerSynced{svcInformer.Informer().HasSynced, sliceInformer.Informer().HasSynced}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.trigger() },
		UpdateFunc: func(_, _ any) { s.trigger() },
		DeleteFunc: func(any) { s.trigger() },
	}
	_, _ = svcInformer.Informer().AddEventHandler(handler)
	_, _ = sliceInformer.Informer().AddEventHandler(handler)
	// ServiceCIDRs (networking.k8s.io/v1) give the ranges whose
	// unallocated addresses are rejected; without them, no such rule.
	if _, err := cfg.Client.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{Limit: 1}); err == nil {
		cidrInformer := factory.Networking().V1().ServiceCIDRs()
		s.cidrs = cidrInformer.Lister()
		synced = append(synced, cidrInformer.Informer().HasSynced)
		_, _ = cidrInformer.Informer().AddEventHandler(handler)
	} else {
		cfg.Logger.Warn("services: no ServiceCIDRs: traffic to unallocated service addresses is not rejected", "err", err)
	}
	factory.Start(runCtx.Done())
	s.wg.Go(func() { <-runCtx.Done(); factory.Shutdown() })
	if !cache.WaitForCacheSync(runCtx.Done(), synced...) {
		return nil, fmt.Errorf("services: informers did not sync: %w", ctx.Err())
	}

	if svc, err := s.services.Services(dnsNamespace).Get(dnsService); err == nil && isClusterDNS(svc) {
		if ip := firstIPv4(svc.Spec.ClusterIPs, svc.Spec.ClusterIP); ip.IsValid() {
			s.clusterDNS = []string{ip.String()}
		}
	}
	if s.clusterDNS == nil {
		cfg.Logger.Warn("services: no selectorless Service kube-system/kube-dns: pods get the host's resolvers")
	}
	exclude := []netip.Addr{s.gateway}
	for _, ip := range s.clusterDNS {
		exclude = append(exclude, netip.MustParseAddr(ip))
	}
	upstreams, err := dns.HostUpstreams(cfg.ResolvConf, exclude...)
	if err != nil {
		cfg.Logger.Warn("services: cluster DNS forwards no names", "err", err)
	}
	s.dns = dns.NewServer(dns.Config{Zone: cfg.ClusterDomain, Upstreams: upstreams, Logger: cfg.Logger})
	listeners, err := dns.Listen(netip.AddrPortFrom(s.gateway, 53).String())
	if err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	s.wg.Go(func() {
		if err := s.dns.Serve(runCtx, listeners); err != nil {
			cfg.Logger.Error("services: cluster DNS stopped", "err", err)
		}
	})

	if leftover, err := s.nft.Exists(ctx); err == nil && leftover {
		cfg.Logger.Info("services: replacing the nftables table a previous run left", "table", "ip "+proxy.Table)
	}
	if err := s.sync(ctx); err != nil {
		return nil, err
	}
	s.wg.Go(func() { s.loop(runCtx) })
	cfg.Logger.Info("services: routing and cluster DNS ready", "dns", netip.AddrPortFrom(s.gateway, 53).String(), "clusterDNS", s.clusterDNS, "upstreams", upstreams)
	return s, nil
}

// ClusterDNS is the cluster DNS Service's address for the pods'
// resolv.conf, or nil; nil-safe.
func (s *Services) ClusterDNS() []string {
	if s == nil {
		return nil
	}
	return s.clusterDNS
}

// DNSAddress is where this node's DNS server listens.
func (s *Services) DNSAddress() netip.AddrPort { return netip.AddrPortFrom(s.gateway, 53) }

func (s *Services) trigger() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// loop syncs after changes, every ResyncInterval anyway, and again after
// a failure. Like kube-proxy's runner it allows a burst of two syncs, then
// one per MinSyncInterval: a new Service and its EndpointSlice, which come
// a few milliseconds apart, are routed without waiting out the interval.
func (s *Services) loop(ctx context.Context) {
	resync := time.NewTicker(s.cfg.ResyncInterval)
	defer resync.Stop()
	var retry <-chan time.Time
	// The times of the last two syncs, older first.
	recent := [2]time.Time{time.Now(), time.Now()}
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-s.dirty:
		case <-resync.C:
			force = true
		case <-retry:
			force = true
		}
		if wait := s.cfg.MinSyncInterval - time.Since(recent[0]); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		// Changes that came during the wait are in this sync.
		select {
		case <-s.dirty:
		default:
		}
		if force {
			s.lastScript = ""
		}
		recent = [2]time.Time{recent[1], time.Now()}
		retry = nil
		if err := s.sync(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Error("services: sync failed; retrying", "in", retryInterval, "err", err)
			retry = time.After(retryInterval)
		}
	}
}

// sync gives the DNS server a new index and rewrites the rules if they
// changed.
func (s *Services) sync(ctx context.Context) error {
	svcs, err := s.services.List(labels.Everything())
	if err != nil {
		return err
	}
	slices, err := s.slices.List(labels.Everything())
	if err != nil {
		return err
	}
	var cidrs []netip.Prefix
	if s.cidrs != nil {
		list, err := s.cidrs.List(labels.Everything())
		if err != nil {
			return err
		}
		for _, c := range list {
			for _, cidr := range c.Spec.CIDRs {
				if p, err := netip.ParsePrefix(cidr); err == nil {
					cidrs = append(cidrs, p)
				}
			}
		}
	}
	ports, names := model(svcs, slices, s.cfg.NodeName, s.gateway)
	s.dns.SetIndex(dns.NewIndex(s.cfg.ClusterDomain, names))
	script := proxy.Render(proxy.Config{PodCIDR: s.podCIDR, ServiceCIDRs: cidrs}, ports)
	if script == s.lastScript {
		return nil
	}
	start := time.Now()
	if err := s.nft.Replace(ctx, script); err != nil {
		return fmt.Errorf("services: %w", err)
	}
	s.lastScript = script
	s.cfg.Logger.Debug("services: rules written", "servicePorts", len(ports), "took", time.Since(start))
	return nil
}

// Stop stops the DNS server and the informers, deletes the table and puts
// the kernel settings back.
func (s *Services) Stop() error {
	if s == nil {
		return nil
	}
	s.stopOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.stopErr = errors.Join(s.nft.Delete(ctx), s.sysctls.Restore())
	})
	return s.stopErr
}
