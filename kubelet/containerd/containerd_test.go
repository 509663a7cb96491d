package containerd_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/gatehouse-dev/gatehouse/internal/testimage"
	"github.com/gatehouse-dev/gatehouse/kubelet/containerd"
	"github.com/gatehouse-dev/gatehouse/kubelet/containerd/containerdtest"
	"github.com/gatehouse-dev/gatehouse/kubelet/images"
)

const busybox = "gatehouse.test/busybox:1"

// prepareImages imports the pause image and the busybox test image.
func prepareImages(t testing.TB, node *containerdtest.Node) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	if _, _, err := images.EnsurePause(ctx, node.Endpoint()); err != nil {
		t.Fatalf("EnsurePause: %v", err)
	}
	t.Logf("pause image imported in %v", time.Since(start).Round(time.Millisecond))
	var buf bytes.Buffer
	if _, err := testimage.WriteOCI(&buf, busybox); err != nil {
		t.Fatal(err)
	}
	if _, err := images.Load(ctx, node.Endpoint(), &buf); err != nil {
		t.Fatalf("loading %s: %v", busybox, err)
	}
}

// pod is one sandbox with its containers, for the tests.
type pod struct {
	rt        internalapi.RuntimeService
	id        string
	config    *runtimeapi.PodSandboxConfig
	logDir    string
	container []string
}

// runPod runs a pod sandbox named name and removes it at the end of the test.
func runPod(t testing.TB, node *containerdtest.Node, rt internalapi.RuntimeService, name string) *pod {
	t.Helper()
	uid := fmt.Sprintf("%s-%d", name, time.Now().UnixNano())
	p := &pod{rt: rt, logDir: filepath.Join(t.TempDir(), "pods", uid)}
	if err := os.MkdirAll(p.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.config = &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Uid: uid, Namespace: "default"},
		Hostname:     name,
		LogDirectory: p.logDir,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: node.CgroupParent + "/pod" + uid,
		},
	}
	id, err := rt.RunPodSandbox(context.Background(), p.config, "")
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	p.id = id
	t.Cleanup(func() { p.remove(t) })
	return p
}

// remove stops and removes the containers and the sandbox.
func (p *pod) remove(t testing.TB) {
	ctx := context.Background()
	for _, c := range p.container {
		p.rt.StopContainer(ctx, c, 0)
		if err := p.rt.RemoveContainer(ctx, c); err != nil {
			t.Errorf("RemoveContainer: %v", err)
		}
	}
	p.container = nil
	if p.id == "" {
		return
	}
	if err := p.rt.StopPodSandbox(ctx, p.id); err != nil {
		t.Errorf("StopPodSandbox: %v", err)
	}
	if err := p.rt.RemovePodSandbox(ctx, p.id); err != nil {
		t.Errorf("RemovePodSandbox: %v", err)
	}
	p.id = ""
}

// start creates and starts a busybox container running command.
func (p *pod) start(t testing.TB, name string, resources *runtimeapi.LinuxContainerResources, command ...string) string {
	t.Helper()
	ctx := context.Background()
	config := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: busybox},
		Command:  command,
		LogPath:  name + ".log",
		Linux:    &runtimeapi.LinuxContainerConfig{Resources: resources},
	}
	id, err := p.rt.CreateContainer(ctx, p.id, config, p.config)
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", name, err)
	}
	p.container = append(p.container, id)
	if err := p.rt.StartContainer(ctx, id); err != nil {
		t.Fatalf("StartContainer %s: %v", name, err)
	}
	return id
}

