package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	// readyTimeout bounds `gatehouse up` from exec to its ready line.
	readyTimeout = 90 * time.Second
	// stopTimeout bounds a SIGTERM'd gatehouse; it promises 10 s.
	stopTimeout = 15 * time.Second
	// logTail is how many lines of gatehouse.log a failed test shows.
	logTail = 100
)

var (
	// gatehouseBin is the binary under test.
	gatehouseBin string
	// kubectlBin is kubectl as found on $PATH.
	kubectlBin string
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	if kubectlBin, err = exec.LookPath("kubectl"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: kubectl is not on $PATH (%v): the admission tests drive the cluster with it; install kubectl and retry\n", err)
		return 1
	}
	if gatehouseBin = os.Getenv("GATEHOUSE_BIN"); gatehouseBin != "" {
		if gatehouseBin, err = filepath.Abs(gatehouseBin); err == nil {
			_, err = os.Stat(gatehouseBin)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: GATEHOUSE_BIN: %v\n", err)
			return 1
		}
		return m.Run()
	}

	tmp, err := os.MkdirTemp("", "gatehouse-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	gatehouseBin = filepath.Join(tmp, "gatehouse")
	if err := buildGatehouse(gatehouseBin); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building gatehouse (set GATEHOUSE_BIN to use a prebuilt binary): %v\n", err)
		return 1
	}
	return m.Run()
}

// buildGatehouse runs `go build -o out ./cmd/gatehouse` in the module root.
func buildGatehouse(out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "e2e: building %s from %s (this takes a while)\n", out, root)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/gatehouse")
	cmd.Dir = root
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	return cmd.Run()
}

// moduleRoot walks up from the working directory to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found above the working directory")
		}
		dir = parent
	}
}

// syncBuffer is a bytes.Buffer safe for one writer (the exec'd process) and
// concurrent readers (the test).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is one run of `gatehouse up`.
type process struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{} // closed once the process has exited
	waitErr        error         // cmd.Wait's result, valid after done
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode is the exit code of an exited process, -1 if a signal ended it.
func (p *process) exitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// ports are the listeners of one instance.
type ports struct {
	api, etcdClient, etcdPeer, controllerManager, scheduler, kubelet int
}

// instance is a gatehouse control plane started by a test. It survives
// restarts: the data dir and ports stay, the process changes.
type instance struct {
	dataDir    string
	ports      ports
	args       []string // everything after the binary name
	kubeconfig string   // as named by the ready line
	config     *rest.Config
	client     kubernetes.Interface
	kubectlDir string // kubectl's --cache-dir

	runs []*process // every run, the current one last
}

// startGatehouse starts `gatehouse up --node=false` with every port on a
// free loopback port and a fresh data dir, plus extraArgs, and waits for it
// to be ready. The process is stopped when the test ends; if the test failed,
// its stderr and the tail of gatehouse.log are logged.
func startGatehouse(t *testing.T, extraArgs ...string) *instance {
	t.Helper()
	inst := newInstance(t, extraArgs...)
	inst.start(t)
	return inst
}

// newInstance prepares an instance (ports, data dir, arguments, cleanup)
// without starting it.
func newInstance(t *testing.T, extraArgs ...string) *instance {
	t.Helper()
	p := freePorts(t, 6)
	inst := &instance{
		dataDir:    t.TempDir(),
		kubectlDir: t.TempDir(),
		ports:      ports{api: p[0], etcdClient: p[1], etcdPeer: p[2], controllerManager: p[3], scheduler: p[4], kubelet: p[5]},
	}
	inst.args = append([]string{"up",
		"--data-dir", inst.dataDir,
		"--bind-address", "127.0.0.1",
		"--api-port", strconv.Itoa(inst.ports.api),
		"--etcd-client-port", strconv.Itoa(inst.ports.etcdClient),
		"--etcd-peer-port", strconv.Itoa(inst.ports.etcdPeer),
		"--controller-manager-port", strconv.Itoa(inst.ports.controllerManager),
		"--scheduler-port", strconv.Itoa(inst.ports.scheduler),
		"--kubelet-port", strconv.Itoa(inst.ports.kubelet),
		"--node=false",
	}, extraArgs...)
	// Registered before the first start, so a start that fails still stops
	// the process and shows why.
	t.Cleanup(func() {
		if p := inst.current(); p != nil && !p.exited() {
			inst.stop(t)
		}
		if t.Failed() {
			inst.dumpLogs(t)
		}
	})
	return inst
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// All n listeners are open at once so no port is handed out twice.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("allocating a loopback port: %v", err)
		}
		listeners = append(listeners, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out
}

func (inst *instance) current() *process {
	if len(inst.runs) == 0 {
		return nil
	}
	return inst.runs[len(inst.runs)-1]
}

var readyLine = regexp.MustCompile(`(?m)^gatehouse ready in [0-9.]+s, kubeconfig: (\S+)$`)

