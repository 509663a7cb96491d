package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// RequiredSysctls are the kernel settings the rules need:
//   - bridge-nf-call-iptables: bridged traffic between pods of the bridge
//     goes through the ip hooks, so that the answer of a pod reached
//     through a ClusterIP by a pod of the same bridge is un-DNATed
//     (it is bridged, not routed, and would otherwise bypass conntrack);
//   - route_localnet: a NodePort on 127.0.0.1 is DNATed to a pod, which
//     the kernel routes off the loopback interface only with it.
var RequiredSysctls = map[string]string{
	"net/bridge/bridge-nf-call-iptables": "1",
	"net/ipv4/conf/all/route_localnet":   "1",
}

// Sysctls sets kernel settings and puts back the values they had.
type Sysctls struct {
	// Root is /proc/sys (empty means that); a directory in tests.
	Root string
	// StateFile keeps the previous values while ours are set: a run that
	// crashed leaves it, and the next run restores those values instead
	// of taking ours for the host's.
	StateFile string
	// LoadModule loads a kernel module; nil runs modprobe.
	LoadModule func(name string) error

	saved map[string]string
}

func (s *Sysctls) path(name string) string {
	root := s.Root
	if root == "" {
		root = "/proc/sys"
	}
	return filepath.Join(root, filepath.FromSlash(name))
}

// Apply loads br_netfilter when the bridge settings are missing, records
// the current values of want (or those a crashed run recorded) and sets
// want.
func (s *Sysctls) Apply(want map[string]string) error {
	if s.StateFile == "" {
		return errors.New("sysctls: StateFile is required")
	}
	for name := range want {
		if !strings.HasPrefix(name, "net/bridge/") {
			continue
		}
		if _, err := os.Stat(s.path(name)); errors.Is(err, fs.ErrNotExist) {
			load := s.LoadModule
			if load == nil {
				load = modprobe
			}
			if err := load("br_netfilter"); err != nil {
				return fmt.Errorf("sysctl %s: loading br_netfilter: %w", name, err)
			}
			if _, err := os.Stat(s.path(name)); err != nil {
				return fmt.Errorf("sysctl %s after loading br_netfilter: %w", name, err)
			}
		}
	}
	saved := map[string]string{}
	if data, err := os.ReadFile(s.StateFile); err == nil {
		if err := json.Unmarshal(data, &saved); err != nil {
			return fmt.Errorf("sysctls: %s: %w", s.StateFile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sysctls: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if _, ok := saved[name]; ok {
			continue
		}
		data, err := os.ReadFile(s.path(name))
		if err != nil {
			return fmt.Errorf("sysctl %s: %w", name, err)
		}
		saved[name] = strings.TrimSpace(string(data))
	}
	data, _ := json.MarshalIndent(saved, "", "  ")
	if err := os.MkdirAll(filepath.Dir(s.StateFile), 0o700); err != nil {
		return fmt.Errorf("sysctls: %w", err)
	}
	if err := os.WriteFile(s.StateFile, data, 0o600); err != nil {
		return fmt.Errorf("sysctls: %w", err)
	}
	s.saved = saved
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if err := os.WriteFile(s.path(name), []byte(want[name]+"\n"), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", name, want[name], err)
		}
	}
	return nil
}

// Restore puts back the values Apply found and forgets them.
func (s *Sysctls) Restore() error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.saved)) {
		if err := os.WriteFile(s.path(name), []byte(s.saved[name]+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("sysctl %s=%s: %w", name, s.saved[name], err))
		}
	}
	if len(errs) == 0 && s.saved != nil {
		if err := os.Remove(s.StateFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	s.saved = nil
	return errors.Join(errs...)
}

func modprobe(name string) error {
	out, err := exec.Command("modprobe", name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("modprobe %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
