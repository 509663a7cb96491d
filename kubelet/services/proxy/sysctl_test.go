package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeProc is a /proc/sys with the given values.
func fakeProc(t *testing.T, values map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, v := range values {
		writeValue(t, root, name, v)
	}
	return root
}

func writeValue(t *testing.T, root, name, v string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readValue(t *testing.T, root, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func TestSysctlsApplyRestore(t *testing.T) {
	root := fakeProc(t, map[string]string{"net/bridge/bridge-nf-call-iptables": "0", "net/ipv4/conf/all/route_localnet": "0"})
	state := filepath.Join(t.TempDir(), "sysctls.json")
	s := &Sysctls{Root: root, StateFile: state, LoadModule: func(string) error { return errors.New("must not be called") }}
	if err := s.Apply(RequiredSysctls); err != nil {
		t.Fatal(err)
	}
	for name := range RequiredSysctls {
		if got := readValue(t, root, name); got != "1" {
			t.Errorf("%s = %s after Apply, want 1", name, got)
		}
	}
	if _, err := os.Stat(state); err != nil {
		t.Errorf("no state file while set: %v", err)
	}
	if err := s.Restore(); err != nil {
		t.Fatal(err)
	}
	for name := range RequiredSysctls {
		if got := readValue(t, root, name); got != "0" {
			t.Errorf("%s = %s after Restore, want the previous 0", name, got)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file left after Restore: %v", err)
	}
}

// A run that crashed left our values set and its state file: the next run
// must restore the host's values from that file, not ours.
func TestSysctlsAfterCrash(t *testing.T) {
	root := fakeProc(t, map[string]string{"net/bridge/bridge-nf-call-iptables": "0", "net/ipv4/conf/all/route_localnet": "0"})
	state := filepath.Join(t.TempDir(), "sysctls.json")
	crashed := &Sysctls{Root: root, StateFile: state}
	if err := crashed.Apply(RequiredSysctls); err != nil {
		t.Fatal(err)
	}
	next := &Sysctls{Root: root, StateFile: state}
	if err := next.Apply(RequiredSysctls); err != nil {
		t.Fatal(err)
	}
	if err := next.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := readValue(t, root, "net/ipv4/conf/all/route_localnet"); got != "0" {
		t.Errorf("route_localnet = %s after a crashed run and a clean one, want the host's 0", got)
	}
}

func TestSysctlsLoadsBrNetfilter(t *testing.T) {
	root := fakeProc(t, map[string]string{"net/ipv4/conf/all/route_localnet": "1"})
	var loaded []string
	s := &Sysctls{Root: root, StateFile: filepath.Join(t.TempDir(), "s.json"), LoadModule: func(name string) error {
		loaded = append(loaded, name)
		writeValue(t, root, "net/bridge/bridge-nf-call-iptables", "0")
		return nil
	}}
	if err := s.Apply(RequiredSysctls); err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0] != "br_netfilter" {
		t.Errorf("modules loaded: %v, want [br_netfilter]", loaded)
	}
	if got := readValue(t, root, "net/bridge/bridge-nf-call-iptables"); got != "1" {
		t.Errorf("bridge-nf-call-iptables = %s, want 1", got)
	}

	// Without the module the error says so.
	root2 := fakeProc(t, map[string]string{"net/ipv4/conf/all/route_localnet": "1"})
	s2 := &Sysctls{Root: root2, StateFile: filepath.Join(t.TempDir(), "s.json"), LoadModule: func(string) error { return errors.New("not found") }}
	if err := s2.Apply(RequiredSysctls); err == nil || !strings.Contains(err.Error(), "br_netfilter") {
		t.Errorf("Apply without br_netfilter: %v, want an error naming br_netfilter", err)
	}
}