// launch runs the binary with inst.args without waiting for anything.
func (inst *instance) launch(t *testing.T) *process {
	t.Helper()
	p := &process{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(gatehouseBin, inst.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.Env = append(os.Environ(), "KUBECONFIG=")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", gatehouseBin, err)
	}
	inst.runs = append(inst.runs, p)
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// start launches the binary and waits for the ready line.
func (inst *instance) start(t *testing.T) {
	t.Helper()
	began := time.Now()
	p := inst.launch(t)

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(readyTimeout)
	for {
		if m := readyLine.FindStringSubmatch(p.stdout.String()); m != nil {
			inst.kubeconfig = m[1]
			break
		}
		select {
		case <-p.done:
			t.Fatalf("gatehouse %s exited (%v) before printing its ready line; stderr:\n%s",
				strings.Join(inst.args, " "), p.waitErr, p.stderr.String())
		case <-deadline:
			t.Fatalf("gatehouse printed no ready line within %s; stdout so far:\n%s", readyTimeout, p.stdout.String())
		case <-tick.C:
		}
	}
	t.Logf("gatehouse ready after %.1fs (api port %d, data dir %s)", time.Since(began).Seconds(), inst.ports.api, inst.dataDir)

	cfg, err := clientcmd.BuildConfigFromFlags("", inst.kubeconfig)
	if err != nil {
		t.Fatalf("loading the kubeconfig %s named by the ready line: %v", inst.kubeconfig, err)
	}
	// The kill -9 test writes as fast as it can; client-go's default of 5
	// requests/s would make it a test of the rate limiter.
	cfg.QPS, cfg.Burst = 200, 400
	cfg.Timeout = 30 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("building a clientset from %s: %v", inst.kubeconfig, err)
	}
	inst.config, inst.client = cfg, client
}

// stop sends SIGTERM and waits for the process to exit. Taking longer than
// stopTimeout fails the test, and the process is then killed. It returns how
// long the exit took.
func (inst *instance) stop(t *testing.T) time.Duration {
	t.Helper()
	return inst.stopWith(t, syscall.SIGTERM)
}

// stopWith is stop with another signal.
func (inst *instance) stopWith(t *testing.T, sig os.Signal) time.Duration {
	t.Helper()
	p := inst.current()
	if p == nil || p.exited() {
		return 0
	}
	began := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Errorf("sending %v to gatehouse: %v", sig, err)
	}
	select {
	case <-p.done:
		return time.Since(began)
	case <-time.After(stopTimeout):
		t.Errorf("gatehouse still running %s after %v (expected a clean exit within 10s); killing it", stopTimeout, sig)
		inst.kill9(t)
		return time.Since(began)
	}
}

// kill9 sends SIGKILL and waits for the process to be gone.
func (inst *instance) kill9(t *testing.T) {
	t.Helper()
	p := inst.current()
	if p == nil || p.exited() {
		return
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Errorf("sending SIGKILL to gatehouse: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("gatehouse (pid %d) still running 10s after SIGKILL", p.cmd.Process.Pid)
	}
}

// restart starts gatehouse again on the same data dir and ports. The
// previous run must have exited.
func (inst *instance) restart(t *testing.T) {
	t.Helper()
	if p := inst.current(); p != nil && !p.exited() {
		t.Fatalf("restart: the previous gatehouse (pid %d) is still running", p.cmd.Process.Pid)
	}
	inst.start(t)
}

// stderr is what the current run wrote to stderr so far.
func (inst *instance) stderr() string {
	if p := inst.current(); p != nil {
		return p.stderr.String()
	}
	return ""
}

// kubectl runs kubectl against the instance.
func (inst *instance) kubectl(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return inst.kubectlIn(t, "", args...)
}

// kubectlIn runs kubectl against the instance with stdin as its input.
func (inst *instance) kubectlIn(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"--kubeconfig", inst.kubeconfig, "--cache-dir", inst.kubectlDir}, args...)
	cmd := exec.CommandContext(ctx, kubectlBin, full...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// mustKubectlIn is kubectlIn that fails the test if kubectl fails.
func (inst *instance) mustKubectlIn(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := inst.kubectlIn(t, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// dumpLogs logs every run's stderr and the tail of gatehouse.log.
func (inst *instance) dumpLogs(t *testing.T) {
	for i, p := range inst.runs {
		t.Logf("gatehouse run %d of %d (%s), stderr:\n%s", i+1, len(inst.runs), strings.Join(inst.args, " "), p.stderr.String())
	}
	path := filepath.Join(inst.dataDir, "logs", "gatehouse.log")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Logf("no %s: %v", path, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > logTail {
		lines = lines[len(lines)-logTail:]
	}
	t.Logf("last %d lines of %s:\n%s", len(lines), path, strings.Join(lines, "\n"))
}

// poll calls cond until it returns nil, failing the test with cond's last
// error if that does not happen within timeout.
func poll(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not true after %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runGatehouse runs a short gatehouse command (not `up` to readiness) and
// returns its output and exit code.
func runGatehouse(t *testing.T, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runGatehouseWith(t, timeout, "", args...)
}

// runGatehouseIn is runGatehouse with stdin.
func runGatehouseIn(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runGatehouseWith(t, 2*time.Minute, stdin, args...)
}

func runGatehouseWith(t *testing.T, timeout time.Duration, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatehouseBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("gatehouse %s did not finish within %s; stderr:\n%s", strings.Join(args, " "), timeout, errOut.String())
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("running gatehouse %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}