// waitExited waits for the container to exit and returns its status.
func waitExited(t testing.TB, rt internalapi.RuntimeService, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := rt.ContainerStatus(context.Background(), id, false)
		if err != nil {
			t.Fatalf("ContainerStatus: %v", err)
		}
		if resp.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			return resp.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still %v after 30s", id, resp.Status.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkNothingLeft stops containerd and checks that no process of it and no
// mount under its data dir remain.
func checkNothingLeft(t *testing.T, node *containerdtest.Node) {
	t.Helper()
	if err := node.Process.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if left := node.Leftovers(); len(left) > 0 {
		t.Errorf("processes left after Stop:\n%s", strings.Join(left, "\n"))
	}
	if mounts := node.Mounts(); len(mounts) > 0 {
		t.Errorf("mounts left after Stop:\n%s", strings.Join(mounts, "\n"))
	}
}

// TestPodWithContainer runs the whole CRI path: a sandbox with an IP on the
// bridge, a busybox container with memory and CPU limits whose output lands
// in its CRI log file, then everything removed and containerd stopped with
// nothing left behind.
func TestPodWithContainer(t *testing.T) {
	node := containerdtest.Start(t)
	t.Logf("containerd %s ready in %v", node.Process.Version, node.Process.StartupTime.Round(time.Millisecond))
	// Its own process group: a Ctrl-C on Gatehouse's terminal does not
	// reach it; Gatehouse stops it.
	if pgid, err := syscall.Getpgid(node.Process.Pid); err != nil || pgid != node.Process.Pid || pgid == syscall.Getpgrp() {
		t.Errorf("containerd's process group = %d (%v), want its own (%d)", pgid, err, node.Process.Pid)
	}
	prepareImages(t, node)
	rt := node.Runtime(t)
	ctx := context.Background()

	start := time.Now()
	p := runPod(t, node, rt, "hello")
	sandboxTime := time.Since(start)
	status, err := rt.PodSandboxStatus(ctx, p.id, false)
	if err != nil {
		t.Fatal(err)
	}
	if status.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("sandbox state %v", status.Status.State)
	}
	podIP, err := netip.ParseAddr(status.Status.GetNetwork().GetIp())
	if err != nil {
		t.Fatalf("pod IP %q: %v", status.Status.GetNetwork().GetIp(), err)
	}
	if cidr := netip.MustParsePrefix(node.Config.PodCIDR); !cidr.Contains(podIP) || podIP == cidr.Addr().Next() {
		t.Errorf("pod IP %s is not a pod address of %s", podIP, cidr)
	}

	const memory = 64 << 20
	start = time.Now()
	id := p.start(t, "hello", &runtimeapi.LinuxContainerResources{
		MemoryLimitInBytes: memory,
		CpuPeriod:          100000,
		CpuQuota:           50000, // 500m
		CpuShares:          512,
	}, "sh", "-c", "echo hello from gatehouse; "+
		"echo memory $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); "+
		"echo quota $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us); "+
		"ip -o addr show lo; ip -o -4 addr show eth0")
	t.Logf("sandbox %v, container create+start %v", sandboxTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	cs := waitExited(t, rt, id)
	if cs.ExitCode != 0 {
		t.Errorf("container exit code %d (%s)", cs.ExitCode, cs.Message)
	}
	if cs.LogPath != filepath.Join(p.logDir, "hello.log") {
		t.Errorf("container log path %s", cs.LogPath)
	}
	logData, err := os.ReadFile(cs.LogPath)
	if err != nil {
		t.Fatalf("CRI log file: %v", err)
	}
	log := string(logData)
	t.Logf("container log:\n%s", log)
	for _, want := range []string{
		" stdout F hello from gatehouse\n",
		" stdout F memory " + strconv.Itoa(memory) + "\n",
		" stdout F quota 50000\n",
		// containerd brings up lo itself: the conflist has no loopback.
		"inet 127.0.0.1/8",
		"inet " + podIP.String() + "/",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("container log lacks %q", want)
		}
	}

	p.remove(t)
	sandboxes, err := rt.ListPodSandbox(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sandboxes) != 0 {
		t.Errorf("%d sandboxes left after RemovePodSandbox", len(sandboxes))
	}
	checkNothingLeft(t, node)
}

// TestContainerSurvivesRestart checks that a running container outlives its
// containerd: stopped and started again (a Gatehouse restart), and left
// running and taken over through the pid file (Gatehouse killed).
func TestContainerSurvivesRestart(t *testing.T) {
	node := containerdtest.Start(t)
	prepareImages(t, node)
	rt := node.Runtime(t)
	p := runPod(t, node, rt, "sleeper")
	id := p.start(t, "sleep", nil, "sleep", "3600")
	shims := shimPids(node)
	if len(shims) == 0 {
		t.Fatal("no shim process found for the pod")
	}

	checkRunning := func(when string) {
		t.Helper()
		resp, err := rt.ContainerStatus(context.Background(), id, false)
		if err != nil {
			t.Fatalf("%s: ContainerStatus: %v", when, err)
		}
		if resp.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("%s: container is %v", when, resp.Status.State)
		}
		stdout, _, err := rt.ExecSync(context.Background(), id, []string{"echo", "alive"}, 10*time.Second)
		if err != nil || string(stdout) != "alive\n" {
			t.Fatalf("%s: ExecSync = %q, %v", when, stdout, err)
		}
		if got := shimPids(node); !slices.Equal(got, shims) {
			t.Errorf("%s: shims %v, were %v", when, got, shims)
		}
	}

	if err := node.Process.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range shims {
		if _, err := os.Stat("/proc/" + pid); err != nil {
			t.Fatalf("shim %s died with containerd", pid)
		}
	}
	node.Restart(t)
	checkRunning("after Stop and Start")

	// Gatehouse killed: its containerd stays up, and the next Start
	// stops it through the pid file before starting its own.
	left := node.Process
	next, err := containerd.Start(context.Background(), node.Config)
	if err != nil {
		t.Fatalf("Start over a running containerd: %v", err)
	}
	node.Process = next
	select {
	case <-left.Exited():
	default:
		t.Fatal("the containerd left running was not stopped by the next Start")
	}
	left.Stop() // closes its log; must not touch next's pid file
	if _, err := os.Stat(containerd.Layout{DataDir: node.Config.DataDir}.PidFile()); err != nil {
		t.Errorf("pid file of the running containerd: %v", err)
	}
	checkRunning("after a Start over a running containerd")

	p.remove(t)
	checkNothingLeft(t, node)
}

