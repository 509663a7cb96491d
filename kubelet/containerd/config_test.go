package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigErrors(t *testing.T) {
	long := "/tmp/" + strings.Repeat("d", 80)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no data dir", Config{PodCIDR: "10.244.0.0/24"}, "DataDir is empty"},
		{"no pod CIDR", Config{DataDir: "/tmp/x"}, "PodCIDR is empty"},
		{"bad pod CIDR", Config{DataDir: "/tmp/x", PodCIDR: "10.244.0.0"}, `PodCIDR "10.244.0.0"`},
		{"host bits", Config{DataDir: "/tmp/x", PodCIDR: "10.244.0.1/24"}, "the range is 10.244.0.0/24"},
		{"tiny pod CIDR", Config{DataDir: "/tmp/x", PodCIDR: "10.244.0.0/32"}, "no room for pods"},
		{"bridge name", Config{DataDir: "/tmp/x", PodCIDR: "10.244.0.0/24", BridgeName: "a-very-long-bridge-name"}, "BridgeName"},
		{"long socket path", Config{DataDir: long, PodCIDR: "10.244.0.0/24"}, "over the 107 that a unix socket allows: use a shorter --data-dir"},
		{"missing binary", Config{DataDir: "/tmp/x", PodCIDR: "10.244.0.0/24", Binary: "/nonexistent/containerd"}, "containerd config: Binary"},
		{"CNI dir without plugins", Config{DataDir: "/tmp/x", PodCIDR: "10.244.0.0/24", CNIBinDir: t.TempDir()}, "CNIBinDir: CNI plugin dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.complete()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestMissingError(t *testing.T) {
	tests := []struct {
		found Found
		want  string
	}{
		{Found{}, "no containerd binary in PATH"},
		{Found{Containerd: "/usr/bin/containerd"}, "containerd-shim-runc-v2 is not in PATH"},
		{Found{Containerd: "/usr/bin/containerd", Shim: "/usr/bin/containerd-shim-runc-v2"}, "runc is not in PATH"},
		{Found{Containerd: "/c", Shim: "/s", Runc: "/r"}, "no CNI plugins"},
	}
	for _, tt := range tests {
		err := tt.found.check()
		var missing *MissingError
		if !errors.As(err, &missing) || !strings.Contains(err.Error(), tt.want) || !strings.HasSuffix(err.Error(), "; to run real containers: "+InstallHint) {
			t.Errorf("check(%+v) = %v, want a *MissingError with %q and the install hint", tt.found, err, tt.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("the reason is not one line: %q", err)
		}
	}
	if err := (Found{Containerd: "/c", Shim: "/s", Runc: "/r", CNIBinDir: "/n"}).check(); err != nil {
		t.Errorf("complete Found: %v", err)
	}
}

func TestRenderedConfigs(t *testing.T) {
	cfg := Config{DataDir: "/var/lib/gate \"house\"", PodCIDR: "10.244.3.0/24", BridgeName: "gatehouse0", CNIBinDir: "/usr/lib/cni", SandboxImage: "gatehouse.dev/pause:1", LogLevel: "info"}
	toml := cfg.containerdConfig()
	for _, want := range []string{
		"version = 2\n",
		`root = "/var/lib/gate \"house\"/containerd/root"`,
		`address = "/var/lib/gate \"house\"/containerd/containerd.sock"`,
		`sandbox_image = "gatehouse.dev/pause:1"`,
		"restrict_oom_score_adj = true",
		`stream_server_address = "127.0.0.1"`,
		`stream_server_port = "0"`,
		`snapshotter = "overlayfs"`,
		"SystemdCgroup = false",
		`bin_dir = "/usr/lib/cni"`,
		`conf_dir = "/var/lib/gate \"house\"/cni/net.d"`,
		`config_path = "/var/lib/gate \"house\"/containerd/certs.d"`,
	} {
		if !strings.Contains(toml, want) {
			t.Errorf("config.toml lacks %s:\n%s", want, toml)
		}
	}

	data, err := cfg.cniConfig()
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		CNIVersion string `json:"cniVersion"`
		Plugins    []struct {
			Type      string
			Bridge    string
			IsGateway bool
			IPMasq    bool
			IPAM      struct {
				Type    string
				Ranges  [][]struct{ Subnet string }
				Routes  []struct{ Dst string }
				DataDir string
			}
		}
	}
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatal(err)
	}
	br := conf.Plugins[0]
	if br.Type != "bridge" || br.Bridge != "gatehouse0" || !br.IsGateway || !br.IPMasq ||
		br.IPAM.Type != "host-local" || br.IPAM.Ranges[0][0].Subnet != "10.244.3.0/24" ||
		br.IPAM.Routes[0].Dst != "0.0.0.0/0" || br.IPAM.DataDir != "/var/lib/gate \"house\"/cni/ipam" {
		t.Errorf("bridge plugin = %+v", br)
	}
	if len(conf.Plugins) != 2 || conf.Plugins[1].Type != "portmap" {
		t.Errorf("plugins = %+v", conf.Plugins)
	}

	cfg.PodCIDR = "fd00:10:244::/64"
	data, _ = cfg.cniConfig()
	if !strings.Contains(string(data), `"dst": "::/0"`) {
		t.Errorf("IPv6 pod CIDR: no ::/0 route in %s", data)
	}
}

func TestTOMLString(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:      `"plain"`,
		`a"b\c`:      `"a\"b\\c"`,
		"tab\there":  `"tab\u0009here"`,
		"ünïcödé/ok": `"ünïcödé/ok"`,
	} {
		if got := tomlString(in); got != want {
			t.Errorf("tomlString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestRemoveStaleSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.sock")

	// Nobody listens: removed, with its .ttrpc sibling.
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	os.WriteFile(path+".ttrpc", nil, 0o600)
	if err := removeStaleSocket(path); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".ttrpc"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there", p)
		}
	}

	// Someone listens: an error naming the socket.
	l, err = net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := removeStaleSocket(path); err == nil || !strings.Contains(err.Error(), "already serves "+path) {
		t.Errorf("error = %v", err)
	}
}

// TestStartFailureShowsLog starts a "containerd" that exits at once: the
// error says so and quotes its output.
func TestStartFailureShowsLog(t *testing.T) {
	if _, err := Detect(); err != nil {
		t.Skipf("skipped: %v", err)
	}
	fake := filepath.Join(t.TempDir(), "containerd")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'containerd: no such plugin, pretend' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Config{DataDir: t.TempDir(), PodCIDR: "10.244.0.0/24", Binary: fake, ReadyTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "containerd exited: exit status 3") || !strings.Contains(err.Error(), "no such plugin, pretend") {
		t.Errorf("error = %v", err)
	}
}
