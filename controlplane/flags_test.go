package controlplane

import (
	"slices"
	"strings"
	"testing"

	cliflag "k8s.io/component-base/cli/flag"
)

func TestFlagMapArgs(t *testing.T) {
	defaults := flagMap{"b": "2", "a": "1", "leader-elect": "false"}
	tests := []struct {
		name        string
		passthrough []string
		want        []string
		wantErr     string
	}{
		{name: "defaults sorted", want: []string{"--a=1", "--b=2", "--leader-elect=false"}},
		{name: "user replaces a default", passthrough: []string{"b=9"}, want: []string{"--a=1", "--leader-elect=false", "--b=9"}},
		{name: "dashes and bare booleans", passthrough: []string{"--leader-elect", "--c=x=y"}, want: []string{"--a=1", "--b=2", "--leader-elect=true", "--c=x=y"}},
		{name: "empty key", passthrough: []string{"=x"}, wantErr: "=x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := defaults.args(tt.passthrough)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("args = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseIntoNamesTheUserFlag(t *testing.T) {
	var nfs cliflag.NamedFlagSets
	var port int
	nfs.FlagSet("serving").IntVar(&port, "secure-port", 0, "")
	if err := parseInto("kube-scheduler", "--kube-scheduler-arg", nfs, []string{"--secure-port=7"}); err != nil || port != 7 {
		t.Fatalf("parse = %v, port %d", err, port)
	}
	err := parseInto("kube-scheduler", "--kube-scheduler-arg", nfs, []string{"--no-such-flag=1"})
	if err == nil || !strings.Contains(err.Error(), "no-such-flag") || !strings.Contains(err.Error(), "--kube-scheduler-arg") {
		t.Fatalf("err = %v, want it to name the flag and --kube-scheduler-arg", err)
	}
}

func TestUpstreamFlagsExist(t *testing.T) {
	// Every default Gatehouse passes must be a real flag of that component:
	// parse each map into the component's own flag sets.
	cfg, bundle := testConfigAndBundle(t)
	for _, c := range []struct {
		name  string
		flags flagMap
		nfs   cliflag.NamedFlagSets
	}{
		{"kube-apiserver", apiserverFlags(cfg, bundle, storage{servers: "https://127.0.0.1:2379", caFile: "ca", certFile: "c", keyFile: "k"}), apiserverFlagSets()},
		{"kube-controller-manager", controllerManagerFlags(cfg, bundle, "kc"), controllerManagerFlagSets(t)},
		{"kube-scheduler", schedulerFlags(cfg, bundle, "kc"), schedulerFlagSets()},
	} {
		args, err := c.flags.args(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := parseInto(c.name, "test", c.nfs, args); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}
