package controlplane

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gatehouse-dev/gatehouse/admission"
	"github.com/gatehouse-dev/gatehouse/admission/constraint"
	"github.com/gatehouse-dev/gatehouse/admission/expansion"
	"github.com/gatehouse-dev/gatehouse/admission/externaldata"
	"github.com/gatehouse-dev/gatehouse/admission/mutation"
	"github.com/gatehouse-dev/gatehouse/admission/trace"
	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/controlplane/etcd"
	"github.com/gatehouse-dev/gatehouse/controlplane/pki"
	"github.com/gatehouse-dev/gatehouse/webhooks"
	mutatingadmissionpolicy "k8s.io/apiserver/pkg/admission/plugin/policy/mutating"
	validatingadmissionpolicy "k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	mutatingwebhook "k8s.io/apiserver/pkg/admission/plugin/webhook/mutating"
	validatingwebhook "k8s.io/apiserver/pkg/admission/plugin/webhook/validating"
	"k8s.io/client-go/kubernetes"
)

// ControlPlane is a running control plane.
type ControlPlane struct {
	// Kubeconfig is the admin kubeconfig (system:masters) path.
	Kubeconfig string
	// Admin is a client config for the same identity.
	Admin *rest.Config
	// Server is the API server URL.
	Server string
	// PKI is the cluster's CA and certificates, from which the local
	// node's identity is issued.
	PKI *pki.Bundle
	// Constraints is the Gatekeeper engine the admission chain evaluates.
	Constraints *constraint.Engine
	// Mutators are the Gatekeeper mutators the admission chain applies.
	Mutators *mutation.System
	// Expansions are the Gatekeeper ExpansionTemplates in force.
	Expansions *expansion.System
	// Providers are the Gatekeeper external data Providers in force.
	Providers *externaldata.System
	// Traces are the admission traces of recent write requests.
	Traces *trace.Recorder
	// Webhooks is the webhook kit: the calls of admission webhooks,
	// faults and stubs.
	Webhooks *webhooks.Kit

	// ctx lives as long as the API server; ctrlCtx, its child, as long as
	// the API server's clients (controller-manager, scheduler), which stop
	// first: upstream controllers exit the process (klog.Fatal) when the
	// API server vanishes under them while they start.
	ctx, ctrlCtx       context.Context
	cancel, ctrlCancel context.CancelFunc
	// done is closed when the caller's context is cancelled.
	done   <-chan struct{}
	logger *slog.Logger
	etcd   *etcd.Embedded
	// gatekeeper starts an ephemeral control plane's Gatekeeper syncers;
	// gatekeeperOnce makes that happen once.
	gatekeeper     func() error
	gatekeeperOnce sync.Once
	gatekeeperErr  error
	// traceFile is closed, flushed, after the API server stops.
	traceFile *trace.FileSink
	// removeOnStop is an ephemeral control plane's directory.
	removeOnStop string
	// stopTimeout bounds the wait for each group of components to stop.
	stopTimeout      time.Duration
	stopOnce         sync.Once
	errs             chan componentError
	api, controllers sync.WaitGroup
}

type componentError struct {
	component string
	err       error
}

// Layout names the files of a data directory that other commands read.
type Layout struct{ DataDir string }

func (l Layout) PKIDir() string     { return filepath.Join(l.DataDir, "pki") }
func (l Layout) Kubeconfig() string { return filepath.Join(l.DataDir, "kubeconfig") }
func (l Layout) EtcdDir() string    { return filepath.Join(l.DataDir, "etcd") }
func (l Layout) LogDir() string     { return filepath.Join(l.DataDir, "logs") }
func (l Layout) componentKubeconfig(name string) string {
	return filepath.Join(l.DataDir, name+".kubeconfig")
}

// Start brings the control plane up and returns once the API server is
// ready and the controller-manager and scheduler report healthy. Cancelling
// ctx stops everything; Wait reports how it ended.
func Start(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*ControlPlane, error) {
	return start(ctx, cfg, logger, false)
}

