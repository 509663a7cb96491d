package controlplane

import (
	"context"
	"fmt"
	"strconv"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/cache"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	cmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	cmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"github.com/gatehouse-dev/gatehouse/admission"
	"github.com/gatehouse-dev/gatehouse/admission/trace"
	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/controlplane/metricsapi"
	"github.com/gatehouse-dev/gatehouse/controlplane/pki"
	"github.com/gatehouse-dev/gatehouse/webhooks"
)

// storage is where the API server keeps its objects.
type storage struct {
	servers                   string
	caFile, certFile, keyFile string
}

// apiserverFlags are kubeadm's kube-apiserver flags (v1.37), except where
// the README's "Differences from kubeadm" says otherwise.
func apiserverFlags(cfg *config.Config, b *pki.Bundle, st storage) flagMap {
	m := flagMap{
		"allow-privileged":                   "true",
		"anonymous-auth":                     "false",
		"authorization-mode":                 "Node,RBAC",
		"bind-address":                       cfg.BindAddress,
		"secure-port":                        strconv.Itoa(cfg.APIPort),
		"cert-dir":                           b.Dir,
		"client-ca-file":                     b.CA.CertFile,
		"enable-bootstrap-token-auth":        "true",
		"etcd-servers":                       st.servers,
		"kubelet-client-certificate":         b.APIServerKubeletClient.CertFile,
		"kubelet-client-key":                 b.APIServerKubeletClient.KeyFile,
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname",
		"proxy-client-cert-file":             b.FrontProxyClient.CertFile,
		"proxy-client-key-file":              b.FrontProxyClient.KeyFile,
		"requestheader-allowed-names":        "front-proxy-client",
		"requestheader-client-ca-file":       b.FrontProxyCA.CertFile,
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
		"service-account-issuer":             "https://kubernetes.default.svc.cluster.local",
		"service-account-key-file":           b.ServiceAccountPubFile,
		"service-account-signing-key-file":   b.ServiceAccountKeyFile,
		"service-cluster-ip-range":           cfg.ServiceCIDR,
		"tls-cert-file":                      b.APIServer.CertFile,
		"tls-private-key-file":               b.APIServer.KeyFile,
	}
	for k, v := range map[string]string{"etcd-cafile": st.caFile, "etcd-certfile": st.certFile, "etcd-keyfile": st.keyFile} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

// runAPIServer configures kube-apiserver with Gatehouse's admission chain
// and runs it until ctx is done.
func runAPIServer(ctx context.Context, flags flagMap, passthrough []string, deps admission.Deps) (func() error, error) {
	s := apiserveroptions.NewServerRunOptions()
	// The chain must be configured before flags are parsed: plugin
	// enablement flags are validated against the registered plugins.
	if err := admission.Configure(s.Admission, deps); err != nil {
		return nil, err
	}
	args, err := flags.args(passthrough)
	if err != nil {
		return nil, fmt.Errorf("--kube-apiserver-arg: %w", err)
	}
	if err := parseInto("kube-apiserver", "--kube-apiserver-arg", s.Flags(), args); err != nil {
		return nil, err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, fmt.Errorf("kube-apiserver: %w", utilerrors.NewAggregate(errs))
	}
	return func() error { return runAPIServerWithTrace(ctx, completed, deps.Trace, deps.Webhooks) }, nil
}

// runAPIServerWithTrace is upstream's app.Run (NewConfig, Complete,
// CreateServerChain, PrepareRun, Run) with the admission trace's two
// hooks: its filter innermost in the handler chain of the outermost
// server (the aggregator, whose chain every request passes; the servers it
// delegates to are reached without filters), and its endpoint on that
// server's mux, behind the same authentication and authorization.
func runAPIServerWithTrace(ctx context.Context, opts apiserveroptions.CompletedOptions, rec *trace.Recorder, kit *webhooks.Kit) error {
	if opts.InformerName == nil {
		name, err := cache.NewInformerName("kube-apiserver")
		if err != nil {
			return err
		}
		opts.InformerName = name
	}
	config, err := apiserverapp.NewConfig(opts)
	if err != nil {
		return err
	}
	if rec != nil {
		generic := &config.Aggregator.GenericConfig.Config
		generic.BuildHandlerChainFunc = trace.WrapHandlerChain(generic.BuildHandlerChainFunc, rec)
	}
	completed, err := config.Complete()
	if err != nil {
		return err
	}
	server, err := apiserverapp.CreateServerChain(completed)
	if err != nil {
		return err
	}
	// metrics.k8s.io served in-process (package metricsapi says why).
	if err := metricsapi.Install(server.GenericAPIServer, metricsapi.Config{
		Informers: config.KubeAPIs.ControlPlane.Extra.VersionedInformers,
		Kubelet:   config.KubeAPIs.Extra.KubeletClientConfig,
	}); err != nil {
		return err
	}
	if rec != nil {
		server.GenericAPIServer.Handler.NonGoRestfulMux.Handle(trace.Path, trace.Handler(rec))
	}
	if kit != nil {
		server.GenericAPIServer.Handler.NonGoRestfulMux.Handle(webhooks.ExchangesPath, kit.ExchangesHandler())
		server.GenericAPIServer.Handler.NonGoRestfulMux.Handle(webhooks.FaultsPath, kit.FaultsHandler())
	}
	prepared, err := server.PrepareRun()
	if err != nil {
		return err
	}
	return prepared.Run(ctx)
}

// leaderElect is on when the storage is shared: several Gatehouse control
// planes on one etcd cluster must not all run the controllers. On embedded
// etcd there is one instance, and waiting out a dead instance's lease would
// add 15 s to every restart.
func leaderElect(cfg *config.Config) string {
	return strconv.FormatBool(!cfg.Etcd.Embedded())
}

func controllerManagerFlags(cfg *config.Config, b *pki.Bundle, kubeconfig string) flagMap {
	return flagMap{
		"allocate-node-cidrs":       "true",
		"authentication-kubeconfig": kubeconfig,
		"authorization-kubeconfig":  kubeconfig,
		"bind-address":              "127.0.0.1",
		"secure-port":               strconv.Itoa(cfg.ControllerManagerPort),
		"tls-cert-file":             b.ControllerManagerServe.CertFile,
		"tls-private-key-file":      b.ControllerManagerServe.KeyFile,
		"client-ca-file":            b.CA.CertFile,
		"cluster-cidr":              cfg.ClusterCIDR,
		"cluster-name":              "gatehouse",
		"cluster-signing-cert-file": b.CA.CertFile,
		"cluster-signing-key-file":  b.CA.KeyFile,
		"controllers":               "*,bootstrapsigner,tokencleaner",
		"kubeconfig":                kubeconfig,
		// Upstream's 20 QPS makes the controller-manager spend ~6 s of
		// start-up throttling itself while it mints one ServiceAccount and
		// token per controller; the API server is in this process.
		"kube-api-qps":                     "200",
		"kube-api-burst":                   "400",
		"leader-elect":                     leaderElect(cfg),
		"requestheader-client-ca-file":     b.FrontProxyCA.CertFile,
		"root-ca-file":                     b.CA.CertFile,
		"service-account-private-key-file": b.ServiceAccountKeyFile,
		"service-cluster-ip-range":         cfg.ServiceCIDR,
		"use-service-account-credentials":  "true",
	}
}

func runControllerManager(ctx context.Context, flags flagMap, passthrough []string) (func() error, error) {
	s, err := cmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager: %w", err)
	}
	all, off, aliases := cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases()
	nfs := s.Flags(all, off, aliases)
	s.ParsedFlags = &nfs
	args, err := flags.args(passthrough)
	if err != nil {
		return nil, fmt.Errorf("--kube-controller-manager-arg: %w", err)
	}
	if err := parseInto("kube-controller-manager", "--kube-controller-manager-arg", nfs, args); err != nil {
		return nil, err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, fmt.Errorf("kube-controller-manager: %w", err)
	}
	c, err := s.Config(ctx, all, off, aliases)
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager: %w", err)
	}
	return func() error { return cmapp.Run(ctx, c.Complete()) }, nil
}

