package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/kubelet/containerd/containerdtest"
)

// TestNodeProbes runs probes, lifecycle hooks and resource limits on real
// containers (containerd, runc, CNI). A hostPath directory of the test's
// (ctl) lets the test drive probes from outside the pods and read what
// hooks wrote; an HTTP server on the pod bridge's gateway address (the
// host as pods reach it) receives the httpGet preStop hook.
func TestNodeProbes(t *testing.T) {
	containerdtest.RequireNode(t)
	inst := startNode(t, "auto")
	ctl := t.TempDir()

	// Every status the poststart-fail pod goes through, to catch its
	// short PostStartHookError between a failed start and the next.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	reasons := watchWaitingReasons(t, watchCtx, inst, "poststart-fail")

	inst.mustKubectlIn(t, strings.NewReplacer("BUSYBOX", busybox, "CTL", ctl).Replace(probePods), "apply", "-f", "-")

	t.Run("a failing liveness probe restarts the container, with Unhealthy and Killing events", func(t *testing.T) {
		pod := inst.waitPod(t, "liveness", time.Minute, func(p *v1.Pod) error {
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].RestartCount < 1 {
				return fmt.Errorf("statuses %+v", p.Status.ContainerStatuses)
			}
			return nil
		})
		ev := inst.events(t, "liveness")
		for _, want := range []string{
			"Warning Unhealthy: Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory",
			"Normal Killing: Container c failed liveness probe, will be restarted",
		} {
			if !hasEvent(ev, want) {
				t.Errorf("events %q lack %q", ev, want)
			}
		}
		if last := pod.Status.ContainerStatuses[0].LastTerminationState.Terminated; last == nil || last.ExitCode != 137 && last.ExitCode != 143 {
			t.Errorf("lastState %+v, want the killed container (137 or 143)", last)
		}
	})

	t.Run("readiness gates the Ready condition and the EndpointSlice", func(t *testing.T) {
		inst.mustKubectlIn(t, "", "create", "service", "clusterip", "ready", "--tcp=80:8080")
		notReady := func(p *v1.Pod) error {
			if err := podReady(p, false); err != nil {
				return err
			}
			return endpointReady(t, inst, "ready", p.Status.PodIP, false)
		}
		isReady := func(p *v1.Pod) error {
			if err := podReady(p, true); err != nil {
				return err
			}
			return endpointReady(t, inst, "ready", p.Status.PodIP, true)
		}
		// httpd serves ctl: /ready answers 404 until the test writes it.
		pod := inst.waitPod(t, "ready", time.Minute, notReady)
		if c := pod.Status.ContainerStatuses[0]; c.State.Running == nil || c.Started == nil || !*c.Started {
			t.Fatalf("container %+v, want running and started (no startup probe)", c)
		}
		if ev := inst.events(t, "ready"); !hasEvent(ev, "Warning Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 404") {
			t.Errorf("events %q", ev)
		}
		writeCtl(t, filepath.Join(ctl, "ready"), "yes")
		inst.waitPod(t, "ready", 30*time.Second, isReady)
		if err := os.Remove(filepath.Join(ctl, "ready")); err != nil {
			t.Fatal(err)
		}
		pod = inst.waitPod(t, "ready", 30*time.Second, notReady)
		if n := pod.Status.ContainerStatuses[0].RestartCount; n != 0 {
			t.Errorf("a failing readiness probe restarted the container %d times", n)
		}
	})

	t.Run("a startup probe holds liveness back until it passes", func(t *testing.T) {
		// The liveness probe always fails; until the startup probe passes
		// it must not run.
		poll(t, 30*time.Second, func() error {
			if n := eventCount(t, inst, "startup", "Startup probe failed"); n < 3 {
				return fmt.Errorf("%d startup probe failures so far", n)
			}
			return nil
		})
		pod := inst.pod(t, "startup")
		c := pod.Status.ContainerStatuses[0]
		if n := eventCount(t, inst, "startup", "Liveness probe"); n != 0 || c.RestartCount != 0 || c.Started == nil || *c.Started || c.Ready {
			t.Fatalf("before startup passed: %d liveness events, container %+v", n, c)
		}
		writeCtl(t, filepath.Join(ctl, "started"), "yes")
		inst.waitPod(t, "startup", 30*time.Second, func(p *v1.Pod) error {
			if c := p.Status.ContainerStatuses[0]; c.RestartCount < 1 {
				return fmt.Errorf("container %+v", c)
			}
			return nil
		})
		if ev := inst.events(t, "startup"); !hasEvent(ev, "Normal Killing: Container c failed liveness probe, will be restarted") {
			t.Errorf("events %q", ev)
		}
	})

	t.Run("postStart runs in the container; a failing one kills it (PostStartHookError)", func(t *testing.T) {
		inst.waitPod(t, "poststart", time.Minute, running)
		poll(t, 30*time.Second, func() error {
			out, _, err := inst.kubectl(t, "logs", "poststart")
			if err != nil || !strings.Contains(out, "written by postStart") {
				return fmt.Errorf("kubectl logs: %q %v", out, err)
			}
			return nil
		})
		pod := inst.waitPod(t, "poststart-fail", time.Minute, func(p *v1.Pod) error {
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].RestartCount < 1 {
				return fmt.Errorf("statuses %+v", p.Status.ContainerStatuses)
			}
			return nil
		})
		poll(t, 10*time.Second, func() error {
			if !reasons.seen("PostStartHookError", `Exec lifecycle hook ([sh -c echo hook failing; exit 7]) for Container "c" in Pod "poststart-fail_default(`) {
				return fmt.Errorf("waiting reasons seen: %q", reasons.all())
			}
			return nil
		})
		ev := inst.events(t, "poststart-fail")
		for _, want := range []string{"Warning FailedPostStartHook: PostStartHook failed", "Normal Killing: FailedPostStartHook"} {
			if !hasEvent(ev, want) {
				t.Errorf("events %q lack %q", ev, want)
			}
		}
		if last := pod.Status.ContainerStatuses[0].LastTerminationState.Terminated; last == nil {
			t.Errorf("no lastState after the kill: %+v", pod.Status.ContainerStatuses[0])
		}
	})

	t.Run("a memory limit exceeded is OOMKilled, exit 137, in state and lastState", func(t *testing.T) {
		pod := inst.waitPod(t, "oom", time.Minute, func(p *v1.Pod) error {
			if p.Status.Phase != v1.PodFailed {
				return fmt.Errorf("phase %s, statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
			}
			return nil
		})
		if term := pod.Status.ContainerStatuses[0].State.Terminated; term == nil || term.Reason != "OOMKilled" || term.ExitCode != 137 {
			t.Errorf("state %+v, want terminated OOMKilled with 137", pod.Status.ContainerStatuses[0].State)
		}
		inst.waitPod(t, "oom-restarts", time.Minute, func(p *v1.Pod) error {
			if len(p.Status.ContainerStatuses) == 0 {
				return fmt.Errorf("no status")
			}
			last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated
			if last == nil || last.Reason != "OOMKilled" || last.ExitCode != 137 {
				return fmt.Errorf("lastState %+v", last)
			}
			return nil
		})
	})

	t.Run("a CPU limit of 250m is a CFS quota of 25000 per 100000 inside the container", func(t *testing.T) {
		inst.waitPod(t, "cpu", time.Minute, func(p *v1.Pod) error {
			if p.Status.Phase != v1.PodSucceeded {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		out := inst.mustKubectlIn(t, "", "logs", "cpu")
		if !strings.Contains(out, "quota=25000 period=100000") && !strings.Contains(out, "cpu.max=25000 100000") {
			t.Errorf("the container read %q", out)
		}
	})

	t.Run("preStop exec, httpGet and sleep run on delete, within the grace period", func(t *testing.T) {
		// The host as pods reach it: the bridge's gateway address.
		gateway := bridgeGateway(t)
		hits := make(chan string, 10)
		lis, err := net.Listen("tcp", net.JoinHostPort(gateway, "0"))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits <- r.URL.Path + " " + r.Header.Get("X-Hook")
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(lis) }()
		defer srv.Close()
		port := strconv.Itoa(lis.Addr().(*net.TCPAddr).Port)
		inst.mustKubectlIn(t, strings.NewReplacer("BUSYBOX", busybox, "CTL", ctl, "GATEWAY", gateway, "PORT", port).Replace(preStopPod), "apply", "-f", "-")
		inst.waitPod(t, "prestop", time.Minute, running)

		began := time.Now()
		inst.mustKubectlIn(t, "", "delete", "pod", "prestop", "--wait=true", "--timeout=60s")
		if data, err := os.ReadFile(filepath.Join(ctl, "prestop-exec")); err != nil || strings.TrimSpace(string(data)) != "exec hook ran" {
			t.Errorf("the exec preStop hook's file: %q %v", data, err)
		}
		select {
		case hit := <-hits:
			if hit != "/prestop yes" {
				t.Errorf("the httpGet preStop hook sent %q", hit)
			}
		default:
			t.Error("the httpGet preStop hook reached no server")
		}
		// The sleeper's SIGTERM handler wrote when SIGTERM came: after
		// its 3 s sleep hook (whole seconds, so at least 2 s later).
		data, err := os.ReadFile(filepath.Join(ctl, "sleeper-term"))
		if err != nil {
			t.Fatalf("the sleeper got no SIGTERM: %v", err)
		}
		term, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if d := term - began.Unix(); d < 2 {
			t.Errorf("SIGTERM came %d s after the deletion, before the 3 s sleep hook ended", d)
		}
	})
}

const probePods = `apiVersion: v1
kind: Pod
metadata: {name: liveness}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: BUSYBOX
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600']
    livenessProbe:
      exec: {command: [cat, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata: {name: ready, labels: {app: ready}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: BUSYBOX
    imagePullPolicy: IfNotPresent
    command: [httpd, -f, -p, "8080", -h, /ctl]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /ready, port: http}
      periodSeconds: 1
      failureThreshold: 1
    volumeMounts: [{name: ctl, mountPath: /ctl}]
  volumes: [{name: ctl, hostPath: {path: CTL}}]
---
apiVersion: v1
kind: Pod
metadata: {name: startup}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: BUSYBOX
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    startupProbe:
      exec: {command: [cat, /ctl/started]}
      periodSeconds: 1
      failureThreshold: 60
    livenessProbe:
      exec: {command: [cat, /no/such/file]}
      periodSeconds: 1
      failureThreshold: 1
    volumeMounts: [{name: ctl, mountPath: /ctl}]
  volumes: [{name: ctl, hostPath: {path: CTL}}]
---
apiVersion: v1
kind: Pod
metadata: {name: poststart}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: BUSYBOX
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'until [ -f /tmp/hook ]; do sleep 0.2; done; cat /tmp/hook; sleep 3600']
    lifecycle:
      postStart:
        exec: {command: [sh, -c, 'echo written by postStart > /tmp/hook']}
---
apiVersion: v1
kind: Pod
metadata: {name: poststart-fail}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: BUSYBOX
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    lifecycle:
      postStart:
        exec: {command: [sh, -c, 'echo hook failing; exit 7']}
---
apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: BUSYBOX
    imagePullPolicy: IfNotPresent
    # The sleep gives containerd's shim time to watch the cgroup: an OOM
    # kill in the container's first moments was reported as Error, not
    # OOMKilled (seen in CI; most likely the watch starts after the process).
    command: [sh, -c, 'sleep 1; exec dd if=/dev/zero of=/dev/null bs=64M count=1']
    resources: {limits: {memory: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: oom-restarts}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: BUSYBOX
    imagePullPolicy: IfNotPresent
    # The sleep gives containerd's shim time to watch the cgroup: an OOM
    # kill in the container's first moments was reported as Error, not
    # OOMKilled (seen in CI; most likely the watch starts after the process).
    command: [sh, -c, 'sleep 1; exec dd if=/dev/zero of=/dev/null bs=64M count=1']
    resources: {limits: {memory: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: cpu}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: BUSYBOX
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'if [ -f /sys/fs/cgroup/cpu.max ]; then echo "cpu.max=$(cat /sys/fs/cgroup/cpu.max)"; else echo "quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"; fi']
    resources: {limits: {cpu: 250m}}
`

// preStopPod has one container per kind of preStop hook.
const preStopPod = `apiVersion: v1
kind: Pod
metadata: {name: prestop}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: exec
    image: BUSYBOX
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 0.2; done']
    lifecycle:
      preStop:
        exec: {command: [sh, -c, 'echo exec hook ran > /ctl/prestop-exec']}
    volumeMounts: [{name: ctl, mountPath: /ctl}]
  - name: http
    image: BUSYBOX
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 0.2; done']
    lifecycle:
      preStop:
        httpGet: {host: GATEWAY, port: PORT, path: /prestop, httpHeaders: [{name: X-Hook, value: "yes"}]}
  - name: sleeper
    image: BUSYBOX
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'trap "date +%s > /ctl/sleeper-term; exit 0" TERM; while true; do sleep 0.2; done']
    lifecycle:
      preStop:
        sleep: {seconds: 3}
    volumeMounts: [{name: ctl, mountPath: /ctl}]
  volumes: [{name: ctl, hostPath: {path: CTL}}]
`

func podReady(p *v1.Pod, want bool) error {
	if p.Status.Phase != v1.PodRunning || p.Status.PodIP == "" || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Running == nil {
		return fmt.Errorf("phase %s, statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
	}
	if p.Status.ContainerStatuses[0].Ready != want {
		return fmt.Errorf("container ready %v, want %v", p.Status.ContainerStatuses[0].Ready, want)
	}
	for _, c := range p.Status.Conditions {
		if (c.Type == v1.PodReady || c.Type == v1.ContainersReady) && (c.Status == v1.ConditionTrue) != want {
			return fmt.Errorf("condition %s is %s, want ready %v", c.Type, c.Status, want)
		}
	}
	return nil
}

// endpointReady checks the service's EndpointSlice has the pod's address
// with the given readiness.
func endpointReady(t *testing.T, inst *instance, service, ip string, want bool) error {
	list, err := inst.client.DiscoveryV1().EndpointSlices("default").List(context.Background(), metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + service})
	if err != nil {
		return err
	}
	var seen []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			ready := e.Conditions.Ready != nil && *e.Conditions.Ready
			seen = append(seen, fmt.Sprintf("%v ready=%v", e.Addresses, ready))
			if len(e.Addresses) > 0 && e.Addresses[0] == ip && ready == want {
				return nil
			}
		}
	}
	return fmt.Errorf("endpoint %s with ready=%v not in the EndpointSlices of %s: %v", ip, want, service, seen)
}