// start runs the control plane; an ephemeral one is the API server alone
// (see StartEphemeral).
func start(ctx context.Context, cfg *config.Config, logger *slog.Logger, ephemeral bool) (*ControlPlane, error) {
	layout := Layout{DataDir: cfg.DataDir}
	if err := checkWritable(cfg.DataDir); err != nil {
		return nil, err
	}
	if err := checkPorts(cfg); err != nil {
		return nil, err
	}

	hostname, _ := os.Hostname()
	var extraIPs []net.IP
	if ip := net.ParseIP(cfg.BindAddress); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		extraIPs = append(extraIPs, ip)
	}
	if hostIP, err := utilnet.ChooseHostInterface(); err == nil {
		extraIPs = append(extraIPs, hostIP)
	}
	if svcIP, err := firstServiceIP(cfg.ServiceCIDR); err == nil {
		extraIPs = append(extraIPs, svcIP)
	}
	bundle, err := pki.Ensure(pki.Options{Dir: layout.PKIDir(), Hostname: hostname, APIServerIPs: extraIPs})
	if err != nil {
		return nil, fmt.Errorf("certificates in %s: %w", layout.PKIDir(), err)
	}
	server := "https://" + net.JoinHostPort(loopbackFor(cfg.BindAddress), strconv.Itoa(cfg.APIPort))
	if err := bundle.WriteKubeconfig(layout.Kubeconfig(), bundle.Admin, server); err != nil {
		return nil, err
	}
	cmKubeconfig, schedKubeconfig := layout.componentKubeconfig("controller-manager"), layout.componentKubeconfig("scheduler")
	if err := bundle.WriteKubeconfig(cmKubeconfig, bundle.ControllerManager, server); err != nil {
		return nil, err
	}
	if err := bundle.WriteKubeconfig(schedKubeconfig, bundle.Scheduler, server); err != nil {
		return nil, err
	}
	admin, err := clientcmd.BuildConfigFromFlags("", layout.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", layout.Kubeconfig(), err)
	}
	// The in-process clients (constraint syncer, audit, policy loader)
	// talk to an API server in this process: client-go's default 5 QPS
	// made each of their steps wait 200 ms.
	admin.QPS, admin.Burst = -1, -1

	// The components' contexts are not children of the caller's: stop
	// cancels them in order once the caller's is done.
	apiCtx, apiCancel := context.WithCancel(context.WithoutCancel(ctx))
	ctrlCtx, ctrlCancel := context.WithCancel(apiCtx)
	cp := &ControlPlane{
		PKI:        bundle,
		Kubeconfig: layout.Kubeconfig(),
		Admin:      admin,
		Server:     server,
		ctx:        apiCtx,
		cancel:     apiCancel,
		ctrlCtx:    ctrlCtx,
		ctrlCancel: ctrlCancel,
		done:       ctx.Done(),
		logger:     logger,
		errs:       make(chan componentError, 8),
	}
	ok := false
	defer func() {
		if !ok {
			cp.stop()
		}
	}()

	st, err := cp.startStorage(ctx, cfg, bundle, layout)
	if err != nil {
		return nil, err
	}

	// Gatekeeper constraints: one engine, filled by the syncer from the
	// cluster's templates and constraints, read by the admission plugin.
	engine := constraint.NewEngine(0)
	engine.SetExempt(cfg.ExemptNamespaces)
	syncer, err := constraint.NewSyncer(admin, engine, logger)
	if err != nil {
		return nil, err
	}
	// Gatekeeper mutators: one system, filled by its syncer, applied by
	// the mutation plugin.
	mutators := mutation.NewSystem()
	mutationSyncer, err := mutation.NewSyncer(admin, mutators, logger)
	if err != nil {
		return nil, err
	}
	// Gatekeeper ExpansionTemplates: workloads expanded into the resources
	// they create (mutated by the same mutators), reviewed by the same
	// engine at admission and in audit.
	expansions := expansion.NewSystem(mutators)
	engine.SetExpander(expansions)
	expansionSyncer := expansion.NewSyncer(admin, expansions, logger)
	// Gatekeeper external data: the Providers that templates' external_data
	// calls, offered Gatehouse's client certificate when they ask for one.
	clientCert, err := pki.LoadExternalDataClient(bundle.Dir)
	if err != nil {
		return nil, err
	}
	kit, err := newWebhookKit(cfg)
	if err != nil {
		return nil, err
	}
	cp.Webhooks = kit
	// Provider calls go through the webhook kit too: logged and faulted
	// by provider name (gatehouse webhook log|fault NAME).
	providers := externaldata.NewSystem(&externaldata.Client{
		Certificate: func() (*tls.Certificate, error) { return clientCert, nil },
		Wrap:        kit.Wrap,
		Identify:    webhooks.ProviderCall,
	}, cfg.ExternalDataCache())
	engine.SetExternalData(providers)
	mutators.SetExternalData(providers)
	providerSyncer := externaldata.NewSyncer(admin, providers, logger)
	gatekeeperSyncers := []gatekeeperSyncer{
		{"gatekeeper constraints", syncer.Start},
		{"gatekeeper mutators", mutationSyncer.Start},
		{"gatekeeper expansion templates", expansionSyncer.Start},
		{"gatekeeper external data providers", providerSyncer.Start},
	}
	var traces *trace.Recorder
	if cfg.TraceEnabled() {
		traces = trace.NewRecorder(cfg.TraceBuffer)
		if cfg.TraceFile != "" {
			sink, err := trace.NewFileSink(cfg.TraceFile, 0)
			if err != nil {
				return nil, fmt.Errorf("--trace-file %s: %w", cfg.TraceFile, err)
			}
			traces.WriteTo(sink)
			cp.traceFile = sink
		}
	}
	deps := admission.Deps{Constraints: engine, Mutators: mutators, Namespaces: syncer.Namespace, Logger: logger, Trace: traces,
		Webhooks: kit, CABundle: bundle.CA.PEM()}
	var explainers *trace.PolicyExplainers
	if traces != nil {
		kube, err := kubernetes.NewForConfig(admin)
		if err != nil {
			return nil, err
		}
		explainers = trace.NewPolicyExplainers(kube)
		deps.Explainers = map[string]trace.Explainer{
			validatingadmissionpolicy.PluginName: explainers.Validating,
			mutatingadmissionpolicy.PluginName:   explainers.Mutating,
			validatingwebhook.PluginName:         explainers.ValidatingWebhook,
			mutatingwebhook.PluginName:           explainers.MutatingWebhook,
		}
		deps.Patched = map[string]trace.Changes{
			mutatingadmissionpolicy.PluginName: explainers.Mutating.MayChange,
			mutatingwebhook.PluginName:         explainers.MutatingWebhook.MayChange,
		}
	}
	flags := apiserverFlags(cfg, bundle, st)
	readyz := server + "/readyz"
	if ephemeral {
		ephemeralAPIServerFlags(flags)
		readyz += ephemeralReadyzExclusions
	}
	runAPI, err := runAPIServer(apiCtx, flags, cfg.KubeAPIServerArgs, deps)
	if err != nil {
		return nil, err
	}
	cp.goRun(&cp.api, apiCtx, "kube-apiserver", runAPI)
	if err := cp.waitHealthy(ctx, "kube-apiserver", admin, readyz); err != nil {
		return nil, err
	}
	logger.Info("kube-apiserver ready", "url", server)
	if explainers != nil {
		explainers.Start(ctrlCtx)
	}
	if err := readFaultAnnotations(ctrlCtx, admin, kit); err != nil {
		return nil, err
	}
	cp.Constraints, cp.Mutators, cp.Expansions, cp.Providers, cp.Traces = engine, mutators, expansions, providers, traces
	if ephemeral {
		if err := ensureSystemPriorityClasses(ctx, admin); err != nil {
			return nil, err
		}
		// On the clients' context, which stops before the API server's:
		// open watches would hold up its shutdown.
		// Gatekeeper's syncers (eight CRDs to make and wait for) start
		// when the first Gatekeeper policy comes: see StartGatekeeper.
		cp.gatekeeper = func() error { return startGatekeeper(ctrlCtx, gatekeeperSyncers) }
		ok = true
		return cp, nil
	}
	if err := ensureNodeServices(ctx, admin, cfg.ServiceCIDR); err != nil {
		return nil, fmt.Errorf("node services: %w", err)
	}
	runCM, err := runControllerManager(ctrlCtx, controllerManagerFlags(cfg, bundle, cmKubeconfig), cfg.KubeControllerManagerArgs)
	if err != nil {
		return nil, err
	}
	cp.goRun(&cp.controllers, ctrlCtx, "kube-controller-manager", runCM)
	runSched, err := runScheduler(ctrlCtx, schedulerFlags(cfg, bundle, schedKubeconfig), cfg.KubeSchedulerArgs)
	if err != nil {
		return nil, err
	}
	cp.goRun(&cp.controllers, ctrlCtx, "kube-scheduler", runSched)

	// The constraint syncer installs its CRDs and loads the policies while
	// the controller-manager builds its controllers.
	if err := startGatekeeper(ctrlCtx, gatekeeperSyncers); err != nil {
		return nil, err
	}
	// Gatekeeper's audit: existing objects against the constraints, into
	// each constraint's status, every --audit-interval.
	if every := cfg.AuditEvery(); every > 0 {
		auditor, err := constraint.NewAuditor(admin, engine, syncer.Namespace, logger)
		if err != nil {
			return nil, fmt.Errorf("gatekeeper audit: %w", err)
		}
		cp.goRun(&cp.controllers, ctrlCtx, "gatekeeper-audit", func() error {
			auditor.Run(ctrlCtx, every)
			return nil
		})
	}

	logger.Debug("waiting for controller-manager and scheduler")
	if err := cp.waitHealthy(ctx, "kube-controller-manager", admin, "https://127.0.0.1:"+strconv.Itoa(cfg.ControllerManagerPort)+"/healthz"); err != nil {
		return nil, err
	}
	if err := cp.waitHealthy(ctx, "kube-scheduler", admin, "https://127.0.0.1:"+strconv.Itoa(cfg.SchedulerPort)+"/healthz"); err != nil {
		return nil, err
	}
	// The controller-manager's healthz answers before its controllers run.
	// Pods are admitted only once the ServiceAccount controller has made
	// the namespace's default ServiceAccount, so that is the signal that
	// the cluster does what a user expects of it.
	logger.Debug("waiting for the default ServiceAccount")
	if err := waitDefaultServiceAccount(ctx, admin, cp.errs); err != nil {
		return nil, err
	}
	ok = true
	return cp, nil
}

