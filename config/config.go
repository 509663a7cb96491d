package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// APIVersion and Kind identify a gatehouse.yaml file.
const (
	APIVersion = "gatehouse.dev/v1alpha1"
	Kind       = "Config"
)

// Container runtimes accepted in Config.Runtime.
const (
	RuntimeAuto      = "auto"
	RuntimeCRI       = "cri"
	RuntimeSimulated = "simulated"
)

var runtimes = []string{RuntimeAuto, RuntimeCRI, RuntimeSimulated}

const (
	defaultDataDir               = "~/.gatehouse"
	defaultBindAddress           = "127.0.0.1"
	defaultAPIPort               = 6443
	defaultControllerManagerPort = 10257
	defaultSchedulerPort         = 10259
	defaultKubeletPort           = 10250
	defaultEtcdClientPort        = 2379
	defaultEtcdPeerPort          = 2380
	defaultServiceCIDR           = "10.96.0.0/12"
	defaultClusterCIDR           = "10.244.0.0/16"
	// defaultTraceBuffer is how many admission traces are kept.
	defaultTraceBuffer = 10000
	// defaultWebhookLogSize is how many calls are kept per webhook.
	defaultWebhookLogSize = 1000
	// defaultAuditInterval is Gatekeeper's --audit-interval default.
	defaultAuditInterval = 60 * time.Second
	// defaultExternalDataCacheTTL is Gatekeeper's
	// --external-data-provider-response-cache-ttl default.
	defaultExternalDataCacheTTL = 3 * time.Minute
)

