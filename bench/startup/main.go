// Command startup measures Gatehouse's cold start and idle memory: for each
// run it starts the binary on a fresh data directory and random ports, and
// records the time to the API server's /readyz, the time to the "ready" line
// (every component healthy), and the resident memory after an idle period.
//
//	go run ./bench/startup --bin bin/gatehouse --runs 5 --idle 20s
//
// A run on a fresh data directory includes generating the CA and keys, as a
// first start does; --reuse measures restarts on an existing directory.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/gatehouse", "the gatehouse binary")
	runs := flag.Int("runs", 5, "number of starts")
	idle := flag.Duration("idle", 20*time.Second, "idle time before reading RSS")
	reuse := flag.Bool("reuse", false, "restart on the same data directory instead of a fresh one")
	var extra []string
	flag.Func("arg", "extra argument for gatehouse up (repeatable), e.g. --arg=--trace=false", func(v string) error {
		extra = append(extra, v)
		return nil
	})
	flag.Parse()
	upArgs = extra
	if err := run(*bin, *runs, *idle, *reuse); err != nil {
		fmt.Fprintln(os.Stderr, "startup:", err)
		os.Exit(1)
	}
}

type sample struct {
	readyz, ready time.Duration
	rssMB         float64
}

func run(bin string, runs int, idle time.Duration, reuse bool) error {
	base, err := os.MkdirTemp("", "gatehouse-bench-startup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)
	var samples []sample
	for i := range runs {
		dir := filepath.Join(base, strconv.Itoa(i))
		if reuse {
			dir = filepath.Join(base, "shared")
		}
		s, err := once(bin, dir, idle)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Fprintf(os.Stderr, "run %d: readyz %s, ready %s, idle RSS %.0f MB\n", i+1, s.readyz.Round(time.Millisecond), s.ready.Round(time.Millisecond), s.rssMB)
		samples = append(samples, s)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tMEDIAN\tMAX")
	row := func(name string, f func(sample) float64, unit string) {
		v := make([]float64, len(samples))
		for i, s := range samples {
			v[i] = f(s)
		}
		slices.Sort(v)
		fmt.Fprintf(tw, "%s\t%.2f %s\t%.2f %s\n", name, v[len(v)/2], unit, v[len(v)-1], unit)
	}
	row("cold start to /readyz", func(s sample) float64 { return s.readyz.Seconds() }, "s")
	row("cold start to ready (all components)", func(s sample) float64 { return s.ready.Seconds() }, "s")
	row("idle RSS", func(s sample) float64 { return s.rssMB }, "MB")
	return tw.Flush()
}

// upArgs are extra arguments for every gatehouse up (--arg).
var upArgs []string

func once(bin, dir string, idle time.Duration) (sample, error) {
	ports, err := freePorts(6)
	if err != nil {
		return sample{}, err
	}
	args := []string{"up", "--node=false", "--data-dir", dir,
		"--api-port", ports[0], "--etcd-client-port", ports[1], "--etcd-peer-port", ports[2],
		"--controller-manager-port", ports[3], "--scheduler-port", ports[4], "--kubelet-port", ports[5]}
	args = append(args, upArgs...)
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return sample{}, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()

	readyLine := make(chan time.Duration, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready") {
				readyLine <- time.Since(start)
			}
		}
	}()
	readyz, err := pollReadyz(dir, ports[0], start)
	if err != nil {
		return sample{}, err
	}
	var s sample
	s.readyz = readyz
	select {
	case s.ready = <-readyLine:
	case <-time.After(2 * time.Minute):
		return sample{}, fmt.Errorf("no ready line within 2 minutes")
	}
	time.Sleep(idle)
	s.rssMB, err = rssMB(cmd.Process.Pid)
	return s, err
}

// pollReadyz asks /readyz with the admin certificate as soon as the data
// directory has one, every 20 ms.
func pollReadyz(dir, port string, start time.Time) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		if client, err := adminClient(dir); err == nil {
			resp, err := client.Get("https://127.0.0.1:" + port + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return time.Since(start), nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("/readyz not ready within 2 minutes")
}

func adminClient(dir string) (*http.Client, error) {
	pki := filepath.Join(dir, "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}}}, nil
}

func rssMB(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.Atoi(f[1])
			return float64(kb) / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func freePorts(n int) ([]string, error) {
	var ports []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}