// StartGatekeeper makes sure Gatekeeper's CRDs are served and its syncers
// run: at start for `up`; for an ephemeral control plane, on the first call,
// so that checks without Gatekeeper policies do not wait for its CRDs.
func (cp *ControlPlane) StartGatekeeper() error {
	if cp.gatekeeper == nil {
		return nil
	}
	cp.gatekeeperOnce.Do(func() { cp.gatekeeperErr = cp.gatekeeper() })
	return cp.gatekeeperErr
}

// gatekeeperSyncer is one of Gatekeeper's syncers, named for its errors.
type gatekeeperSyncer struct {
	name  string
	start func(context.Context) error
}

// startGatekeeper starts Gatekeeper's syncers together; each spends most of
// its start waiting on the API server to serve its CRDs.
func startGatekeeper(ctx context.Context, syncers []gatekeeperSyncer) error {
	errs := make([]error, len(syncers))
	var wg sync.WaitGroup
	for i, s := range syncers {
		wg.Go(func() {
			if err := s.start(ctx); err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (cp *ControlPlane) startStorage(ctx context.Context, cfg *config.Config, b *pki.Bundle, layout Layout) (storage, error) {
	if len(cfg.Etcd.Servers) > 0 {
		st := storage{servers: strings.Join(cfg.Etcd.Servers, ","), caFile: cfg.Etcd.CAFile, certFile: cfg.Etcd.CertFile, keyFile: cfg.Etcd.KeyFile}
		creds := etcd.ClientTLS{CAFile: cfg.Etcd.CAFile, CertFile: cfg.Etcd.CertFile, KeyFile: cfg.Etcd.KeyFile}
		if err := etcd.WaitReachable(ctx, cfg.Etcd.Servers, creds, cp.logger); err != nil {
			return storage{}, err
		}
		cp.logger.Info("etcd reachable", "endpoints", st.servers)
		return st, nil
	}
	member, err := etcd.StartEmbedded(ctx, etcd.Options{
		Dir:            layout.EtcdDir(),
		ClientPort:     cfg.Etcd.ClientPort,
		PeerPort:       cfg.Etcd.PeerPort,
		ServerCertFile: b.EtcdServer.CertFile,
		ServerKeyFile:  b.EtcdServer.KeyFile,
		TrustedCAFile:  b.EtcdCA.CertFile,
		LogFile:        filepath.Join(layout.LogDir(), "etcd.log"),
	})
	if err != nil {
		return storage{}, err
	}
	cp.etcd = member
	go func() {
		if err, ok := <-member.Err(); ok && err != nil {
			cp.errs <- componentError{"etcd", err}
		}
	}()
	cp.logger.Info("etcd ready", "url", member.ClientURL(), "dir", layout.EtcdDir())
	return storage{
		servers:  member.ClientURL(),
		caFile:   b.EtcdCA.CertFile,
		certFile: b.APIServerEtcdClient.CertFile,
		keyFile:  b.APIServerEtcdClient.KeyFile,
	}, nil
}

// goRun runs one component in group; an error return while its ctx is live
// is fatal for the whole control plane.
func (cp *ControlPlane) goRun(group *sync.WaitGroup, ctx context.Context, name string, run func() error) {
	group.Add(1)
	go func() {
		defer group.Done()
		err := run()
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("stopped unexpectedly")
			}
			cp.errs <- componentError{name, err}
		}
	}()
}

// Wait blocks until the context given to Start is cancelled or a component
// fails, then stops everything. It returns the failure, if any.
func (cp *ControlPlane) Wait() error {
	var failure error
	select {
	case <-cp.done:
	case ce := <-cp.errs:
		failure = fmt.Errorf("%s: %w", ce.component, ce.err)
	}
	cp.stop()
	return failure
}

// stopTimeout bounds how long each group of upstream components gets to
// return after cancel; some of their goroutines never do, and the process
// exits anyway. Two groups stay within the 10 s shutdown promise.
const stopTimeout = 4 * time.Second

// stop cancels the API server's clients, then the API server, then closes
// etcd, each after the previous has returned (or timed out).
func (cp *ControlPlane) stop() {
	cp.stopOnce.Do(cp.stopAll)
}

func (cp *ControlPlane) stopAll() {
	cp.ctrlCancel()
	cp.waitGroup(&cp.controllers, "kube-controller-manager and kube-scheduler")
	cp.cancel()
	cp.waitGroup(&cp.api, "kube-apiserver")
	if cp.etcd != nil {
		// etcd closes its gRPC servers gracefully, waiting on streams
		// of an API server that has not returned yet, if it timed out.
		var closed sync.WaitGroup
		closed.Go(cp.etcd.Close)
		cp.waitGroup(&closed, "etcd")
	}
	if cp.traceFile != nil {
		cp.traceFile.Close()
	}
	if cp.Webhooks != nil {
		cp.Webhooks.Close()
	}
	if cp.removeOnStop != "" {
		os.RemoveAll(cp.removeOnStop)
	}
}

func (cp *ControlPlane) waitGroup(group *sync.WaitGroup, what string) {
	timeout := cmp.Or(cp.stopTimeout, stopTimeout)
	done := make(chan struct{})
	go func() { group.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		level := slog.LevelWarn
		if cp.removeOnStop != "" {
			level = slog.LevelDebug // expected, see StartEphemeral
		}
		cp.logger.Log(context.Background(), level, what+" did not stop in time; going on", "timeout", timeout)
	}
}

func (cp *ControlPlane) waitHealthy(ctx context.Context, name string, admin *rest.Config, endpoint string) error {
	return waitHealthy(ctx, name, admin, endpoint, cp.errs)
}

func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// listener is one port Gatehouse binds, with the flag that sets it.
type listener struct {
	flag string
	host string
	port int
}

// checkPorts fails fast, naming the port and its flag, instead of letting an
// upstream component die later with a bind error deep in its log.
func checkPorts(cfg *config.Config) error {
	ls := []listener{
		{"--api-port", cfg.BindAddress, cfg.APIPort},
		{"--controller-manager-port", "127.0.0.1", cfg.ControllerManagerPort},
		{"--scheduler-port", "127.0.0.1", cfg.SchedulerPort},
	}
	if len(cfg.Etcd.Servers) == 0 {
		ls = append(ls, listener{"--etcd-client-port", "127.0.0.1", cfg.Etcd.ClientPort}, listener{"--etcd-peer-port", "127.0.0.1", cfg.Etcd.PeerPort})
	}
	for _, l := range ls {
		ln, err := net.Listen("tcp", net.JoinHostPort(l.host, strconv.Itoa(l.port)))
		if err != nil {
			return fmt.Errorf("port %d (%s) is already in use or cannot be bound on %s: %w", l.port, l.flag, l.host, err)
		}
		ln.Close()
	}
	return nil
}

// loopbackFor is the address local clients use to reach a server bound to
// bind: the address itself, or loopback for a wildcard bind.
func loopbackFor(bind string) string {
	ip := net.ParseIP(bind)
	switch {
	case ip == nil, ip.IsUnspecified() && ip.To4() != nil:
		return "127.0.0.1"
	case ip.IsUnspecified():
		return "::1"
	}
	return bind
}

func firstServiceIP(cidr string) (net.IP, error) {
	first := strings.Split(cidr, ",")[0]
	_, n, err := net.ParseCIDR(first)
	if err != nil {
		return nil, err
	}
	ip := make(net.IP, len(n.IP))
	copy(ip, n.IP)
	ip[len(ip)-1]++
	return ip, nil
}
