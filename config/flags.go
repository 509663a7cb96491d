package config

import (
	"strconv"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const dataDirUsage = "Directory for Gatehouse state: certificates, kubeconfigs and embedded etcd data."

// flagSpec ties one command-line flag to one Config field. Adding a flag is
// adding one row to flagSpecs; AddFlags and Resolve both walk the table.
type flagSpec struct {
	name     string
	register func(fs *pflag.FlagSet, c *Config)
	copy     func(dst, src *Config)
}

var flagSpecs = []flagSpec{
	bind("data-dir", pathVar, func(c *Config) *string { return &c.DataDir },
		dataDirUsage),
	bind("bind-address", (*pflag.FlagSet).StringVar, func(c *Config) *string { return &c.BindAddress },
		"IP address the API server and other components listen on. Use 0.0.0.0 to listen on all interfaces."),
	bind("api-port", (*pflag.FlagSet).IntVar, func(c *Config) *int { return &c.APIPort },
		"Port of the Kubernetes API server."),
	bind("policies", pathVar, func(c *Config) *string { return &c.Policies },
		"Directory of policies to load. If empty, no policies are loaded."),

	{
		// AuditInterval is a pointer in Config (unset is the default, 0
		// disables), so it cannot go through bind.
		name: "audit-interval",
		register: func(fs *pflag.FlagSet, c *Config) {
			c.AuditInterval = &metav1.Duration{Duration: c.AuditEvery()}
			fs.Var(intervalValue{&c.AuditInterval.Duration}, "audit-interval",
				"How often Gatekeeper constraints are audited against existing objects, e.g. 30s or 5m; a bare number is seconds, as in Gatekeeper. 0 disables the audit.")
		},
		copy: func(dst, src *Config) { dst.AuditInterval = &metav1.Duration{Duration: src.AuditEvery()} },
	},

	{
		// A pointer in Config, as AuditInterval.
		name: "external-data-provider-response-cache-ttl",
		register: func(fs *pflag.FlagSet, c *Config) {
			c.ExternalDataCacheTTL = &metav1.Duration{Duration: c.ExternalDataCache()}
			fs.Var(intervalValue{&c.ExternalDataCacheTTL.Duration}, "external-data-provider-response-cache-ttl",
				"How long an external data provider's answer for a key is reused by templates' external_data, e.g. 3m (Gatekeeper's flag of the same name). 0 turns the cache off, so every call reaches the provider.")
		},
		copy: func(dst, src *Config) {
			dst.ExternalDataCacheTTL = &metav1.Duration{Duration: src.ExternalDataCache()}
		},
	},

	bind("exempt-namespace", (*pflag.FlagSet).StringArrayVar, func(c *Config) *[]string { return &c.ExemptNamespaces },
		"Namespace that Gatekeeper's constraints and mutators leave alone and that may carry the admission.gatekeeper.sh/ignore label, as Gatekeeper's --exempt-namespace (repeatable; kube-* or *-system for a prefix or suffix). gatekeeper-system always is."),

	onByDefault("trace", func(c *Config) **bool { return &c.Trace },
		"Record every admission decision step by step for gatehouse trace. Use --trace=false to turn it off."),
	bind("trace-buffer", (*pflag.FlagSet).IntVar, func(c *Config) *int { return &c.TraceBuffer },
		"How many admission traces (the newest) are kept in memory for gatehouse trace."),

	bind("trace-file", pathVar, func(c *Config) *string { return &c.TraceFile },
		"Also write every admission trace to this file as a JSON line; it is rotated at 100 MiB, keeping three."),
	bind("webhook-log-size", (*pflag.FlagSet).IntVar, func(c *Config) *int { return &c.WebhookLogSize },
		"How many calls of each admission webhook (the newest) are kept in memory for gatehouse webhook log."),
	bind("webhook-log-file", pathVar, func(c *Config) *string { return &c.WebhookLogFile },
		"Also write every admission webhook call to this file as a JSON line; it is rotated at 100 MiB, keeping three."),

	bind("etcd-servers", (*pflag.FlagSet).StringSliceVar, func(c *Config) *[]string { return &c.Etcd.Servers },
		"Comma-separated URLs of an external etcd cluster, e.g. https://10.0.0.1:2379. If empty, an embedded etcd is started."),
	bind("etcd-cafile", pathVar, func(c *Config) *string { return &c.Etcd.CAFile },
		"CA bundle used to verify the external etcd servers."),
	bind("etcd-certfile", pathVar, func(c *Config) *string { return &c.Etcd.CertFile },
		"Client certificate for the external etcd servers. Requires --etcd-keyfile."),
	bind("etcd-keyfile", pathVar, func(c *Config) *string { return &c.Etcd.KeyFile },
		"Client key for the external etcd servers. Requires --etcd-certfile."),
	bind("etcd-client-port", (*pflag.FlagSet).IntVar, func(c *Config) *int { return &c.Etcd.ClientPort },
		"Client port of the embedded etcd. Ignored with --etcd-servers."),
	bind("etcd-peer-port", (*pflag.FlagSet).IntVar, func(c *Config) *int { return &c.Etcd.PeerPort },
		"Peer port of the embedded etcd. Ignored with --etcd-servers."),

	bind("controller-manager-port", (*pflag.FlagSet).IntVar, func(c *Config) *int { return &c.ControllerManagerPort },
		"Secure port of the kube-controller-manager."),
	bind("scheduler-port", (*pflag.FlagSet).IntVar, func(c *Config) *int { return &c.SchedulerPort },
		"Secure port of the kube-scheduler."),
	bind("kubelet-port", (*pflag.FlagSet).IntVar, func(c *Config) *int { return &c.KubeletPort },
		"Port of the node agent (kubelet API)."),

	onByDefault("node", func(c *Config) **bool { return &c.Node },
		"Run a node next to the control plane so pods can be scheduled. Use --node=false for a control plane only."),
	bind("runtime", (*pflag.FlagSet).StringVar, func(c *Config) *string { return &c.Runtime },
		"Container runtime of the node: one of auto, cri, simulated."),
	bind("container-runtime-endpoint", (*pflag.FlagSet).StringVar, func(c *Config) *string { return &c.ContainerRuntimeEndpoint },
		"CRI endpoint of the container runtime, e.g. unix:///run/containerd/containerd.sock."),

	bind("service-cidr", (*pflag.FlagSet).StringVar, func(c *Config) *string { return &c.ServiceCIDR },
		"CIDR range from which Service cluster IPs are allocated."),
	bind("cluster-cidr", (*pflag.FlagSet).StringVar, func(c *Config) *string { return &c.ClusterCIDR },
		"CIDR range from which Pod IPs are allocated."),

	bind("kube-apiserver-arg", (*pflag.FlagSet).StringArrayVar, func(c *Config) *[]string { return &c.KubeAPIServerArgs },
		"Extra kube-apiserver argument as key=value or --key=value. Repeat for several arguments."),
	bind("kube-controller-manager-arg", (*pflag.FlagSet).StringArrayVar, func(c *Config) *[]string { return &c.KubeControllerManagerArgs },
		"Extra kube-controller-manager argument as key=value or --key=value. Repeat for several arguments."),
	bind("kube-scheduler-arg", (*pflag.FlagSet).StringArrayVar, func(c *Config) *[]string { return &c.KubeSchedulerArgs },
		"Extra kube-scheduler argument as key=value or --key=value. Repeat for several arguments."),
}

// bind builds the row for a flag stored directly in the field that field
// returns. addVar is a pflag registration method such as
// (*pflag.FlagSet).IntVar; the field's current value becomes the default.
func bind[T any](name string, addVar func(fs *pflag.FlagSet, p *T, name string, value T, usage string),
	field func(*Config) *T, usage string) flagSpec {
	return flagSpec{
		name: name,
		register: func(fs *pflag.FlagSet, c *Config) {
			p := field(c)
			addVar(fs, p, name, *p, usage)
		},
		copy: func(dst, src *Config) { *field(dst) = *field(src) },
	}
}

// onByDefault builds the row for a switch kept as a *bool in Config (nil
// means on), which bind cannot take.
func onByDefault(name string, field func(*Config) **bool, usage string) flagSpec {
	enabled := func(c *Config) bool { p := *field(c); return p == nil || *p }
	return flagSpec{
		name: name,
		register: func(fs *pflag.FlagSet, c *Config) {
			p := new(enabled(c))
			*field(c) = p
			fs.BoolVar(p, name, *p, usage)
		},
		copy: func(dst, src *Config) { *field(dst) = new(enabled(src)) },
	}
}

// AddFlags resets c to Default() and registers one flag per Config setting,
// writing into c. Pass c to Resolve after fs is parsed.
func AddFlags(fs *pflag.FlagSet, c *Config) {
	*c = *Default()
	for _, f := range flagSpecs {
		f.register(fs, c)
	}
}

// AddDataDirFlag registers only --data-dir, with the same default and usage
// as AddFlags, for commands that need the state directory and nothing else.
func AddDataDirFlag(fs *pflag.FlagSet, p *string) {
	pathVar(fs, p, "data-dir", DefaultDataDir(), dataDirUsage)
}

// Resolve merges the config file at configPath (if any) with the flags set
// on the command line: a flag the user changed wins over the file, a flag
// left alone does not. flagValues is the Config passed to AddFlags. The
// result is not validated; call Validate.
func Resolve(fs *pflag.FlagSet, flagValues *Config, configPath string) (*Config, error) {
	flags := flagValues.clone()
	cfg := flags
	if configPath != "" {
		var err error
		if cfg, err = Load(configPath); err != nil {
			return nil, err
		}
		for _, f := range flagSpecs {
			if fs.Changed(f.name) {
				f.copy(cfg, flags)
			}
		}
	}
	cfg.expandPaths()
	return cfg, nil
}

// pathVar registers a string flag holding a local path.
func pathVar(fs *pflag.FlagSet, p *string, name, value, usage string) {
	*p = value
	fs.Var(pathValue{p}, name, usage)
}

// pathValue is a string flag value that expands a leading ~ on Set, because
// shells leave it alone in --flag=~/dir.
type pathValue struct{ p *string }

func (v pathValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v pathValue) Set(s string) error {
	*v.p = expandHome(s)
	return nil
}

// Type is "string" so that help output reads like any other string flag.
func (v pathValue) Type() string { return "string" }

// intervalValue is a duration flag value that also takes a bare number of
// seconds, the form of Gatekeeper's --audit-interval.
type intervalValue struct{ p *time.Duration }

func (v intervalValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v intervalValue) Set(s string) error {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		*v.p = time.Duration(n) * time.Second
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*v.p = d
	return nil
}

func (v intervalValue) Type() string { return "duration" }
