// Command probes measures what probes cost the node: it runs N pods
// without probes, then N pods each with an httpGet readiness probe and an
// exec liveness probe (--exec=false: the httpGet probe only) every
// --period, and reports over a --measure window
// of each the node agent's CPU and RSS and the runtime's CPU (containerd,
// its shims and the runc processes they reap, which run exec probes).
//
//	go run ./bench/probes --kubeconfig DIR/kubeconfig --pods 50
//
// The node agent is found as the `gatehouse node` process whose
// --kubeconfig is DIR/node.conf (bench/run.sh's with_node runs it so), the
// runtime as the processes with DIR/node in their command line; --node-pid
// names the agent otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on
// Linux for every architecture Gatehouse builds for).
const clockTicks = 100

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster to measure")
	pods := flag.Int("pods", 50, "pods per phase")
	period := flag.Int("period", 1, "probe periodSeconds")
	measure := flag.Duration("measure", 30*time.Second, "measuring window per phase, once all pods are ready")
	image := flag.String("image", "gatehouse.test/busybox:1", "image of the pods (present on the node; needs sh, httpd and true)")
	withExec := flag.Bool("exec", true, "give each pod an exec liveness probe besides its httpGet readiness probe")
	nodePID := flag.Int("node-pid", 0, "the node agent's process (found from --kubeconfig when 0)")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up on a phase after this long")
	flag.Parse()
	if err := run(*kubeconfig, *pods, *period, *measure, *image, *withExec, *nodePID, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "probes:", err)
		os.Exit(1)
	}
}

type figures struct {
	phase                  string
	probesPerSecond        float64
	agentCPU, runtimeCPU   float64 // share of one core
	agentRSS               int64   // bytes
	agentCPUs, runtimeCPUs float64 // CPU seconds in the window
	window                 time.Duration
}

