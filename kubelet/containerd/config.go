package containerd

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/kubelet/images"
)

// Defaults of Config.
const (
	DefaultBridgeName   = "gatehouse0"
	DefaultReadyTimeout = 30 * time.Second
	DefaultStopTimeout  = 5 * time.Second
	// networkName names the CNI network in the conflist and in
	// containerd's logs.
	networkName = "gatehouse"
)

// Config is how Gatehouse runs its containerd.
type Config struct {
	// DataDir is Gatehouse's data dir; containerd's files go under
	// <DataDir>/containerd and <DataDir>/cni (see Layout).
	DataDir string
	// PodCIDR is the node's pod range, e.g. "10.244.0.0/24": host-local
	// hands out pod IPs from it and the bridge gets its first address.
	PodCIDR string
	// CNIBinDir holds the CNI plugins; empty means the first of
	// /usr/lib/cni and /opt/cni/bin that has them.
	CNIBinDir string
	// BridgeName is the Linux bridge the pods attach to (at most 15
	// characters); empty means gatehouse0.
	BridgeName string
	// SandboxImage is the pod sandbox image; empty means images.PauseImage,
	// which the caller imports with images.EnsurePause once containerd is
	// up (it is never pulled).
	SandboxImage string
	// Binary is the containerd executable; empty means "containerd" found
	// as Detect finds it.
	Binary string
	// LogFile receives containerd's output (appended); empty means
	// <DataDir>/containerd/containerd.log.
	LogFile string
	// LogLevel is containerd's log level; empty means "info".
	LogLevel string
	// ReadyTimeout bounds the wait for CRI to answer; StopTimeout the wait
	// after SIGTERM before SIGKILL.
	ReadyTimeout, StopTimeout time.Duration
	// Logger gets Gatehouse's own messages about containerd (start-up
	// time, a previous instance stopped); nil means slog.Default().
	Logger *slog.Logger
}

// complete checks c and fills in the defaults, returning the binaries to use.
func (c *Config) complete() (Found, error) {
	var found Found
	if c.DataDir == "" {
		return found, fmt.Errorf("containerd config: DataDir is empty")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return found, fmt.Errorf("containerd config: DataDir %q: %w", c.DataDir, err)
	}
	c.DataDir = abs
	if _, err := parsePodCIDR(c.PodCIDR); err != nil {
		return found, err
	}
	if c.BridgeName == "" {
		c.BridgeName = DefaultBridgeName
	}
	if len(c.BridgeName) > 15 || strings.ContainsAny(c.BridgeName, "/ \t\n:") {
		return found, fmt.Errorf("containerd config: BridgeName %q is not a valid Linux interface name (at most 15 characters, no '/', ':' or spaces)", c.BridgeName)
	}
	if c.SandboxImage == "" {
		c.SandboxImage = images.PauseImage
	}
	l := Layout{c.DataDir}
	if c.LogFile == "" {
		c.LogFile = l.LogFile()
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	// Both the gRPC and the ttrpc socket must fit a unix socket address.
	if sock := l.Socket() + ".ttrpc"; len(sock) > maxSocketPath {
		return found, fmt.Errorf("containerd config: the socket path %s is %d bytes, over the %d that a unix socket allows: use a shorter --data-dir", sock, len(sock), maxSocketPath)
	}

	if c.Binary != "" {
		if _, err := os.Stat(c.Binary); err != nil {
			return found, fmt.Errorf("containerd config: Binary: %w", err)
		}
	}
	found = find(c.Binary)
	if c.CNIBinDir != "" {
		if err := checkCNIPlugins(c.CNIBinDir); err != nil {
			return found, fmt.Errorf("containerd config: CNIBinDir: %w", err)
		}
		found.CNIBinDir = c.CNIBinDir
	}
	if err := found.check(); err != nil {
		return found, err
	}
	c.CNIBinDir = found.CNIBinDir
	return found, nil
}

func parsePodCIDR(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("containerd config: PodCIDR is empty (the node's pod range, e.g. 10.244.0.0/24)")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("containerd config: PodCIDR %q: %w", s, err)
	}
	if p != p.Masked() {
		return p, fmt.Errorf("containerd config: PodCIDR %q has host bits set; the range is %s", s, p.Masked())
	}
	if bits := p.Addr().BitLen() - p.Bits(); bits < 2 {
		return p, fmt.Errorf("containerd config: PodCIDR %q leaves no room for pods", s)
	}
	return p, nil
}