// eventCount sums the counts of the pod's events whose message starts
// with prefix (the recorder folds repeated events into one).
func eventCount(t *testing.T, inst *instance, pod, prefix string) int {
	t.Helper()
	list, err := inst.client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		t.Fatalf("events of %s: %v", pod, err)
	}
	n := 0
	for _, e := range list.Items {
		if strings.HasPrefix(e.Message, prefix) {
			n += int(max(e.Count, 1))
		}
	}
	return n
}

func writeCtl(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// bridgeGateway is the IPv4 address of the node's pod bridge.
func bridgeGateway(t *testing.T) string {
	t.Helper()
	iface, err := net.InterfaceByName("gatehouse0")
	if err != nil {
		t.Fatalf("the pod bridge: %v", err)
	}
	addrs, err := iface.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Fatalf("the pod bridge has no IPv4 address: %v", addrs)
	return ""
}

// waitingReasons are the waiting reasons (with messages) one pod's
// container statuses went through, as a watch saw them.
type waitingReasons struct {
	mu   sync.Mutex
	list []string
}

func (w *waitingReasons) seen(reason, messagePrefix string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.ContainsFunc(w.list, func(s string) bool { return strings.HasPrefix(s, reason+": "+messagePrefix) })
}

func (w *waitingReasons) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.list)
}

