package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/gatehouse-dev/gatehouse/kubelet/containerd/containerdtest"
)

// metricsResolution is the metrics API's scrape interval in these tests
// (GATEHOUSE_METRICS_RESOLUTION), instead of metrics-server's 15 s.
const metricsResolution = "2s"

// nodeName is the only node's name.
func (inst *instance) nodeName(t *testing.T) string {
	t.Helper()
	nodes, err := inst.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		t.Fatalf("nodes: %v %v", nodes, err)
	}
	return nodes.Items[0].Name
}

// kubectlUntil starts kubectl, waits for a line of its stdout to match
// re, and returns the match; kubectl is stopped when the test ends.
func (inst *instance) kubectlUntil(t *testing.T, re *regexp.Regexp, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, kubectlBin, append([]string{"--kubeconfig", inst.kubeconfig, "--cache-dir", inst.kubectlDir}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case m := <-found:
		return m
	case <-time.After(30 * time.Second):
		t.Fatalf("kubectl %s: no line matching %s within 30s; stderr: %s", strings.Join(args, " "), re, stderr.String())
		return nil
	}
}

// waitTop polls `kubectl top` until its output has a row matching re.
func (inst *instance) waitTop(t *testing.T, re *regexp.Regexp, args ...string) []string {
	t.Helper()
	var m []string
	poll(t, 30*time.Second, func() error {
		out, stderr, err := inst.kubectl(t, append([]string{"top"}, args...)...)
		if m = re.FindStringSubmatch(out); m == nil {
			return fmt.Errorf("kubectl top %s: %q %s %v", strings.Join(args, " "), out, stderr, err)
		}
		return nil
	})
	return m
}

