package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Process is a containerd that Gatehouse started as its child.
type Process struct {
	// Endpoint is the CRI (and containerd) endpoint, unix://<socket>.
	Endpoint string
	// Socket is the socket path.
	Socket string
	Pid    int
	// Version is containerd's version as CRI reports it.
	Version string
	// StartupTime is from starting the binary to CRI answering Version.
	StartupTime time.Duration

	cmd         *exec.Cmd
	log         *os.File
	pidFile     string
	stopTimeout time.Duration
	logger      *slog.Logger
	exited      chan struct{}
	waitErr     error
	stopOnce    sync.Once
	stopErr     error
}

// Start writes containerd's config and the CNI conflist, stops a containerd
// that a previous Gatehouse left running on the same data dir, and starts
// containerd as a child in its own process group (so a Ctrl-C on
// Gatehouse's terminal reaches Gatehouse, which then stops containerd with
// Stop). It returns once CRI answers Version.
//
// A missing binary is a *MissingError (see Detect): the caller may fall
// back to the simulated runtime.
//
// Containers survive a restart of containerd: their shims are separate
// processes that the new containerd reconnects to, so pods keep running
// across a Gatehouse restart.
func Start(ctx context.Context, cfg Config) (*Process, error) {
	found, err := cfg.complete()
	if err != nil {
		return nil, err
	}
	l := Layout{cfg.DataDir}
	if err := cfg.writeFiles(); err != nil {
		return nil, err
	}
	if err := stopPrevious(l, cfg.StopTimeout, cfg.Logger); err != nil {
		return nil, err
	}
	if err := removeStaleSocket(l.Socket()); err != nil {
		return nil, err
	}

	logFile, err := os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("containerd log file: %w", err)
	}
	logStart, _ := logFile.Seek(0, io.SeekEnd)

	// Not exec.CommandContext: containerd outlives ctx (the start-up
	// context) until Stop.
	cmd := exec.Command(found.Containerd, "--config", l.ConfigFile())
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = childEnv(found)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Dir = l.Dir()
	began := time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", found.Containerd, err)
	}
	p := &Process{
		Endpoint:    l.Endpoint(),
		Socket:      l.Socket(),
		Pid:         cmd.Process.Pid,
		cmd:         cmd,
		log:         logFile,
		pidFile:     l.PidFile(),
		stopTimeout: cfg.StopTimeout,
		logger:      cfg.Logger,
		exited:      make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	if err := writeFileAtomic(p.pidFile, []byte(strconv.Itoa(p.Pid)+"\n"), 0o644); err != nil {
		p.Stop()
		return nil, err
	}

	readyCtx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()
	version, err := p.waitReady(readyCtx)
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("containerd (%s, log %s) did not become ready: %w%s", found.Containerd, cfg.LogFile, err, logTail(cfg.LogFile, logStart))
	}
	p.Version = version
	p.StartupTime = time.Since(began)
	cfg.Logger.Info("containerd ready", "version", version, "pid", p.Pid, "endpoint", p.Endpoint,
		"startup", p.StartupTime.Round(time.Millisecond), "log", cfg.LogFile)
	return p, nil
}

// waitReady polls CRI's Version until it answers, containerd exits or ctx
// ends.
func (p *Process) waitReady(ctx context.Context) (string, error) {
	// Reconnect quickly: grpc's default backoff waits a second after the
	// first refused dial, which would be most of containerd's start-up.
	backoffConfig := backoff.DefaultConfig
	backoffConfig.BaseDelay, backoffConfig.MaxDelay = 10*time.Millisecond, 100*time.Millisecond
	conn, err := grpc.NewClient("unix://"+p.Socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoffConfig, MinConnectTimeout: time.Second}))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	client := runtimeapi.NewRuntimeServiceClient(conn)
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := client.Version(attempt, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return resp.RuntimeVersion, nil
		}
		last = err
		select {
		case <-p.exited:
			return "", fmt.Errorf("containerd exited: %v", p.waitErr)
		case <-ctx.Done():
			return "", fmt.Errorf("%w; last CRI error: %v", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Exited is closed when containerd has exited, whether stopped or not.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Stop sends containerd SIGTERM, waits up to the stop timeout, then sends
// SIGKILL. Running containers are left to their shims. Stop is safe to call
// more than once.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		p.stopErr = terminate(p.cmd.Process.Pid, p.exited, p.stopTimeout)
		// The pid file is ours unless a later Start took over the data
		// dir (and stopped this containerd).
		if data, err := os.ReadFile(p.pidFile); err == nil && strings.TrimSpace(string(data)) == strconv.Itoa(p.Pid) {
			if err := os.Remove(p.pidFile); err != nil {
				p.logger.Warn("removing containerd's pid file", "err", err)
			}
		}
		p.log.Close()
	})
	return p.stopErr
}