// shimPids returns the pids of this containerd's shims, sorted.
func shimPids(node *containerdtest.Node) []string {
	var pids []string
	for _, p := range node.Leftovers() {
		if strings.Contains(p, "containerd-shim") {
			pids = append(pids, strings.Fields(p)[0])
		}
	}
	slices.Sort(pids)
	return pids
}

// TestPullFromLoopbackRegistry pushes the busybox image to a docker-registry
// on a loopback port and pulls it through CRI, by IP and by localhost:
// containerd 1.6 reaches a loopback registry over plain HTTP with no
// hosts.toml in the config_path dir.
func TestPullFromLoopbackRegistry(t *testing.T) {
	containerdtest.RequireNode(t)
	registry := testimage.StartRegistry(t)
	var buf bytes.Buffer
	blobs, err := testimage.WriteOCI(&buf, busybox)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := testimage.Push(context.Background(), registry, "gatehouse/busybox", "1", blobs)
	if err != nil {
		t.Fatalf("pushing to %s: %v", registry, err)
	}

	node := containerdtest.Start(t)
	if _, _, err := images.EnsurePause(context.Background(), node.Endpoint()); err != nil {
		t.Fatal(err)
	}
	is := node.Images(t)
	_, port, _ := strings.Cut(registry, ":")
	for _, ref := range []string{registry + "/gatehouse/busybox:1", "localhost:" + port + "/gatehouse/busybox:1"} {
		t.Run(ref, func(t *testing.T) {
			start := time.Now()
			imageRef, err := is.PullImage(context.Background(), &runtimeapi.ImageSpec{Image: ref}, nil, nil)
			if err != nil {
				t.Fatalf("CRI PullImage %s: %v", ref, err)
			}
			t.Logf("pulled %s in %v", ref, time.Since(start).Round(time.Millisecond))
			if imageRef != blobs.ConfigDigest {
				t.Errorf("PullImage = %s, want the image ID %s", imageRef, blobs.ConfigDigest)
			}
			resp, err := is.ImageStatus(context.Background(), &runtimeapi.ImageSpec{Image: ref}, false)
			if err != nil || resp.Image == nil {
				t.Fatalf("ImageStatus %s: %v, %v", ref, resp, err)
			}
			wantDigest := strings.SplitN(ref, ":", 2)[0] + ":" + port + "/gatehouse/busybox@" + digest
			if !slices.Contains(resp.Image.RepoDigests, wantDigest) {
				t.Errorf("RepoDigests = %v, want %s", resp.Image.RepoDigests, wantDigest)
			}
		})
	}

	// The pulled image runs.
	rt := node.Runtime(t)
	p := runPod(t, node, rt, "pulled")
	ctx := context.Background()
	config := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "pulled"},
		Image:    &runtimeapi.ImageSpec{Image: registry + "/gatehouse/busybox:1"},
		Command:  []string{"echo", "pulled and running"},
		LogPath:  "pulled.log",
	}
	id, err := rt.CreateContainer(ctx, p.id, config, p.config)
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	p.container = append(p.container, id)
	if err := rt.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	cs := waitExited(t, rt, id)
	if log, _ := os.ReadFile(cs.LogPath); !strings.Contains(string(log), "stdout F pulled and running") {
		t.Errorf("log of the pulled image's container: %q", log)
	}
	p.remove(t)
	checkNothingLeft(t, node)
}