func run(kubeconfig string, pods, period int, measure time.Duration, image string, withExec bool, nodePID int, timeout time.Duration) error {
	if pods < 1 || period < 1 {
		return fmt.Errorf("--pods and --period must be positive")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("--kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dir := filepath.Dir(kubeconfig)
	if nodePID == 0 {
		if nodePID, err = findAgent(filepath.Join(dir, "node.conf")); err != nil {
			return err
		}
	}
	var results []figures
	for _, withProbes := range []bool{false, true} {
		f, err := phase(client, pods, period, measure, image, nodePID, filepath.Join(dir, "node"), withProbes, withProbes && withExec, timeout)
		if err != nil {
			return err
		}
		results = append(results, f)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PHASE\tPODS\tPROBES/S\tAGENT CPU\tAGENT RSS\tRUNTIME CPU")
	for _, f := range results {
		fmt.Fprintf(w, "%s\t%d\t%.0f\t%.1f %%\t%.0f MB\t%.1f %%\n", f.phase, pods, f.probesPerSecond, 100*f.agentCPU, float64(f.agentRSS)/(1<<20), 100*f.runtimeCPU)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	none, with := results[0], results[1]
	probes := with.probesPerSecond * with.window.Seconds()
	fmt.Printf("per probe: node agent %.2f ms CPU, runtime %.2f ms CPU; per pod (%.0f probes every %d s): node agent %.2f %% of a core, %.2f MB\n",
		1000*(with.agentCPUs-none.agentCPUs*with.window.Seconds()/none.window.Seconds())/probes,
		1000*(with.runtimeCPUs-none.runtimeCPUs*with.window.Seconds()/none.window.Seconds())/probes,
		with.probesPerSecond*float64(period)/float64(pods), period, 100*(with.agentCPU-none.agentCPU)/float64(pods), float64(with.agentRSS-none.agentRSS)/(1<<20)/float64(pods))
	return nil
}

// phase runs the pods (with or without probes) until all are ready, then
// measures for the window, then deletes them.
func phase(client kubernetes.Interface, n, period int, measure time.Duration, image string, agent int, runtimeMark string, withProbes, withExec bool, timeout time.Duration) (figures, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	name := "none"
	if withProbes {
		name = "probes"
	}
	ns := fmt.Sprintf("bench-probes-%s-%d", name, time.Now().Unix())
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return figures{}, err
	}
	defer cleanUp(client, ns)
	for {
		if _, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return figures{}, fmt.Errorf("namespace %s has no default ServiceAccount", ns)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for i := range n {
		c := corev1.Container{
			Name: "c", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"sh", "-c", "echo ok > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"},
		}
		if withProbes {
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/index.html", Port: intstr.FromInt32(8080)}}, PeriodSeconds: int32(period)}
			if withExec {
				c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, PeriodSeconds: int32(period)}
			}
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%03d", i)},
			Spec:       corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](0), Containers: []corev1.Container{c}},
		}
		if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return figures{}, err
		}
	}
	for {
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return figures{}, err
		}
		ready := 0
		for i := range list.Items {
			if podReady(&list.Items[i]) {
				ready++
			}
		}
		if ready == n {
			break
		}
		select {
		case <-ctx.Done():
			return figures{}, fmt.Errorf("%s: only %d of %d pods ready after %s", name, ready, n, timeout)
		case <-time.After(time.Second):
		}
	}
	fmt.Fprintf(os.Stderr, "%s: %d pods ready, measuring for %s\n", name, n, measure)
	// Let the start settle (status writes, first probes) before measuring.
	time.Sleep(5 * time.Second)
	began := time.Now()
	agent0, err := cpuSeconds(agent)
	if err != nil {
		return figures{}, err
	}
	runtime0 := runtimeCPU(runtimeMark, agent)
	time.Sleep(measure)
	window := time.Since(began)
	agent1, err := cpuSeconds(agent)
	if err != nil {
		return figures{}, err
	}
	runtime1 := runtimeCPU(runtimeMark, agent)
	var runtimeUsed float64
	for pid, t := range runtime1 {
		if t0, ok := runtime0[pid]; ok {
			runtimeUsed += t - t0
		}
	}
	rss, err := rssBytes(agent)
	if err != nil {
		return figures{}, err
	}
	f := figures{
		phase: name, window: window, agentRSS: rss,
		agentCPUs: agent1 - agent0, runtimeCPUs: runtimeUsed,
		agentCPU: (agent1 - agent0) / window.Seconds(), runtimeCPU: runtimeUsed / window.Seconds(),
	}
	switch {
	case withExec:
		f.probesPerSecond = float64(2*n) / float64(period)
	case withProbes:
		f.probesPerSecond = float64(n) / float64(period)
	}
	return f, nil
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// findAgent is the `gatehouse node` process run with --kubeconfig conf.
func findAgent(conf string) (int, error) {
	for pid, args := range processes() {
		if len(args) > 1 && filepath.Base(args[0]) == "gatehouse" && args[1] == "node" && strings.Contains(strings.Join(args, " "), "--kubeconfig "+conf) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no `gatehouse node --kubeconfig %s` process: give --node-pid", conf)
}

// processes maps every process to its command line.
func processes() map[int][]string {
	out := map[int][]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		out[pid] = strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	}
	return out
}

// runtimeCPU is the CPU seconds of each runtime process (containerd and
// its shims: their command lines name the node's data dir), with those of
// the children they reaped (runc, exec'd probe commands).
func runtimeCPU(mark string, agent int) map[int]float64 {
	out := map[int]float64{}
	for pid, args := range processes() {
		if pid == agent || !strings.Contains(strings.Join(args, " "), mark) {
			continue
		}
		if t, err := cpuSeconds(pid); err == nil {
			out[pid] = t
		}
	}
	return out
}

// cpuSeconds is utime+stime+cutime+cstime of a process.
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command, which is in parentheses and may hold
	// spaces: state is field 3, utime 14 … cstime 17.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	var ticks int64
	for _, f := range fields[11:15] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return float64(ticks) / clockTicks, nil
}

func rssBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// cleanUp deletes the namespace and waits until it is gone, so the next
// phase starts on an empty node.
func cleanUp(client kubernetes.Interface, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_ = client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	for ctx.Err() == nil {
		if _, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