func schedulerFlags(cfg *config.Config, b *pki.Bundle, kubeconfig string) flagMap {
	return flagMap{
		"authentication-kubeconfig": kubeconfig,
		"authorization-kubeconfig":  kubeconfig,
		"bind-address":              "127.0.0.1",
		"secure-port":               strconv.Itoa(cfg.SchedulerPort),
		"tls-cert-file":             b.SchedulerServe.CertFile,
		"tls-private-key-file":      b.SchedulerServe.KeyFile,
		"client-ca-file":            b.CA.CertFile,
		"kubeconfig":                kubeconfig,
		"leader-elect":              leaderElect(cfg),
		// At upstream's 50 QPS the scheduler binds ~45 pods/s here, the
		// bottleneck of 1,000 pods at once (bench/README.md, node part).
		"kube-api-qps":   "200",
		"kube-api-burst": "400",
	}
}

func runScheduler(ctx context.Context, flags flagMap, passthrough []string) (func() error, error) {
	o := schedoptions.NewOptions()
	args, err := flags.args(passthrough)
	if err != nil {
		return nil, fmt.Errorf("--kube-scheduler-arg: %w", err)
	}
	if err := parseInto("kube-scheduler", "--kube-scheduler-arg", *o.Flags, args); err != nil {
		return nil, err
	}
	if err := o.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, fmt.Errorf("kube-scheduler: %w", err)
	}
	if o.InformerName == nil {
		name, err := cache.NewInformerName("kube-scheduler")
		if err != nil {
			return nil, fmt.Errorf("kube-scheduler: %w", err)
		}
		o.InformerName = name
	}
	cc, sched, err := schedapp.Setup(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("kube-scheduler: %w", err)
	}
	return func() error { return schedapp.Run(ctx, cc, sched) }, nil
}