// TestNodeStreaming runs exec, attach, port-forward and cp through the
// node agent to containerd's streaming server, reads the kubelet's stats
// and resource metrics, and kubectl top from the in-process metrics API.
func TestNodeStreaming(t *testing.T) {
	containerdtest.RequireNode(t)
	t.Setenv("GATEHOUSE_METRICS_RESOLUTION", metricsResolution)
	inst := startNode(t, "auto")
	inst.mustKubectlIn(t, `apiVersion: v1
kind: Pod
metadata: {name: shell, labels: {app: shell}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: shell, image: `+busybox+`, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: `+busybox+`
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "mkdir -p /www && echo hello through port-forward > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: ticker, image: `+busybox+`, imagePullPolicy: IfNotPresent, command: [sh, -c, "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done"]}
`, "apply", "-f", "-")
	for _, name := range []string{"shell", "web", "ticker"} {
		inst.waitPod(t, name, time.Minute, running)
	}
	node := inst.nodeName(t)

	t.Run("exec gives the command's stdout, stderr and exit code", func(t *testing.T) {
		out, stderr, err := inst.kubectl(t, "exec", "shell", "--", "sh", "-c", "echo to stdout; echo to stderr >&2; exit 3")
		exitErr, ok := err.(*exec.ExitError)
		if !ok || exitErr.ExitCode() != 3 || out != "to stdout\n" || !strings.Contains(stderr, "to stderr") {
			t.Errorf("exec: stdout %q stderr %q err %v, want exit code 3", out, stderr, err)
		}
	})

	t.Run("exec -i passes stdin", func(t *testing.T) {
		if out := inst.mustKubectlIn(t, "line one\nline two\n", "exec", "-i", "shell", "--", "sh", "-c", "cat; echo done"); out != "line one\nline two\ndone\n" {
			t.Errorf("exec -i: %q", out)
		}
	})

	t.Run("exec -it gives the command a terminal", func(t *testing.T) {
		// script(1) runs kubectl on a pseudo-terminal, as a user's shell.
		kubectl := fmt.Sprintf("%s --kubeconfig %s --cache-dir %s exec -it shell -- sh -c 'tty; stty size'", kubectlBin, inst.kubeconfig, inst.kubectlDir)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "script", "-qec", kubectl, "/dev/null")
		cmd.Env = append(os.Environ(), "KUBECONFIG=")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err != nil || !regexp.MustCompile(`/dev/pts/\d+`).Match(out) {
			t.Errorf("exec -it: %q %v, want the container's tty", out, err)
		}
	})

	t.Run("cp copies a file into the pod and back", func(t *testing.T) {
		dir := t.TempDir()
		in := filepath.Join(dir, "in.txt")
		content := strings.Repeat("gatehouse copies this line\n", 200)
		if err := os.WriteFile(in, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		inst.mustKubectlIn(t, "", "cp", in, "shell:/tmp/copied.txt")
		if out := inst.mustKubectlIn(t, "", "exec", "shell", "--", "wc", "-l", "/tmp/copied.txt"); !strings.HasPrefix(strings.TrimSpace(out), "200 ") {
			t.Errorf("wc -l in the pod: %q", out)
		}
		back := filepath.Join(dir, "back.txt")
		inst.mustKubectlIn(t, "", "cp", "shell:/tmp/copied.txt", back)
		if data, err := os.ReadFile(back); err != nil || string(data) != content {
			t.Errorf("copied back: %d bytes, %v; want the %d bytes sent", len(data), err, len(content))
		}
	})

	t.Run("attach streams the container's output", func(t *testing.T) {
		m := inst.kubectlUntil(t, regexp.MustCompile(`^tick (\d+)$`), "attach", "ticker")
		if n, _ := strconv.Atoi(m[1]); n < 1 {
			t.Errorf("attach: %q", m)
		}
	})

	t.Run("port-forward reaches an httpd in the pod from the host", func(t *testing.T) {
		m := inst.kubectlUntil(t, regexp.MustCompile(`^Forwarding from 127\.0\.0\.1:(\d+) -> 8080$`), "port-forward", "pod/web", ":8080")
		resp, err := http.Get("http://127.0.0.1:" + m[1] + "/index.html")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "hello through port-forward\n" {
			t.Errorf("GET through port-forward: %s %q", resp.Status, body)
		}
	})

	t.Run("stats summary and resource metrics on the kubelet API", func(t *testing.T) {
		// Read as the API server's node proxy would, but directly: the
		// proxy refuses loopback node addresses (upstream's check against
		// proxying to the API server's own host), and these tests' node
		// is on 127.0.0.1. The admin's certificate, authorized by
		// SubjectAccessReview as nodes/stats and nodes/metrics.
		kubeletGet := func(path string) string {
			t.Helper()
			client, err := rest.HTTPClientFor(inst.config)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d%s", inst.ports.kubelet, path))
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %s %s", path, resp.Status, body)
			}
			return string(body)
		}
		raw := kubeletGet("/stats/summary")
		var summary struct {
			Node struct {
				NodeName string
				Memory   struct{ WorkingSetBytes uint64 }
			}
			Pods []struct {
				PodRef     struct{ Name, Namespace string }
				Containers []struct {
					Name string
					CPU  struct{ UsageCoreNanoSeconds uint64 }
				}
				Memory struct{ WorkingSetBytes uint64 }
			}
		}
		if err := json.Unmarshal([]byte(raw), &summary); err != nil {
			t.Fatalf("summary: %v\n%s", err, raw)
		}
		if summary.Node.NodeName != node || summary.Node.Memory.WorkingSetBytes == 0 {
			t.Errorf("node stats %+v", summary.Node)
		}
		found := false
		for _, p := range summary.Pods {
			if p.PodRef.Name == "shell" && p.PodRef.Namespace == "default" {
				// A sleeping busybox: some memory, far from the node's.
				found = len(p.Containers) == 1 && p.Containers[0].Name == "shell" && p.Memory.WorkingSetBytes > 0 && p.Memory.WorkingSetBytes < 64<<20
				t.Logf("pod shell: working set %d bytes; node: %d bytes", p.Memory.WorkingSetBytes, summary.Node.Memory.WorkingSetBytes)
			}
		}
		if !found {
			t.Errorf("summary lacks pod default/shell with its container and under 64 MiB of memory:\n%s", raw)
		}
		metrics := kubeletGet("/metrics/resource")
		for _, re := range []string{
			`(?m)^node_cpu_usage_seconds_total [0-9.e+]+ \d+$`,
			`(?m)^node_memory_working_set_bytes [0-9.e+]+ \d+$`,
			`(?m)^container_cpu_usage_seconds_total\{container="shell",namespace="default",pod="shell"\} [0-9.e+-]+ \d+$`,
			`(?m)^container_memory_working_set_bytes\{container="httpd",namespace="default",pod="web"\} [0-9.e+]+ \d+$`,
			`(?m)^pod_memory_working_set_bytes\{namespace="default",pod="ticker"\} [0-9.e+]+ \d+$`,
			`(?m)^resource_scrape_error 0$`,
		} {
			if !regexp.MustCompile(re).MatchString(metrics) {
				t.Errorf("/metrics/resource lacks %s:\n%s", re, metrics)
			}
		}
	})

	t.Run("kubectl top pod and top node show figures", func(t *testing.T) {
		m := inst.waitTop(t, regexp.MustCompile(`(?m)^ticker\s+\d+m\s+\d+Mi\s*$`), "pod", "ticker")
		t.Logf("kubectl top pod ticker: %s", m[0])
		// With a label selector, as kubectl top pod -l lists PodMetrics.
		out := inst.waitTop(t, regexp.MustCompile(`(?s)^NAME.*\nshell\s+\d+m\s+\d+Mi\s*$`), "pod", "-l", "app=shell")
		if strings.Contains(out[0], "ticker") {
			t.Errorf("top pod -l app=shell shows other pods:\n%s", out[0])
		}
		m = inst.waitTop(t, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(node)+`\s+(\d+)m\s+(\d+)%\s+(\d+)Mi\s+(\d+)%\s*$`), "node")
		t.Logf("kubectl top node: %s", m[0])
		if cpu, _ := strconv.Atoi(m[1]); cpu == 0 {
			t.Errorf("top node: no CPU use: %q", m)
		}
		if mem, _ := strconv.Atoi(m[3]); mem == 0 {
			t.Errorf("top node: no memory: %q", m)
		}
	})
}

