package config

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

const header = "apiVersion: gatehouse.dev/v1alpha1\nkind: Config\n"

// setHome points ~ at a fresh directory so expansion is deterministic.
func setHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	return home
}

// defaultsWith returns Default() modified by mutate.
func defaultsWith(mutate func(c *Config)) *Config {
	c := Default()
	if mutate != nil {
		mutate(c)
	}
	return c
}

func TestDefault(t *testing.T) {
	home := setHome(t)
	want := &Config{
		APIVersion:            APIVersion,
		Kind:                  Kind,
		DataDir:               filepath.Join(home, ".gatehouse"),
		BindAddress:           "127.0.0.1",
		APIPort:               6443,
		Etcd:                  Etcd{ClientPort: 2379, PeerPort: 2380},
		AuditInterval:         &metav1.Duration{Duration: 60 * time.Second},
		ExternalDataCacheTTL:  &metav1.Duration{Duration: 3 * time.Minute},
		Trace:                 new(true),
		TraceBuffer:           10000,
		WebhookLogSize:        1000,
		ControllerManagerPort: 10257,
		SchedulerPort:         10259,
		KubeletPort:           10250,
		Node:                  new(true),
		Runtime:               "auto",
		ServiceCIDR:           "10.96.0.0/12",
		ClusterCIDR:           "10.244.0.0/16",
	}
	got := Default()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Default() mismatch (-want +got):\n%s", diff)
	}
	if got.DataDir != DefaultDataDir() {
		t.Errorf("DataDir = %q, DefaultDataDir() = %q", got.DataDir, DefaultDataDir())
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestNodeEnabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		node *bool
		want bool
	}{
		{"unset", nil, true},
		{"true", new(true), true},
		{"false", new(false), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (&Config{Node: tc.node}).NodeEnabled(); got != tc.want {
				t.Errorf("NodeEnabled() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	home := setHome(t)
	for _, tc := range []struct {
		name    string
		input   string
		want    func(c *Config) // applied to Default(); nil means Default()
		wantErr string          // exact error message
	}{
		{
			name:  "minimal file gets all defaults",
			input: header,
		},
		{
			name:  "set fields kept, others defaulted",
			input: header + "apiPort: 7443\netcd:\n  peerPort: 3380\nnode: false\n",
			want: func(c *Config) {
				c.APIPort = 7443
				c.Etcd.PeerPort = 3380
				c.Node = new(false)
			},
		},
		{
			name:  "audit interval",
			input: header + "auditInterval: 5m\n",
			want:  func(c *Config) { c.AuditInterval = &metav1.Duration{Duration: 5 * time.Minute} },
		},
		{
			name:  "audit interval 0 disables, and survives defaulting",
			input: header + "auditInterval: 0s\n",
			want:  func(c *Config) { c.AuditInterval = &metav1.Duration{} },
		},
		{
			name:  "JSON is accepted",
			input: `{"apiVersion": "gatehouse.dev/v1alpha1", "kind": "Config", "runtime": "simulated"}`,
			want:  func(c *Config) { c.Runtime = "simulated" },
		},
		{
			name:  "tilde expanded in paths",
			input: header + "dataDir: ~/state\npolicies: ~/policies\netcd:\n  caFile: ~/ca.crt\n",
			want: func(c *Config) {
				c.DataDir = filepath.Join(home, "state")
				c.Policies = filepath.Join(home, "policies")
				c.Etcd.CAFile = filepath.Join(home, "ca.crt")
			},
		},
		{
			name:    "empty file",
			input:   "  \n",
			wantErr: "gatehouse.yaml: empty config file",
		},
		{
			name:    "only comments",
			input:   "# nothing here\n",
			wantErr: "gatehouse.yaml: empty config file",
		},
		{
			name:    "unknown top-level field",
			input:   header + "apiPrt: 7443\n",
			wantErr: `gatehouse.yaml: unknown field "apiPrt"`,
		},
		{
			name:    "unknown nested field has full path",
			input:   header + "etcd:\n  clientPrt: 2379\n",
			wantErr: `gatehouse.yaml: unknown field "etcd.clientPrt"`,
		},
		{
			name:    "every unknown field reported",
			input:   header + "apiPrt: 1\netcd:\n  clientPrt: 2\n",
			wantErr: "gatehouse.yaml: unknown field \"apiPrt\"\ngatehouse.yaml: unknown field \"etcd.clientPrt\"",
		},
		{
			name:    "duplicate field",
			input:   header + "apiPort: 1\napiPort: 2\n",
			wantErr: "gatehouse.yaml: yaml: unmarshal errors:\n  line 4: key \"apiPort\" already set in map",
		},
		{
			name:    "wrong apiVersion",
			input:   "apiVersion: gatehouse.dev/v1\nkind: Config\n",
			wantErr: `gatehouse.yaml: apiVersion is "gatehouse.dev/v1", expected "gatehouse.dev/v1alpha1"`,
		},
		{
			name:    "wrong kind",
			input:   "apiVersion: gatehouse.dev/v1alpha1\nkind: Cluster\n",
			wantErr: `gatehouse.yaml: kind is "Cluster", expected "Config"`,
		},
		{
			name:    "missing apiVersion and kind",
			input:   "apiPort: 7443\n",
			wantErr: "gatehouse.yaml: apiVersion is missing, expected \"gatehouse.dev/v1alpha1\"\ngatehouse.yaml: kind is missing, expected \"Config\"",
		},
		{
			name:    "type checked before unknown fields",
			input:   "apiVersion: v1\nkind: Pod\nspec: {}\n",
			wantErr: "gatehouse.yaml: apiVersion is \"v1\", expected \"gatehouse.dev/v1alpha1\"\ngatehouse.yaml: kind is \"Pod\", expected \"Config\"",
		},
		{
			name:    "YAML syntax error names the line",
			input:   header + "etcd:\n  servers: [a\n",
			wantErr: "gatehouse.yaml: yaml: line 4: did not find expected ',' or ']'",
		},
		{
			name:    "wrong type",
			input:   header + "apiPort: high\n",
			wantErr: "gatehouse.yaml: json: cannot unmarshal string into Go struct field Config.apiPort of type int",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.input), "gatehouse.yaml")
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Parse() error = %v\nwant %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if diff := cmp.Diff(defaultsWith(tc.want), got); diff != "" {
				t.Errorf("Parse() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func fullConfig(home string) *Config {
	return &Config{
		APIVersion:  APIVersion,
		Kind:        Kind,
		DataDir:     filepath.Join(home, "gatehouse-state"),
		BindAddress: "0.0.0.0",
		APIPort:     7443,
		Policies:    "/etc/gatehouse/policies",
		Etcd: Etcd{
			Servers:    []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"},
			CAFile:     "/etc/etcd/ca.crt",
			CertFile:   filepath.Join(home, "etcd/client.crt"),
			KeyFile:    filepath.Join(home, "etcd/client.key"),
			ClientPort: 12379,
			PeerPort:   12380,
		},
		ControllerManagerPort:    11257,
		SchedulerPort:            11259,
		KubeletPort:              11250,
		Node:                     new(false),
		Runtime:                  "cri",
		ContainerRuntimeEndpoint: "unix:///run/containerd/containerd.sock",
		ServiceCIDR:              "10.100.0.0/16",
		ClusterCIDR:              "10.200.0.0/16",
		KubeAPIServerArgs: []string{
			"--v=2",
			"audit-log-maxage=30",
			"--enable-admission-plugins=NodeRestriction,PodSecurity",
		},
		KubeControllerManagerArgs: []string{"--node-monitor-grace-period=20s"},
		KubeSchedulerArgs:         []string{"--profiling"},
		// Not in the file: the defaults.
		AuditInterval:        &metav1.Duration{Duration: 60 * time.Second},
		ExternalDataCacheTTL: &metav1.Duration{Duration: 3 * time.Minute},
		Trace:                new(true),
		TraceBuffer:          10000,
		WebhookLogSize:       1000,
	}
}

func TestFullFileRoundTrips(t *testing.T) {
	home := setHome(t)
	got, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if diff := cmp.Diff(fullConfig(home), got); diff != "" {
		t.Fatalf("Load() mismatch (-want +got):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}

	data, err := yaml.Marshal(got)
	if err != nil {
		t.Fatalf("yaml.Marshal() error = %v", err)
	}
	again, err := Parse(data, "marshalled")
	if err != nil {
		t.Fatalf("Parse(marshalled) error = %v\n%s", err, data)
	}
	if diff := cmp.Diff(got, again); diff != "" {
		t.Errorf("round trip mismatch (-first +second):\n%s", diff)
	}
}

func TestLoad(t *testing.T) {
	home := setHome(t)
	if err := os.WriteFile(filepath.Join(home, "gatehouse.yaml"), []byte(header+"apiPort: 7443\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		path     string
		wantPort int
		wantErr  string // substring
	}{
		{name: "tilde path", path: "~/gatehouse.yaml", wantPort: 7443},
		{name: "missing file names the path", path: "testdata/nope.yaml", wantErr: "testdata/nope.yaml"},
		{name: "parse errors name the path", path: "testdata/full.yaml/x", wantErr: "testdata/full.yaml/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Load(tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load() error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load() error = %v", err)
			}
			if got.APIPort != tc.wantPort {
				t.Errorf("APIPort = %d, want %d", got.APIPort, tc.wantPort)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	setHome(t)
	for _, tc := range []struct {
		name       string
		mutate     func(c *Config)
		wantFields []string
		wantDetail string // substring of the first error's detail
	}{
		{name: "defaults are valid", mutate: func(c *Config) {}},
		{
			name:       "empty dataDir",
			mutate:     func(c *Config) { c.DataDir = "" },
			wantFields: []string{"dataDir"},
		},
		{
			name:   "exempt namespaces: names, prefixes and suffixes",
			mutate: func(c *Config) { c.ExemptNamespaces = []string{"kube-system", "kube-*", "*-system", "team-a"} },
		},
		{
			name:       "exempt namespaces: a bad name and a glob on both ends",
			mutate:     func(c *Config) { c.ExemptNamespaces = []string{"Kube_System", "*x*"} },
			wantFields: []string{"exemptNamespaces[0]", "exemptNamespaces[1]"},
		},
		{
			name:       "port zero",
			mutate:     func(c *Config) { c.APIPort = 0 },
			wantFields: []string{"apiPort"},
			wantDetail: "between 1 and 65535",
		},
		{
			name:       "port too high",
			mutate:     func(c *Config) { c.Etcd.ClientPort = 65536 },
			wantFields: []string{"etcd.clientPort"},
		},
		{
			name: "port range checked for external etcd too",
			mutate: func(c *Config) {
				c.Etcd.Servers = []string{"https://etcd:2379"}
				c.Etcd.PeerPort = -1
			},
			wantFields: []string{"etcd.peerPort"},
		},
		{
			name:       "duplicate port names both fields",
			mutate:     func(c *Config) { c.SchedulerPort = c.APIPort },
			wantFields: []string{"schedulerPort"},
			wantDetail: "already used by apiPort",
		},
		{
			name:       "embedded etcd ports must be distinct",
			mutate:     func(c *Config) { c.Etcd.PeerPort = c.KubeletPort },
			wantFields: []string{"etcd.peerPort"},
			wantDetail: "already used by kubeletPort",
		},
		{
			name: "external etcd ports may collide",
			mutate: func(c *Config) {
				c.Etcd.Servers = []string{"https://etcd:2379"}
				c.Etcd.ClientPort = c.APIPort
			},
		},
		{
			name:   "audit disabled",
			mutate: func(c *Config) { c.AuditInterval = &metav1.Duration{} },
		},
		{
			name:       "negative audit interval",
			mutate:     func(c *Config) { c.AuditInterval = &metav1.Duration{Duration: -time.Second} },
			wantFields: []string{"auditInterval"},
			wantDetail: "must be 0 (no audit) or positive",
		},
		{
			name:       "negative external data cache TTL",
			mutate:     func(c *Config) { c.ExternalDataCacheTTL = &metav1.Duration{Duration: -time.Second} },
			wantFields: []string{"externalDataProviderResponseCacheTTL"},
			wantDetail: "must be 0 (no cache) or positive",
		},
		{
			name:       "bindAddress not an IP",
			mutate:     func(c *Config) { c.BindAddress = "localhost" },
			wantFields: []string{"bindAddress"},
		},
		{
			name:       "unknown runtime",
			mutate:     func(c *Config) { c.Runtime = "docker" },
			wantFields: []string{"runtime"},
		},
		{
			name:       "serviceCIDR without prefix",
			mutate:     func(c *Config) { c.ServiceCIDR = "10.96.0.0" },
			wantFields: []string{"serviceCIDR"},
		},
		{
			name:       "clusterCIDR with host bits",
			mutate:     func(c *Config) { c.ClusterCIDR = "10.244.0.1/16" },
			wantFields: []string{"clusterCIDR"},
		},
		{
			name:       "etcd server without scheme",
			mutate:     func(c *Config) { c.Etcd.Servers = []string{"https://ok:2379", "etcd:2379"} },
			wantFields: []string{"etcd.servers[1]"},
		},
		{
			name:       "etcd server with wrong scheme",
			mutate:     func(c *Config) { c.Etcd.Servers = []string{"unix:///run/etcd.sock"} },
			wantFields: []string{"etcd.servers[0]"},
		},
		{
			name:       "etcd server without host",
			mutate:     func(c *Config) { c.Etcd.Servers = []string{"https://"} },
			wantFields: []string{"etcd.servers[0]"},
		},
		{
			name:       "etcd certFile without keyFile",
			mutate:     func(c *Config) { c.Etcd.CertFile = "/c.crt" },
			wantFields: []string{"etcd.keyFile"},
		},
		{
			name:       "etcd keyFile without certFile",
			mutate:     func(c *Config) { c.Etcd.KeyFile = "/c.key" },
			wantFields: []string{"etcd.certFile"},
		},
		{
			name:   "valid passthrough args",
			mutate: func(c *Config) { c.KubeAPIServerArgs = []string{"--v=2", "v=2", "--profiling", "profiling", "--x="} },
		},
		{
			name:       "passthrough arg with extra dash",
			mutate:     func(c *Config) { c.KubeAPIServerArgs = []string{"--v=2", "profiling", "---v=3"} },
			wantFields: []string{"kubeAPIServerArgs[2]"},
			wantDetail: `must not start with "-"`,
		},
		{
			name:       "passthrough arg with single dash",
			mutate:     func(c *Config) { c.KubeControllerManagerArgs = []string{"-v=3"} },
			wantFields: []string{"kubeControllerManagerArgs[0]"},
		},
		{
			name:       "passthrough arg without key",
			mutate:     func(c *Config) { c.KubeSchedulerArgs = []string{"--=3", "--"} },
			wantFields: []string{"kubeSchedulerArgs[0]", "kubeSchedulerArgs[1]"},
			wantDetail: "must not be empty",
		},
		{
			name: "all problems reported together",
			mutate: func(c *Config) {
				c.DataDir = ""
				c.APIPort = 0
				c.Runtime = "docker"
			},
			wantFields: []string{"apiPort", "dataDir", "runtime"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := defaultsWith(tc.mutate).Validate()
			if len(tc.wantFields) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			agg, ok := err.(utilerrors.Aggregate)
			if !ok {
				t.Fatalf("Validate() = %v (%T), want an Aggregate", err, err)
			}
			var fields []string
			var first *field.Error
			for _, e := range agg.Errors() {
				fe, ok := e.(*field.Error)
				if !ok {
					t.Fatalf("error %v is %T, want *field.Error", e, e)
				}
				if first == nil {
					first = fe
				}
				fields = append(fields, fe.Field)
			}
			slices.Sort(fields)
			if diff := cmp.Diff(tc.wantFields, fields); diff != "" {
				t.Errorf("Validate() fields mismatch (-want +got):\n%s\nerror: %v", diff, err)
			}
			if tc.wantDetail != "" && !strings.Contains(first.Detail, tc.wantDetail) {
				t.Errorf("detail = %q, want it to contain %q", first.Detail, tc.wantDetail)
			}
		})
	}
}

func TestSplitArg(t *testing.T) {
	for _, tc := range []struct {
		arg, key, value string
		wantErr         bool
	}{
		{arg: "--v=2", key: "v", value: "2"},
		{arg: "v=2", key: "v", value: "2"},
		{arg: "--profiling", key: "profiling", value: "true"},
		{arg: "profiling", key: "profiling", value: "true"},
		{arg: "--empty=", key: "empty", value: ""},
		{arg: "--feature-gates=A=true,B=false", key: "feature-gates", value: "A=true,B=false"},
		{arg: "", wantErr: true},
		{arg: "--", wantErr: true},
		{arg: "=x", wantErr: true},
		{arg: "-v=2", wantErr: true},
		{arg: "---v=2", wantErr: true},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			key, value, err := SplitArg(tc.arg)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("SplitArg(%q) = %q, %q, want error", tc.arg, key, value)
				}
				return
			}
			if err != nil || key != tc.key || value != tc.value {
				t.Errorf("SplitArg(%q) = %q, %q, %v, want %q, %q", tc.arg, key, value, err, tc.key, tc.value)
			}
		})
	}
}

// resolve registers the flags on a fresh FlagSet, parses args and resolves
// against file content written to a temporary gatehouse.yaml ("" = no file).
func resolve(t *testing.T, args []string, file string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	flagValues := &Config{}
	AddFlags(fs, flagValues)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("Parse(%q) error = %v", args, err)
	}
	path := ""
	if file != "" {
		path = filepath.Join(t.TempDir(), "gatehouse.yaml")
		if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Resolve(fs, flagValues, path)
}

func TestResolve(t *testing.T) {
	home := setHome(t)
	for _, tc := range []struct {
		name string
		args []string
		file string
		want func(c *Config) // applied to Default()
	}{
		{
			name: "no file, no flags: defaults",
		},
		{
			name: "no file: flags",
			args: []string{"--api-port=7000", "--node=false", "--etcd-servers=https://a:2379,https://b:2379"},
			want: func(c *Config) {
				c.APIPort = 7000
				c.Node = new(false)
				c.Etcd.Servers = []string{"https://a:2379", "https://b:2379"}
			},
		},
		{
			name: "file value used when flag not changed",
			file: header + "apiPort: 7443\nbindAddress: 0.0.0.0\nnode: false\nkubeAPIServerArgs: [--v=2]\n",
			want: func(c *Config) {
				c.APIPort = 7443
				c.BindAddress = "0.0.0.0"
				c.Node = new(false)
				c.KubeAPIServerArgs = []string{"--v=2"}
			},
		},
		{
			name: "changed flag overrides file",
			args: []string{"--api-port=7000"},
			file: header + "apiPort: 7443\nschedulerPort: 7444\n",
			want: func(c *Config) {
				c.APIPort = 7000
				c.SchedulerPort = 7444
			},
		},
		{
			name: "flag set to its default still overrides file",
			args: []string{"--api-port=6443", "--node=true"},
			file: header + "apiPort: 7443\nnode: false\n",
		},
		{
			name: "repeated arg flag replaces file list",
			args: []string{"--kube-apiserver-arg=--v=4", "--kube-apiserver-arg=profiling"},
			file: header + "kubeAPIServerArgs: [--v=2, --audit-log-maxage=30]\n",
			want: func(c *Config) { c.KubeAPIServerArgs = []string{"--v=4", "profiling"} },
		},
		{
			name: "tilde expanded in flags",
			args: []string{"--data-dir=~/flag-state", "--etcd-keyfile", "~/k.key"},
			want: func(c *Config) {
				c.DataDir = filepath.Join(home, "flag-state")
				c.Etcd.KeyFile = filepath.Join(home, "k.key")
			},
		},
		{
			name: "tilde expanded in file",
			file: header + "dataDir: ~/file-state\npolicies: ~/pol\n",
			want: func(c *Config) {
				c.DataDir = filepath.Join(home, "file-state")
				c.Policies = filepath.Join(home, "pol")
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolve(t, tc.args, tc.file)
			if err != nil {
				t.Fatalf("Resolve() error = %v", err)
			}
			if diff := cmp.Diff(defaultsWith(tc.want), got); diff != "" {
				t.Errorf("Resolve() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// Callers may edit the resolved Config; that must not leak into the flag
// values (or vice versa).
func TestResolveReturnsCopy(t *testing.T) {
	setHome(t)
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	flagValues := &Config{}
	AddFlags(fs, flagValues)
	if err := fs.Parse([]string{"--etcd-servers=https://a:2379", "--kube-scheduler-arg=v=2"}); err != nil {
		t.Fatal(err)
	}
	want := defaultsWith(func(c *Config) {
		c.Etcd.Servers = []string{"https://a:2379"}
		c.KubeSchedulerArgs = []string{"v=2"}
	})
	got, err := Resolve(fs, flagValues, "")
	if err != nil {
		t.Fatal(err)
	}
	got.Etcd.Servers[0] = "changed"
	got.KubeSchedulerArgs[0] = "changed"
	*got.Node = false
	if diff := cmp.Diff(want, flagValues); diff != "" {
		t.Errorf("editing the result changed flagValues (-want +got):\n%s", diff)
	}
}

func TestResolveErrors(t *testing.T) {
	setHome(t)
	if _, err := resolve(t, nil, header+"apiPrt: 1\n"); err == nil || !strings.Contains(err.Error(), `unknown field "apiPrt"`) {
		t.Errorf("Resolve() error = %v, want unknown field", err)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c := &Config{}
	AddFlags(fs, c)
	if _, err := Resolve(fs, c, "testdata/missing.yaml"); err == nil || !strings.Contains(err.Error(), "testdata/missing.yaml") {
		t.Errorf("Resolve() error = %v, want it to name the path", err)
	}
}

// flagFields maps every flag to the field (JSON path) it sets.
var flagFields = map[string]string{
	"data-dir":       "dataDir",
	"bind-address":   "bindAddress",
	"api-port":       "apiPort",
	"audit-interval": "auditInterval",
	"external-data-provider-response-cache-ttl": "externalDataProviderResponseCacheTTL",
	"trace-buffer":                "traceBuffer",
	"trace":                       "trace",
	"trace-file":                  "traceFile",
	"webhook-log-size":            "webhookLogSize",
	"webhook-log-file":            "webhookLogFile",
	"policies":                    "policies",
	"etcd-servers":                "etcd.servers",
	"exempt-namespace":            "exemptNamespaces",
	"etcd-cafile":                 "etcd.caFile",
	"etcd-certfile":               "etcd.certFile",
	"etcd-keyfile":                "etcd.keyFile",
	"etcd-client-port":            "etcd.clientPort",
	"etcd-peer-port":              "etcd.peerPort",
	"controller-manager-port":     "controllerManagerPort",
	"scheduler-port":              "schedulerPort",
	"kubelet-port":                "kubeletPort",
	"node":                        "node",
	"runtime":                     "runtime",
	"container-runtime-endpoint":  "containerRuntimeEndpoint",
	"service-cidr":                "serviceCIDR",
	"cluster-cidr":                "clusterCIDR",
	"kube-apiserver-arg":          "kubeAPIServerArgs",
	"kube-controller-manager-arg": "kubeControllerManagerArgs",
	"kube-scheduler-arg":          "kubeSchedulerArgs",
}

// TestEveryFlagOverridesItsField checks each row of flagSpecs: setting one
// flag must change exactly its own field, and must do so over a config
// file too. A row bound to the wrong field, or copying nothing, fails here.
func TestEveryFlagOverridesItsField(t *testing.T) {
	setHome(t)
	values := map[string]string{
		"int":         "4242",
		"string":      "/somewhere",
		"bool":        "false",
		"stringSlice": "https://x:2379",
		"stringArray": "--v=9",
		"duration":    "90s",
	}
	fs := pflag.NewFlagSet("probe", pflag.ContinueOnError)
	AddFlags(fs, &Config{})
	fs.VisitAll(func(f *pflag.Flag) {
		t.Run(f.Name, func(t *testing.T) {
			value, ok := values[f.Value.Type()]
			if !ok {
				t.Fatalf("no test value for flag type %q", f.Value.Type())
			}
			args := []string{"--" + f.Name + "=" + value}
			withoutFile, err := resolve(t, args, "")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{flagFields[f.Name]}, changedFields(t, Default(), withoutFile)); diff != "" {
				t.Errorf("fields changed by --%s (-want +got):\n%s", f.Name, diff)
			}
			// The file holds only defaults, so it must not matter.
			withFile, err := resolve(t, args, header)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(withoutFile, withFile); diff != "" {
				t.Errorf("flag not copied over the file (-flags only +with file):\n%s", diff)
			}
		})
	})
}

// changedFields returns the JSON paths of the leaf fields that differ.
func changedFields(t *testing.T, a, b *Config) []string {
	t.Helper()
	fa, fb := flatten(t, a), flatten(t, b)
	var changed []string
	for k := range fa {
		if _, ok := fb[k]; !ok {
			changed = append(changed, k)
		}
	}
	for k, v := range fb {
		if w, ok := fa[k]; !ok || w != v {
			changed = append(changed, k)
		}
	}
	slices.Sort(changed)
	return changed
}

func flatten(t *testing.T, c *Config) map[string]string {
	t.Helper()
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if obj, ok := v.(map[string]any); ok {
			for k, child := range obj {
				walk(strings.TrimPrefix(prefix+"."+k, "."), child)
			}
			return
		}
		out[prefix] = fmt.Sprint(v)
	}
	walk("", m)
	return out
}

func TestAddFlags(t *testing.T) {
	setHome(t)
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c := &Config{APIPort: 1} // overwritten: defaults come from Default()
	AddFlags(fs, c)

	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		names = append(names, f.Name)
		if !strings.HasSuffix(f.Usage, ".") {
			t.Errorf("--%s usage %q is not a sentence", f.Name, f.Usage)
		}
	})
	want := []string{
		"api-port", "audit-interval", "bind-address", "cluster-cidr", "container-runtime-endpoint",
		"controller-manager-port", "data-dir", "etcd-cafile", "etcd-certfile",
		"etcd-client-port", "etcd-keyfile", "etcd-peer-port", "etcd-servers",
		"exempt-namespace", "external-data-provider-response-cache-ttl", "kube-apiserver-arg", "kube-controller-manager-arg", "kube-scheduler-arg",
		"kubelet-port", "node", "policies", "runtime", "scheduler-port",
		"service-cidr", "trace", "trace-buffer", "trace-file",
		"webhook-log-file", "webhook-log-size",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("flag names mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Default(), c); diff != "" {
		t.Errorf("flag values before parsing differ from Default() (-want +got):\n%s", diff)
	}

	usage := fs.FlagUsages()
	for _, s := range []string{
		"--api-port int", "(default 6443)",
		"--node", "(default true)",
		`--runtime string`, `(default "auto")`,
		`--data-dir string`, `(default "` + DefaultDataDir() + `")`,
		"--kube-apiserver-arg stringArray",
		"--audit-interval duration", "(default 1m0s)",
	} {
		if !strings.Contains(usage, s) {
			t.Errorf("usage lacks %q:\n%s", s, usage)
		}
	}
}

func TestAddDataDirFlag(t *testing.T) {
	home := setHome(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"default", nil, filepath.Join(home, ".gatehouse")},
		{"absolute", []string{"--data-dir=/var/lib/gatehouse"}, "/var/lib/gatehouse"},
		{"tilde", []string{"--data-dir=~/x"}, filepath.Join(home, "x")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			var dir string
			AddDataDirFlag(fs, &dir)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if dir != tc.want {
				t.Errorf("data dir = %q, want %q", dir, tc.want)
			}
			if got := fs.Lookup("data-dir").Usage; got != dataDirUsage {
				t.Errorf("usage = %q, want the AddFlags usage", got)
			}
		})
	}
}

func TestAuditEvery(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval *metav1.Duration
		want     time.Duration
	}{
		{"unset is Gatekeeper's default", nil, 60 * time.Second},
		{"set", &metav1.Duration{Duration: 5 * time.Minute}, 5 * time.Minute},
		{"0 disables", &metav1.Duration{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (&Config{AuditInterval: tc.interval}).AuditEvery(); got != tc.want {
				t.Errorf("AuditEvery() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAuditIntervalFlag(t *testing.T) {
	setHome(t)
	for _, tc := range []struct {
		name    string
		args    []string
		file    string
		want    time.Duration
		wantErr bool
	}{
		{name: "default", want: 60 * time.Second},
		{name: "bare number is seconds, as in Gatekeeper", args: []string{"--audit-interval=90"}, want: 90 * time.Second},
		{name: "duration", args: []string{"--audit-interval=5m"}, want: 5 * time.Minute},
		{name: "0 disables", args: []string{"--audit-interval=0"}, want: 0},
		{name: "file value", file: header + "auditInterval: 10s\n", want: 10 * time.Second},
		{name: "flag over file", args: []string{"--audit-interval=0"}, file: header + "auditInterval: 10s\n", want: 0},
		{name: "not a duration", args: []string{"--audit-interval=soon"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			fs.SetOutput(io.Discard)
			flagValues := &Config{}
			AddFlags(fs, flagValues)
			err := fs.Parse(tc.args)
			if tc.wantErr {
				if err == nil {
					t.Fatal("Parse succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			path := ""
			if tc.file != "" {
				path = filepath.Join(t.TempDir(), "gatehouse.yaml")
				if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := Resolve(fs, flagValues, path)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.AuditEvery(); got != tc.want {
				t.Errorf("AuditEvery() = %v, want %v", got, tc.want)
			}
		})
	}
}