// Config is the content of gatehouse.yaml. Zero values mean "use the
// default"; Node is a pointer so that an explicit false survives.
type Config struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`

	DataDir     string `json:"dataDir,omitempty"`
	BindAddress string `json:"bindAddress,omitempty"`
	APIPort     int    `json:"apiPort,omitempty"`
	Policies    string `json:"policies,omitempty"`
	Etcd        Etcd   `json:"etcd,omitempty"`

	// AuditInterval is how often Gatekeeper constraints are audited
	// against the cluster's objects (Gatekeeper's --audit-interval); 0
	// disables the audit. A pointer so that an explicit 0 survives.
	AuditInterval *metav1.Duration `json:"auditInterval,omitempty"`
	// ExternalDataCacheTTL is how long an external data provider's answer
	// for a key is reused by templates' external_data (Gatekeeper's
	// --external-data-provider-response-cache-ttl); 0 turns the cache off.
	// A pointer so that an explicit 0 survives.
	ExternalDataCacheTTL *metav1.Duration `json:"externalDataProviderResponseCacheTTL,omitempty"`
	// ExemptNamespaces are the namespaces Gatekeeper's webhooks leave
	// alone besides gatekeeper-system, which alone may carry the
	// admission.gatekeeper.sh/ignore label (Gatekeeper's
	// --exempt-namespace, and with a leading or trailing "*" its
	// --exempt-namespace-suffix and --exempt-namespace-prefix).
	ExemptNamespaces []string `json:"exemptNamespaces,omitempty"`
	// Trace turns the admission trace on (the default) or off.
	Trace *bool `json:"trace,omitempty"`
	// TraceBuffer is how many admission traces are kept in memory (the
	// newest ones).
	TraceBuffer int `json:"traceBuffer,omitempty"`
	// TraceFile, when set, also writes every trace there as a JSON line;
	// the file is rotated at 100 MiB, keeping three.
	TraceFile string `json:"traceFile,omitempty"`
	// WebhookLogSize is how many calls the webhook log keeps per webhook;
	// WebhookLogFile, when set, also receives every call as a JSON line
	// (rotated as the trace file). WebhookStubs is a file of recorded
	// calls whose last answers stand in for their webhooks (gatehouse
	// check --stub-webhooks).
	WebhookLogSize int    `json:"webhookLogSize,omitempty"`
	WebhookLogFile string `json:"webhookLogFile,omitempty"`
	WebhookStubs   string `json:"webhookStubs,omitempty"`

	ControllerManagerPort int `json:"controllerManagerPort,omitempty"`
	SchedulerPort         int `json:"schedulerPort,omitempty"`
	KubeletPort           int `json:"kubeletPort,omitempty"`

	Node                     *bool  `json:"node,omitempty"`
	Runtime                  string `json:"runtime,omitempty"`
	ContainerRuntimeEndpoint string `json:"containerRuntimeEndpoint,omitempty"`

	ServiceCIDR string `json:"serviceCIDR,omitempty"`
	ClusterCIDR string `json:"clusterCIDR,omitempty"`

	// Extra arguments for the components, each "key=value", "--key=value",
	// or a bare "key"/"--key" meaning "key=true".
	KubeAPIServerArgs         []string `json:"kubeAPIServerArgs,omitempty"`
	KubeControllerManagerArgs []string `json:"kubeControllerManagerArgs,omitempty"`
	KubeSchedulerArgs         []string `json:"kubeSchedulerArgs,omitempty"`
}

// Etcd selects between the embedded etcd (Servers empty) and an external one.
type Etcd struct {
	Servers  []string `json:"servers,omitempty"`
	CAFile   string   `json:"caFile,omitempty"`
	CertFile string   `json:"certFile,omitempty"`
	KeyFile  string   `json:"keyFile,omitempty"`

	// Ports of the embedded etcd; ignored when Servers is set.
	ClientPort int `json:"clientPort,omitempty"`
	PeerPort   int `json:"peerPort,omitempty"`
}

// NodeEnabled reports whether a local node runs next to the control plane.
// TraceEnabled reports whether admission is traced (the default).
func (c *Config) TraceEnabled() bool { return c.Trace == nil || *c.Trace }

func (c *Config) NodeEnabled() bool {
	return c.Node == nil || *c.Node
}

// AuditEvery is the audit interval, 0 when the audit is disabled.
func (c *Config) AuditEvery() time.Duration {
	if c.AuditInterval == nil {
		return defaultAuditInterval
	}
	return c.AuditInterval.Duration
}

// ExternalDataCache is how long external data answers are cached, 0 when
// they are not.
func (c *Config) ExternalDataCache() time.Duration {
	if c.ExternalDataCacheTTL == nil {
		return defaultExternalDataCacheTTL
	}
	return c.ExternalDataCacheTTL.Duration
}

// Embedded reports whether Gatehouse runs its own etcd.
func (e *Etcd) Embedded() bool {
	return len(e.Servers) == 0
}

// DefaultDataDir returns the default --data-dir, ~/.gatehouse with ~
// expanded.
func DefaultDataDir() string {
	return expandHome(defaultDataDir)
}

// Default returns a Config with every default filled in.
func Default() *Config {
	c := &Config{APIVersion: APIVersion, Kind: Kind}
	c.applyDefaults()
	return c
}

func (c *Config) applyDefaults() {
	setDefault(&c.DataDir, DefaultDataDir())
	setDefault(&c.BindAddress, defaultBindAddress)
	setDefault(&c.APIPort, defaultAPIPort)
	setDefault(&c.ControllerManagerPort, defaultControllerManagerPort)
	setDefault(&c.SchedulerPort, defaultSchedulerPort)
	setDefault(&c.KubeletPort, defaultKubeletPort)
	setDefault(&c.Etcd.ClientPort, defaultEtcdClientPort)
	setDefault(&c.Etcd.PeerPort, defaultEtcdPeerPort)
	setDefault(&c.Runtime, RuntimeAuto)
	setDefault(&c.ServiceCIDR, defaultServiceCIDR)
	setDefault(&c.ClusterCIDR, defaultClusterCIDR)
	setDefault(&c.TraceBuffer, defaultTraceBuffer)
	setDefault(&c.WebhookLogSize, defaultWebhookLogSize)
	if c.Node == nil {
		c.Node = new(true)
	}
	if c.Trace == nil {
		c.Trace = new(true)
	}
	if c.AuditInterval == nil {
		c.AuditInterval = &metav1.Duration{Duration: defaultAuditInterval}
	}
	if c.ExternalDataCacheTTL == nil {
		c.ExternalDataCacheTTL = &metav1.Duration{Duration: defaultExternalDataCacheTTL}
	}
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// expandPaths expands a leading ~ in every field that names a local file.
func (c *Config) expandPaths() {
	for _, p := range []*string{&c.DataDir, &c.Policies, &c.TraceFile, &c.WebhookLogFile, &c.WebhookStubs, &c.Etcd.CAFile, &c.Etcd.CertFile, &c.Etcd.KeyFile} {
		*p = expandHome(*p)
	}
}

// expandHome expands "~" and "~/..." to the user's home directory. Shells
// do not do it for us in --flag=~/dir or in config files. If the home
// directory is unknown the path is returned unchanged.
func expandHome(path string) string {
	if path != "~" && !strings.HasPrefix(path, "~/") {
		return path
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return path
	}
	return filepath.Join(home, path[1:])
}

// clone returns a deep copy, so callers never share slices or Node.
func (c *Config) clone() *Config {
	out := *c
	out.Etcd.Servers = slices.Clone(c.Etcd.Servers)
	out.KubeAPIServerArgs = slices.Clone(c.KubeAPIServerArgs)
	out.KubeControllerManagerArgs = slices.Clone(c.KubeControllerManagerArgs)
	out.KubeSchedulerArgs = slices.Clone(c.KubeSchedulerArgs)
	if c.Node != nil {
		out.Node = new(*c.Node)
	}
	if c.Trace != nil {
		out.Trace = new(*c.Trace)
	}
	if c.AuditInterval != nil {
		out.AuditInterval = &metav1.Duration{Duration: c.AuditInterval.Duration}
	}
	if c.ExternalDataCacheTTL != nil {
		out.ExternalDataCacheTTL = &metav1.Duration{Duration: c.ExternalDataCacheTTL.Duration}
	}
	return &out
}

// Load reads and parses the config file at path (a leading ~ is expanded).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(expandHome(path))
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes a YAML or JSON config strictly and fills in defaults. source
// names the input in error messages, usually the file path.
func Parse(data []byte, source string) (*Config, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: empty config file", source)
	}
	// The strict variant, because YAMLToJSON silently keeps one of two
	// duplicate keys, so json.UnmarshalStrict would never see them.
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if string(js) == "null" { // only comments or "---"
		return nil, fmt.Errorf("%s: empty config file", source)
	}

	c := &Config{}
	strictErrs, err := json.UnmarshalStrict(js, c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	// Check the type first: unknown fields in a file of another kind are
	// noise.
	if errs := c.typeErrors(); len(errs) > 0 {
		return nil, prefixErrors(source, errs)
	}
	if len(strictErrs) > 0 {
		return nil, prefixErrors(source, strictErrs)
	}

	c.applyDefaults()
	c.expandPaths()
	return c, nil
}

func (c *Config) typeErrors() []error {
	var errs []error
	for _, f := range []struct{ name, got, want string }{
		{"apiVersion", c.APIVersion, APIVersion},
		{"kind", c.Kind, Kind},
	} {
		switch f.got {
		case f.want:
		case "":
			errs = append(errs, fmt.Errorf("%s is missing, expected %q", f.name, f.want))
		default:
			errs = append(errs, fmt.Errorf("%s is %q, expected %q", f.name, f.got, f.want))
		}
	}
	return errs
}

func prefixErrors(source string, errs []error) error {
	out := make([]error, len(errs))
	for i, err := range errs {
		out[i] = fmt.Errorf("%s: %w", source, err)
	}
	return errors.Join(out...)
}

// Validate reports every invalid setting at once, each with its field path.
func (c *Config) Validate() error {
	var errs field.ErrorList
	if c.DataDir == "" {
		errs = append(errs, field.Required(field.NewPath("dataDir"), ""))
	}
	errs = append(errs, validation.IsValidIP(field.NewPath("bindAddress"), c.BindAddress)...)
	errs = append(errs, c.validatePorts()...)
	if c.TraceBuffer < 0 {
		errs = append(errs, field.Invalid(field.NewPath("traceBuffer"), c.TraceBuffer, "must be positive"))
	}
	if c.WebhookLogSize < 0 {
		errs = append(errs, field.Invalid(field.NewPath("webhookLogSize"), c.WebhookLogSize, "must be positive"))
	}
	if c.AuditEvery() < 0 {
		errs = append(errs, field.Invalid(field.NewPath("auditInterval"), c.AuditEvery().String(), "must be 0 (no audit) or positive"))
	}
	if c.ExternalDataCache() < 0 {
		errs = append(errs, field.Invalid(field.NewPath("externalDataProviderResponseCacheTTL"), c.ExternalDataCache().String(), "must be 0 (no cache) or positive"))
	}
	for i, ns := range c.ExemptNamespaces {
		name := strings.TrimSuffix(strings.TrimPrefix(ns, "*"), "*")
		if strings.HasPrefix(ns, "*") && strings.HasSuffix(ns, "*") || name == "" {
			errs = append(errs, field.Invalid(field.NewPath("exemptNamespaces").Index(i), ns, `a namespace name, or a prefix ending in "*" or a suffix starting with "*"`))
			continue
		}
		// A prefix or suffix need not be a whole name, but holds only
		// what names hold.
		if msgs := validation.IsDNS1123Label(strings.Trim(name, "-")); len(msgs) > 0 && strings.Trim(name, "-") != "" {
			errs = append(errs, field.Invalid(field.NewPath("exemptNamespaces").Index(i), ns, strings.Join(msgs, "; ")))
		}
	}
	if !slices.Contains(runtimes, c.Runtime) {
		errs = append(errs, field.NotSupported(field.NewPath("runtime"), c.Runtime, runtimes))
	}
	errs = append(errs, validation.IsValidCIDR(field.NewPath("serviceCIDR"), c.ServiceCIDR)...)
	errs = append(errs, validation.IsValidCIDR(field.NewPath("clusterCIDR"), c.ClusterCIDR)...)
	errs = append(errs, c.Etcd.validate(field.NewPath("etcd"))...)
	errs = append(errs, validateArgs(field.NewPath("kubeAPIServerArgs"), c.KubeAPIServerArgs)...)
	errs = append(errs, validateArgs(field.NewPath("kubeControllerManagerArgs"), c.KubeControllerManagerArgs)...)
	errs = append(errs, validateArgs(field.NewPath("kubeSchedulerArgs"), c.KubeSchedulerArgs)...)
	return errs.ToAggregate()
}

// validatePorts checks ranges of all ports, and that the ports Gatehouse
// will actually listen on do not collide.
func (c *Config) validatePorts() field.ErrorList {
	etcd := field.NewPath("etcd")
	ports := []struct {
		path      *field.Path
		port      int
		listening bool
	}{
		{field.NewPath("apiPort"), c.APIPort, true},
		{field.NewPath("controllerManagerPort"), c.ControllerManagerPort, true},
		{field.NewPath("schedulerPort"), c.SchedulerPort, true},
		{field.NewPath("kubeletPort"), c.KubeletPort, true},
		{etcd.Child("clientPort"), c.Etcd.ClientPort, c.Etcd.Embedded()},
		{etcd.Child("peerPort"), c.Etcd.PeerPort, c.Etcd.Embedded()},
	}

	var errs field.ErrorList
	usedBy := map[int]*field.Path{}
	for _, p := range ports {
		if msgs := validation.IsValidPortNum(p.port); len(msgs) > 0 {
			for _, msg := range msgs {
				errs = append(errs, field.Invalid(p.path, p.port, msg))
			}
			continue
		}
		if !p.listening {
			continue
		}
		if other, ok := usedBy[p.port]; ok {
			errs = append(errs, field.Invalid(p.path, p.port, "already used by "+other.String()))
			continue
		}
		usedBy[p.port] = p.path
	}
	return errs
}

func (e *Etcd) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, s := range e.Servers {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, field.Invalid(path.Child("servers").Index(i), s,
				"must be an http:// or https:// URL with a host, e.g. https://10.0.0.1:2379"))
		}
	}
	// A client certificate is useless without its key and vice versa.
	switch {
	case e.CertFile != "" && e.KeyFile == "":
		errs = append(errs, field.Required(path.Child("keyFile"), "must be set when certFile is set"))
	case e.CertFile == "" && e.KeyFile != "":
		errs = append(errs, field.Required(path.Child("certFile"), "must be set when keyFile is set"))
	}
	return errs
}

func validateArgs(path *field.Path, args []string) field.ErrorList {
	var errs field.ErrorList
	for i, arg := range args {
		if _, _, problem := splitArg(arg); problem != "" {
			errs = append(errs, field.Invalid(path.Index(i), arg, problem))
		}
	}
	return errs
}

// SplitArg splits a passthrough component argument: "--key=value" and
// "key=value" give (key, value); a bare "--key" or "key" gives (key, "true").
// Only the first "=" separates, so values may contain "=".
func SplitArg(arg string) (key, value string, err error) {
	key, value, problem := splitArg(arg)
	if problem != "" {
		return "", "", fmt.Errorf("invalid argument %q: %s", arg, problem)
	}
	return key, value, nil
}

// splitArg returns a problem description rather than an error so Validate
// can report it without repeating the argument.
func splitArg(arg string) (key, value, problem string) {
	key, value, hasValue := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
	switch {
	case key == "":
		return "", "", "flag name must not be empty"
	case strings.HasPrefix(key, "-"):
		return "", "", `flag name must not start with "-" (use "--name=value" or "name=value")`
	}
	if !hasValue {
		value = "true"
	}
	return key, value, ""
}