// terminate stops pid, whose exit closes exited.
func terminate(pid int, exited <-chan struct{}, timeout time.Duration) error {
	select {
	case <-exited:
		return nil
	default:
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping containerd (pid %d): %w", pid, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing containerd (pid %d): %w", pid, err)
	}
	select {
	case <-exited:
		return fmt.Errorf("containerd (pid %d) did not stop within %v of SIGTERM and was killed", pid, timeout)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("containerd (pid %d) still running 5s after SIGKILL", pid)
	}
}

// stopPrevious stops the containerd recorded in the pid file if it is still
// running with our config: Gatehouse was killed without stopping it. Its
// containers keep running and the new containerd takes them over.
func stopPrevious(l Layout, timeout time.Duration, logger *slog.Logger) error {
	data, err := os.ReadFile(l.PidFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", l.PidFile(), err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		logger.Warn("ignoring a malformed containerd pid file", "file", l.PidFile())
		return os.Remove(l.PidFile())
	}
	if !isOurContainerd(pid, l.ConfigFile()) {
		// The process is gone, or the pid was reused by another one.
		return os.Remove(l.PidFile())
	}
	logger.Info("stopping the containerd left running by a previous Gatehouse", "pid", pid)
	// Not our child: poll for its exit.
	exited := make(chan struct{})
	done := make(chan struct{})
	defer close(done)
	go func() {
		for isOurContainerd(pid, l.ConfigFile()) {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		close(exited)
	}()
	if err := terminate(pid, exited, timeout); err != nil {
		return err
	}
	return os.Remove(l.PidFile())
}

// isOurContainerd reports whether pid is alive (not a zombie) and is a
// containerd started with configFile.
func isOurContainerd(pid int, configFile string) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 3 || filepath.Base(args[0]) != "containerd" {
		return false
	}
	for i := 1; i+1 < len(args); i++ {
		if args[i] == "--config" && args[i+1] == configFile {
			return true
		}
	}
	return false
}

// removeStaleSocket removes a socket file nobody listens on (left by a
// containerd that was killed); one that answers belongs to a containerd
// this data dir's pid file does not know, which is an error.
func removeStaleSocket(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("something already serves %s, not started by this data dir's Gatehouse (no pid file): stop it or use another --data-dir", path)
	}
	for _, p := range []string{path, path + ".ttrpc"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing the stale socket %s: %w", p, err)
		}
	}
	return nil
}

// childEnv is Gatehouse's environment with the directories of the shim and
// runc put first in PATH: containerd looks both up there.
func childEnv(f Found) []string {
	dirs := []string{filepath.Dir(f.Shim), filepath.Dir(f.Runc)}
	env := os.Environ()
	path := os.Getenv("PATH")
	for _, d := range dirs {
		if !strings.Contains(":"+path+":", ":"+d+":") {
			path = d + ":" + path
		}
	}
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PATH=") {
			out = append(out, kv)
		}
	}
	return append(out, "PATH="+strings.TrimSuffix(path, ":"))
}

// logTail returns the log written since offset, at most its last 20 lines,
// to explain a failed start.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	data, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return "\ncontainerd's log:\n" + strings.Join(lines, "\n")
}