// containerdConfig renders config.toml, version 2 (containerd 1.5 to 1.7;
// 2.x migrates it).
func (c *Config) containerdConfig() string {
	l := Layout{c.DataDir}
	q := tomlString
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by Gatehouse at every start of its containerd; edits are overwritten.")
	w("version = 2")
	w("root = %s", q(l.Root()))
	w("state = %s", q(l.State()))
	w("")
	w("[grpc]")
	w("  address = %s", q(l.Socket()))
	w("[ttrpc]")
	w("  address = %s", q(l.Socket()+".ttrpc"))
	w("[debug]")
	w("  level = %s", q(c.LogLevel))
	w("")
	w("[plugins]")
	// The opt plugin defaults to a directory outside our data dir.
	w("  [plugins.\"io.containerd.internal.v1.opt\"]")
	w("    path = %s", q(filepath.Join(l.Dir(), "opt")))
	w("  [plugins.\"io.containerd.grpc.v1.cri\"]")
	w("    sandbox_image = %s", q(c.SandboxImage))
	// Required where containerd lacks CAP_SYS_RESOURCE (our machines):
	// without it runc cannot set the sandbox's oom_score_adj of -998 and
	// fails with "can't get final child's PID from pipe: EOF".
	w("    restrict_oom_score_adj = true")
	// Network namespaces as bind mounts under our state dir, not
	// /var/run/netns, so nothing of ours lands outside the data dir.
	w("    netns_mounts_under_state_dir = true")
	// exec, attach and port-forward streams: on loopback only (the node
	// agent proxies them, as upstream's kubelet does), on a port the
	// kernel picks so that several containerds can run on one host.
	w("    stream_server_address = \"127.0.0.1\"")
	w("    stream_server_port = \"0\"")
	if c.apparmorUnusable() {
		// AppArmor is on but containerd could not load its default
		// profile without apparmor_parser.
		w("    disable_apparmor = true")
	}
	w("    [plugins.\"io.containerd.grpc.v1.cri\".containerd]")
	w("      snapshotter = %s", q(images.Snapshotter))
	w("      default_runtime_name = \"runc\"")
	w("      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]")
	w("        runtime_type = \"io.containerd.runc.v2\"")
	w("        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]")
	// cgroupfs: the node agent manages cgroups without systemd, and the
	// machines are cgroup v1 without a systemd PID 1.
	w("          SystemdCgroup = false")
	w("    [plugins.\"io.containerd.grpc.v1.cri\".cni]")
	w("      bin_dir = %s", q(c.CNIBinDir))
	w("      conf_dir = %s", q(l.CNIConfDir()))
	w("      max_conf_num = 1")
	w("    [plugins.\"io.containerd.grpc.v1.cri\".registry]")
	// hosts.toml per registry host; none is needed for a registry on
	// loopback, which containerd already reaches over plain HTTP.
	w("      config_path = %s", q(l.HostsDir()))
	return b.String()
}

// apparmorUnusable reports whether the kernel enforces AppArmor but no
// apparmor_parser exists to load containerd's default profile.
func (c *Config) apparmorUnusable() bool {
	data, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	if err != nil || strings.TrimSpace(string(data)) != "Y" {
		return false
	}
	_, err = lookPath("apparmor_parser")
	return err != nil
}

// cniConfig renders the CNI conflist: a bridge with host-local IPAM on the
// pod CIDR, and portmap for hostPort. containerd's CRI plugin adds the
// loopback interface of every pod itself (with the loopback plugin from
// the same bin dir), so the list does not name it.
func (c *Config) cniConfig() ([]byte, error) {
	cidr, err := parsePodCIDR(c.PodCIDR)
	if err != nil {
		return nil, err
	}
	defaultRoute := "0.0.0.0/0"
	if cidr.Addr().Is6() {
		defaultRoute = "::/0"
	}
	type obj = map[string]any
	conf := obj{
		"cniVersion": "1.0.0",
		"name":       networkName,
		"plugins": []obj{
			{
				"type":        "bridge",
				"bridge":      c.BridgeName,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": obj{
					"type":    "host-local",
					"ranges":  [][]obj{{{"subnet": cidr.String()}}},
					"routes":  []obj{{"dst": defaultRoute}},
					"dataDir": Layout{c.DataDir}.IPAMDir(),
				},
			},
			{"type": "portmap", "capabilities": obj{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\u` + fmt.Sprintf("%04X", r))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it over path, so that readers (containerd watches the CNI dir) never see
// a half-written file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// writeFiles creates the directories and writes config.toml and the CNI
// conflist.
func (c *Config) writeFiles() error {
	l := Layout{c.DataDir}
	for _, dir := range []string{l.Dir(), l.Root(), l.State(), l.HostsDir(), l.CNIConfDir(), l.IPAMDir()} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	if err := writeFileAtomic(l.ConfigFile(), []byte(c.containerdConfig()), 0o644); err != nil {
		return err
	}
	cni, err := c.cniConfig()
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(l.CNIConfDir(), "10-"+networkName+".conflist"), cni, 0o644)
}