func watchWaitingReasons(t *testing.T, ctx context.Context, inst *instance, pod string) *waitingReasons {
	t.Helper()
	watcher, err := inst.client.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + pod})
	if err != nil {
		t.Fatal(err)
	}
	out := &waitingReasons{}
	go func() {
		defer watcher.Stop()
		for ev := range watcher.ResultChan() {
			p, ok := ev.Object.(*v1.Pod)
			if !ok {
				continue
			}
			for _, c := range p.Status.ContainerStatuses {
				if w := c.State.Waiting; w != nil {
					out.mu.Lock()
					out.list = append(out.list, w.Reason+": "+w.Message)
					out.mu.Unlock()
				}
			}
		}
	}()
	return out
}

// TestNodeProbesSimulated: on the simulated runtime exec probes answer as
// the pod's annotation says, and network probes pass unsent, with an
// event saying why.
func TestNodeProbesSimulated(t *testing.T) {
	inst := startNode(t, "simulated")
	inst.mustKubectlIn(t, `apiVersion: v1
kind: Pod
metadata: {name: sim-ready}
spec:
  containers:
  - name: c
    image: busybox
    readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1}
    livenessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata:
  name: sim-unready
  annotations: {simulate.gatehouse.dev/exec-exit-code: "1"}
spec:
  containers:
  - name: c
    image: busybox
    readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1}
`, "apply", "-f", "-")
	inst.waitPod(t, "sim-ready", time.Minute, func(p *v1.Pod) error { return podReady(p, true) })
	poll(t, 30*time.Second, func() error {
		if ev := inst.events(t, "sim-ready"); !hasEvent(ev, "Normal ProbeNotRun: Liveness probe of container c not sent: the node's runtime is simulated and has no pod network") {
			return fmt.Errorf("events %q", ev)
		}
		return nil
	})
	poll(t, 30*time.Second, func() error {
		if ev := inst.events(t, "sim-unready"); !hasEvent(ev, "Warning Unhealthy: Readiness probe failed: simulated exec exit code 1") {
			return fmt.Errorf("events %q", ev)
		}
		return nil
	})
	// The event can come before the status saying Running.
	inst.waitPod(t, "sim-unready", 30*time.Second, func(p *v1.Pod) error { return podReady(p, false) })
}
