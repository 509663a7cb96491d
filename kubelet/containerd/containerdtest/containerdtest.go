package containerdtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	remote "k8s.io/cri-client/pkg"

	"github.com/gatehouse-dev/gatehouse/kubelet/containerd"
)

// Node is a containerd started for one test.
type Node struct {
	Config  containerd.Config
	Process *containerd.Process
	// CgroupParent is a cgroup (cgroupfs path) for this test's pods;
	// removed at the end.
	CgroupParent string
}

// RequireNode skips the test when not root and fails it when root but
// containerd, runc or the CNI plugins are missing.
func RequireNode(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: running containers through containerd needs root (run the tests as root)")
	}
	if _, err := containerd.Detect(); err != nil {
		t.Fatalf("%v (hack/install-test-deps.sh installs them)", err)
	}
}

// Start starts containerd in a temporary data dir with a bridge and pod
// range of its own, and stops it and cleans up after the test. mutate, if
// given, changes the config first.
func Start(t testing.TB, mutate ...func(*containerd.Config)) *Node {
	t.Helper()
	RequireNode(t)
	suffix := randomHex(t, 3)
	dataDir := t.TempDir()
	cfg := containerd.Config{
		DataDir: dataDir,
		// A /24 of 10.248.0.0/13 at random, so that concurrent runs
		// (other packages' tests) rarely meet; each has its own bridge.
		PodCIDR:    fmt.Sprintf("10.%d.%d.0/24", 248+randomInt(t, 8), randomInt(t, 256)),
		BridgeName: "ght" + suffix,
		Logger:     slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	n := &Node{Config: cfg, CgroupParent: "/gatehouse-test-" + suffix}
	t.Cleanup(func() { n.cleanup(t) })
	p, err := containerd.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	n.Process = p
	return n
}

// Restart stops containerd and starts it again on the same data dir.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	if err := n.Process.Stop(); err != nil {
		t.Fatalf("stopping containerd: %v", err)
	}
	p, err := containerd.Start(context.Background(), n.Config)
	if err != nil {
		t.Fatalf("restarting containerd: %v", err)
	}
	n.Process = p
}

// Endpoint is containerd's endpoint (the same for every restart).
func (n *Node) Endpoint() string { return containerd.Layout{DataDir: n.Config.DataDir}.Endpoint() }

// Runtime returns a CRI runtime client, closed at the end of the test.
func (n *Node) Runtime(t testing.TB) internalapi.RuntimeService {
	t.Helper()
	rs, err := remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(n.Endpoint()).
		WithConnectionTimeout(2 * time.Minute).WithTracerProvider(nil).Build(context.Background())
	if err != nil {
		t.Fatalf("CRI runtime client: %v", err)
	}
	t.Cleanup(func() { rs.Close(context.Background()) })
	return rs
}

// Images returns a CRI image client, closed at the end of the test.
func (n *Node) Images(t testing.TB) internalapi.ImageManagerService {
	t.Helper()
	is, err := remote.NewRemoteImageService(context.Background(), n.Endpoint(), 2*time.Minute, nil, false)
	if err != nil {
		t.Fatalf("CRI image client: %v", err)
	}
	return is
}

// Leftovers returns the processes that still belong to this containerd:
// containerd itself and its shims, which name its socket or config.
func (n *Node) Leftovers() []string {
	l := containerd.Layout{DataDir: n.Config.DataDir}
	return processesMentioning(l.Socket(), l.ConfigFile())
}

// Mounts returns the mount points under the data dir.
func (n *Node) Mounts() []string { return mountsUnder(n.Config.DataDir) }

func (n *Node) cleanup(t testing.TB) {
	if n.Process != nil {
		if err := n.Process.Stop(); err != nil {
			t.Errorf("stopping containerd: %v", err)
		}
	}
	// Whatever a failed test left: shims (and their containers, which
	// die with them), mounts, the bridge, cgroups.
	for _, p := range n.Leftovers() {
		pid, _ := strconv.Atoi(strings.Fields(p)[0])
		syscall.Kill(pid, syscall.SIGKILL)
	}
	mounts := n.Mounts()
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) }) // deepest first
	for _, m := range mounts {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
	exec.Command("ip", "link", "delete", n.Config.BridgeName).Run()
	removeCgroups(n.CgroupParent)
}

// processesMentioning lists "pid cmdline" of processes whose command line
// contains any of needles.
func processesMentioning(needles ...string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(strings.TrimRight(string(data), "\x00"), "\x00", " ")
		for _, n := range needles {
			if strings.Contains(cmdline, n) {
				out = append(out, e.Name()+" "+cmdline)
				break
			}
		}
	}
	return out
}

// mountsUnder lists the mount points under dir from /proc/self/mountinfo.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeCgroups removes parent's directories in every cgroup v1 hierarchy
// (and v2), deepest first; runc leaves the parents it created.
func removeCgroups(parent string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		top := filepath.Join(root, parent)
		var dirs []string
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			os.Remove(dirs[i])
		}
	}
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func randomInt(t testing.TB, max int64) int {
	v, err := rand.Int(rand.Reader, big.NewInt(max))
	if err != nil {
		t.Fatal(err)
	}
	return int(v.Int64())
}

// testWriter sends Gatehouse's log lines about containerd to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