// TestNodeStreamingSimulated: the simulated runtime refuses exec with a
// clear error, and its constant figures reach kubectl top.
func TestNodeStreamingSimulated(t *testing.T) {
	t.Setenv("GATEHOUSE_METRICS_RESOLUTION", metricsResolution)
	inst := startNode(t, "simulated")
	inst.mustKubectlIn(t, "", "run", "sim", "--image=busybox", "--labels=app=sim")
	inst.waitPod(t, "sim", time.Minute, running)

	t.Run("exec is refused with the runtime's reason", func(t *testing.T) {
		_, stderr, err := inst.kubectl(t, "exec", "sim", "--", "true")
		if err == nil || !strings.Contains(stderr, "not supported by the simulated runtime") {
			t.Errorf("exec on the simulated runtime: err %v, stderr %q", err, stderr)
		}
		t.Logf("kubectl exec: %s", strings.TrimSpace(stderr))
	})

	t.Run("kubectl top shows the simulated figures", func(t *testing.T) {
		// Each simulated container: 1m of CPU, 2 MiB of working set. The
		// rate's window is from millisecond timestamps (as metrics-server's)
		// and kubectl rounds up, so a hair over 1m shows as 2m.
		inst.waitTop(t, regexp.MustCompile(`(?m)^sim\s+[12]m\s+2Mi\s*$`), "pod", "-l", "app=sim")
		raw := inst.mustKubectlIn(t, "", "get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/sim")
		var pm struct {
			Window     string
			Containers []struct{ Usage map[string]resource.Quantity }
		}
		if err := json.Unmarshal([]byte(raw), &pm); err != nil || len(pm.Containers) != 1 {
			t.Fatalf("PodMetrics sim: %v\n%s", err, raw)
		}
		cpu, mem := pm.Containers[0].Usage["cpu"], pm.Containers[0].Usage["memory"]
		if n := cpu.ScaledValue(resource.Nano); n < 900_000 || n > 1_100_000 || mem.Value() != 2<<20 {
			t.Errorf("PodMetrics sim: cpu %s memory %s, want about 1m and 2Mi", cpu.String(), mem.String())
		}
		inst.waitTop(t, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(inst.nodeName(t))+`\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%\s*$`), "node")
	})
}
