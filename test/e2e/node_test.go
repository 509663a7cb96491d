package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace/noop"
	criclient "k8s.io/cri-client/pkg"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/internal/testimage"
	"github.com/gatehouse-dev/gatehouse/kubelet/containerd/containerdtest"
)

const busybox = "gatehouse.test/busybox:1"

// startNode starts gatehouse with its node agent on the given runtime
// and, for containerd, the test busybox image loaded. Pods are deleted
// before gatehouse stops, so their containers do not outlive the test.
func startNode(t *testing.T, runtime string, extraArgs ...string) *instance {
	t.Helper()
	// Registered before the instance's own cleanup, so it runs after the
	// instance has stopped (cleanups run last first).
	var dataDir string
	if runtime != "simulated" {
		t.Cleanup(func() {
			if dataDir != "" {
				cleanUpNode(t, dataDir)
			}
		})
	}
	inst := newInstance(t, append([]string{"--node=true", "--runtime", runtime}, extraArgs...)...)
	dataDir = inst.dataDir
	inst.start(t)
	t.Cleanup(func() { deleteAllPods(t, inst) })
	if runtime == "simulated" {
		return inst
	}
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testimage.WriteOCI(f, busybox); err != nil {
		t.Fatal(err)
	}
	f.Close()
	stdout, stderr, code := runGatehouse(t, time.Minute, "images", "load", "--data-dir", inst.dataDir, archive)
	if code != 0 || !strings.Contains(stdout, "Loaded image: "+busybox) {
		t.Fatalf("gatehouse images load: exit %d\n%s%s", code, stdout, stderr)
	}
	return inst
}

// deleteAllPods deletes every pod of the default namespace and waits for
// the node agent to have stopped them (it deletes the pod objects last).
func deleteAllPods(t *testing.T, inst *instance) {
	if p := inst.current(); p == nil || p.exited() || inst.client == nil {
		return
	}
	_, _, _ = inst.kubectl(t, "delete", "deployments,jobs", "--all", "--wait=false")
	_, _, _ = inst.kubectl(t, "delete", "pods", "--all", "--wait=false")
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		pods, err := inst.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
		if err == nil && len(pods.Items) == 0 && runtimeEmpty(inst.dataDir) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("pods or their sandboxes still present 90s after deleting them all")
}

// runtimeEmpty reports whether Gatehouse's containerd (if any) has no pod
// sandbox left: the node agent removes them after the pod objects.
func runtimeEmpty(dataDir string) bool {
	socket := filepath.Join(dataDir, "containerd", "containerd.sock")
	if _, err := os.Stat(socket); err != nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rt, err := criclient.NewRemoteRuntimeService(ctx, "unix://"+socket, 5*time.Second, noop.NewTracerProvider(), false)
	if err != nil {
		return false
	}
	defer rt.Close(ctx)
	sandboxes, err := rt.ListPodSandbox(ctx, nil)
	return err == nil && len(sandboxes) == 0
}

// cleanUpNode fails the test on processes that outlived Gatehouse with its
// data dir in their command line (shims, containerd), kills them, and
// removes the pod bridge the test's node made.
func cleanUpNode(t *testing.T, dataDir string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), dataDir) {
			continue
		}
		t.Errorf("process %d outlived gatehouse: %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " "))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = exec.Command("ip", "link", "delete", "gatehouse0").Run()
}

func (inst *instance) pod(t *testing.T, name string) *v1.Pod {
	t.Helper()
	pod, err := inst.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("pod %s: %v", name, err)
	}
	return pod
}

// waitPod polls the pod until cond says yes, reporting cond's last words.
func (inst *instance) waitPod(t *testing.T, name string, timeout time.Duration, cond func(*v1.Pod) error) *v1.Pod {
	t.Helper()
	var pod *v1.Pod
	poll(t, timeout, func() error {
		var err error
		pod, err = inst.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		return cond(pod)
	})
	return pod
}

func running(pod *v1.Pod) error {
	if pod.Status.Phase != v1.PodRunning || pod.Status.PodIP == "" {
		return fmt.Errorf("phase %s, pod IP %q, statuses %+v", pod.Status.Phase, pod.Status.PodIP, pod.Status.ContainerStatuses)
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodReady && c.Status != v1.ConditionTrue {
			return fmt.Errorf("not ready: %s", c.Message)
		}
	}
	return nil
}

func waitingReason(reasons ...string) func(*v1.Pod) error {
	return func(pod *v1.Pod) error {
		for _, c := range pod.Status.ContainerStatuses {
			if w := c.State.Waiting; w != nil && slices.Contains(reasons, w.Reason) {
				return nil
			}
		}
		return fmt.Errorf("no container waiting with %v: %+v", reasons, pod.Status.ContainerStatuses)
	}
}

// events are the pod's events as "Type Reason: message" lines.
func (inst *instance) events(t *testing.T, pod string) []string {
	t.Helper()
	list, err := inst.client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		t.Fatalf("events of %s: %v", pod, err)
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Type+" "+e.Reason+": "+e.Message)
	}
	return out
}

func hasEvent(events []string, prefix string) bool {
	return slices.ContainsFunc(events, func(e string) bool { return strings.HasPrefix(e, prefix) })
}

// TestNodeContainerd runs pods for real: containerd (Gatehouse's child),
// runc, CNI, a locally built busybox image and a registry on loopback.
func TestNodeContainerd(t *testing.T) {
	containerdtest.RequireNode(t)
	inst := startNode(t, "auto")
	registry := testimage.StartRegistry(t)
	pushed := pushBusybox(t, registry, "e2e/busybox", "1")

	// The slow ones first: a crash loop takes 10 s, then 20 s, of
	// back-off before its second restart.
	inst.mustKubectlIn(t, "", "run", "crasher", "--image="+busybox, "--image-pull-policy=IfNotPresent", "--command", "--", "sh", "-c", "echo crashing; exit 3")
	inst.mustKubectlIn(t, "", "run", "missing", "--image="+registry+"/e2e/nope:1")
	inst.mustKubectlIn(t, "", "run", "hello", "--image="+busybox, "--image-pull-policy=IfNotPresent", "--command", "--", "sh", "-c", "echo hello from $(hostname); sleep 3600")

	t.Run("kubectl run reaches Running with a pod IP; kubectl logs shows its output", func(t *testing.T) {
		pod := inst.waitPod(t, "hello", time.Minute, running)
		if !strings.HasPrefix(pod.Status.PodIP, "10.244.") {
			t.Errorf("pod IP %s, want one from the node's pod CIDR 10.244.0.0/24", pod.Status.PodIP)
		}
		poll(t, 10*time.Second, func() error {
			out, stderr, err := inst.kubectl(t, "logs", "hello")
			if err != nil || !strings.Contains(out, "hello from hello") {
				return fmt.Errorf("kubectl logs: %q %s %v", out, stderr, err)
			}
			return nil
		})
		// -f streams until the container ends; the line is there at once.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		follow := exec.CommandContext(ctx, kubectlBin, "--kubeconfig", inst.kubeconfig, "logs", "-f", "hello")
		stdout, err := follow.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := follow.Start(); err != nil {
			t.Fatal(err)
		}
		line := make([]byte, 64)
		n, _ := io.ReadAtLeast(stdout, line, len("hello from hello"))
		cancel()
		_ = follow.Wait()
		if !strings.HasPrefix(string(line[:n]), "hello from hello") {
			t.Errorf("kubectl logs -f: %q", line[:n])
		}
		ev := inst.events(t, "hello")
		for _, want := range []string{"Normal Scheduled", `Normal Pulled: Container image "` + busybox + `" already present on machine`, "Normal Created", "Normal Started"} {
			if !hasEvent(ev, want) {
				t.Errorf("events %q lack %q", ev, want)
			}
		}
		c := pod.Status.ContainerStatuses[0]
		if !strings.HasPrefix(c.ContainerID, "containerd://") || c.ImageID == "" || !c.Ready || c.Started == nil || !*c.Started {
			t.Errorf("container status %+v", c)
		}
	})

	t.Run("a missing image gives ErrImagePull then ImagePullBackOff, with events", func(t *testing.T) {
		inst.waitPod(t, "missing", time.Minute, waitingReason("ImagePullBackOff"))
		ev := inst.events(t, "missing")
		for _, want := range []string{"Normal Pulling", "Warning Failed: Failed to pull image", "Warning Failed: Error: ErrImagePull", "Normal BackOff: Back-off pulling image"} {
			if !hasEvent(ev, want) {
				t.Errorf("events %q lack %q", ev, want)
			}
		}
	})

	t.Run("pull policies: Always pulls, IfNotPresent does not pull again, Never without the image fails", func(t *testing.T) {
		inst.mustKubectlIn(t, "", "run", "always", "--image="+pushed, "--image-pull-policy=Always", "--command", "--", "sleep", "3600")
		inst.waitPod(t, "always", time.Minute, running)
		if ev := inst.events(t, "always"); !hasEvent(ev, "Normal Pulling") || !hasEvent(ev, `Normal Pulled: Successfully pulled image "`+pushed+`"`) {
			t.Errorf("Always: events %q, want Pulling and Successfully pulled", ev)
		}
		inst.mustKubectlIn(t, "", "run", "present", "--image="+pushed, "--image-pull-policy=IfNotPresent", "--command", "--", "sleep", "3600")
		inst.waitPod(t, "present", time.Minute, running)
		if ev := inst.events(t, "present"); hasEvent(ev, "Normal Pulling") || !hasEvent(ev, "Normal Pulled: Container image") {
			t.Errorf("IfNotPresent: events %q, want no pull", ev)
		}
		inst.mustKubectlIn(t, "", "run", "never", "--image="+registry+"/e2e/absent:1", "--image-pull-policy=Never")
		inst.waitPod(t, "never", time.Minute, waitingReason("ErrImageNeverPull"))
		if ev := inst.events(t, "never"); !hasEvent(ev, "Warning ErrImageNeverPull") {
			t.Errorf("Never: events %q", ev)
		}
	})

	t.Run("env from a ConfigMap and a Secret, volumes, an init container and limits show in the logs", func(t *testing.T) {
		inst.mustKubectlIn(t, "", "create", "configmap", "settings", "--from-literal=COLOR=teal", "--from-literal=greeting.txt=hi there")
		inst.mustKubectlIn(t, "", "create", "secret", "generic", "creds", "--from-literal=TOKEN=s3cr3t")
		inst.mustKubectlIn(t, `apiVersion: v1
kind: Pod
metadata: {name: envy}
spec:
  restartPolicy: Never
  initContainers:
  - name: prepare
    image: `+busybox+`
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo prepared-by-init > /work/state']
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: c
    image: `+busybox+`
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo "color=$COLOR token=$TOKEN pod=$POD"; cat /work/state; cat /config/greeting.txt; echo; echo "limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null)"; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo']
    envFrom: [{configMapRef: {name: settings}}]
    env:
    - {name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: TOKEN}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    resources: {limits: {memory: 64Mi, cpu: 500m}}
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: config, mountPath: /config}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: config, configMap: {name: settings}}
`, "apply", "-f", "-")
		pod := inst.waitPod(t, "envy", time.Minute, func(p *v1.Pod) error {
			if p.Status.Phase != v1.PodSucceeded {
				return fmt.Errorf("phase %s, init %+v, containers %+v", p.Status.Phase, p.Status.InitContainerStatuses, p.Status.ContainerStatuses)
			}
			return nil
		})
		out := inst.mustKubectlIn(t, "", "logs", "envy")
		for _, want := range []string{"color=teal token=s3cr3t pod=envy", "prepared-by-init", "hi there", "limit=67108864", "default"} {
			if !strings.Contains(out, want) {
				t.Errorf("logs %q lack %q", out, want)
			}
		}
		if init := pod.Status.InitContainerStatuses; len(init) != 1 || init[0].State.Terminated == nil || init[0].State.Terminated.Reason != "Completed" {
			t.Errorf("init container status %+v", init)
		}
		if out := inst.mustKubectlIn(t, "", "logs", "envy", "-c", "prepare"); out != "" {
			t.Errorf("the init container's logs %q, want none", out)
		}
		// kubectl logs options reach the kubelet API.
		if out := inst.mustKubectlIn(t, "", "logs", "envy", "--tail=1", "--timestamps"); strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "Z default") {
			t.Errorf("kubectl logs --tail=1 --timestamps: %q", out)
		}
	})

	t.Run("a Job completes", func(t *testing.T) {
		inst.mustKubectlIn(t, "", "create", "job", "once", "--image="+busybox, "--", "sh", "-c", "echo job done")
		poll(t, time.Minute, func() error {
			out, _, err := inst.kubectl(t, "get", "job", "once", "-o", "jsonpath={.status.succeeded}")
			if err != nil || out != "1" {
				return fmt.Errorf("job succeeded=%q %v", out, err)
			}
			return nil
		})
	})

	t.Run("a 3-replica Deployment runs 3 pods with distinct IPs that reach each other", func(t *testing.T) {
		inst.mustKubectlIn(t, "", "create", "deployment", "web", "--image="+busybox, "--replicas=3", "--", "sh", "-c", "hostname > /tmp/index.html; httpd -f -p 8080 -h /tmp")
		var ips []string
		poll(t, 2*time.Minute, func() error {
			pods, err := inst.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err
			}
			ips = nil
			for _, p := range pods.Items {
				if running(&p) == nil && !slices.Contains(ips, p.Status.PodIP) {
					ips = append(ips, p.Status.PodIP)
				}
			}
			if len(ips) != 3 {
				return fmt.Errorf("running with distinct IPs: %v", ips)
			}
			return nil
		})
		script := ""
		for _, ip := range ips {
			// (This busybox's wget crashes with -q or -T.)
			script += "wget -O /tmp/page http://" + ip + ":8080/index.html 2>/dev/null && cat /tmp/page; "
		}
		inst.mustKubectlIn(t, "", "run", "client", "--image="+busybox, "--image-pull-policy=IfNotPresent", "--restart=Never", "--command", "--", "sh", "-c", script)
		inst.waitPod(t, "client", time.Minute, func(p *v1.Pod) error {
			if p.Status.Phase != v1.PodSucceeded {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		out := inst.mustKubectlIn(t, "", "logs", "client")
		if n := len(strings.Fields(out)); n != 3 || !strings.Contains(out, "web-") {
			t.Errorf("the client reached %d of 3 pods: %q", n, out)
		}
	})

	t.Run("a crashing container reaches CrashLoopBackOff with a growing restartCount", func(t *testing.T) {
		pod := inst.waitPod(t, "crasher", 90*time.Second, func(p *v1.Pod) error {
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].RestartCount < 2 {
				return fmt.Errorf("statuses %+v", p.Status.ContainerStatuses)
			}
			return waitingReason("CrashLoopBackOff")(p)
		})
		last := pod.Status.ContainerStatuses[0].LastTerminationState.Terminated
		if last == nil || last.ExitCode != 3 || last.Reason != "Error" {
			t.Errorf("lastState %+v, want terminated with exit code 3", last)
		}
		if out, _, _ := inst.kubectl(t, "logs", "crasher", "--previous"); !strings.Contains(out, "crashing") {
			t.Errorf("kubectl logs --previous: %q", out)
		}
		if ev := inst.events(t, "crasher"); !hasEvent(ev, "Warning BackOff: Back-off restarting failed container") {
			t.Errorf("events %q", ev)
		}
	})

	t.Run("deleting a pod stops its containers within the grace period", func(t *testing.T) {
		inst.mustKubectlIn(t, `apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - {name: c, image: `+busybox+`, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}
`, "apply", "-f", "-")
		inst.waitPod(t, "stubborn", time.Minute, running)
		// sleep as PID 1 ignores SIGTERM: the runtime kills it when the
		// 3 s grace period ends.
		began := time.Now()
		inst.mustKubectlIn(t, "", "delete", "pod", "stubborn", "--wait=true", "--timeout=60s")
		if took := time.Since(began); took < 3*time.Second || took > 20*time.Second {
			t.Errorf("deletion took %s, want the 3s grace period and then SIGKILL", took)
		}
		if ev := inst.events(t, "stubborn"); !hasEvent(ev, "Normal Killing: Stopping container c") {
			t.Errorf("events %q", ev)
		}
	})

	t.Run("a Gatehouse restart keeps pods running (same containers)", func(t *testing.T) {
		before := inst.pod(t, "hello").Status.ContainerStatuses[0]
		inst.stop(t)
		inst.restart(t)
		pod := inst.waitPod(t, "hello", time.Minute, running)
		after := pod.Status.ContainerStatuses[0]
		if after.ContainerID != before.ContainerID || after.RestartCount != before.RestartCount {
			t.Errorf("after a restart: container %s restarts %d, before %s restarts %d", after.ContainerID, after.RestartCount, before.ContainerID, before.RestartCount)
		}
		if out := inst.mustKubectlIn(t, "", "logs", "hello"); strings.Count(out, "hello from hello") != 1 {
			t.Errorf("logs after restart %q, want the one line of the one container", out)
		}
	})

	t.Run("gatehouse images ls lists the loaded image", func(t *testing.T) {
		stdout, stderr, code := runGatehouse(t, time.Minute, "images", "ls", "--data-dir", inst.dataDir)
		if code != 0 || !strings.Contains(stdout, busybox) {
			t.Errorf("exit %d\n%s%s", code, stdout, stderr)
		}
	})
}

// pushBusybox pushes the test image to the loopback registry and returns
// its reference.
func pushBusybox(t *testing.T, registry, repo, tag string) string {
	t.Helper()
	blobs, err := testimage.WriteOCI(io.Discard, repo+":"+tag)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testimage.Push(context.Background(), registry, repo, tag, blobs); err != nil {
		t.Fatalf("pushing to %s: %v", registry, err)
	}
	return registry + "/" + repo + ":" + tag
}

// TestNodeSimulated runs the same pod lifecycle without containers.
func TestNodeSimulated(t *testing.T) {
	inst := startNode(t, "simulated")
	inst.mustKubectlIn(t, "", "run", "sim", "--image=busybox")
	pod := inst.waitPod(t, "sim", time.Minute, running)
	if !strings.HasPrefix(pod.Status.PodIP, "10.244.") {
		t.Errorf("pod IP %q", pod.Status.PodIP)
	}
	if out := inst.mustKubectlIn(t, "", "logs", "sim"); !strings.Contains(out, "simulated container") {
		t.Errorf("logs %q", out)
	}
	node, err := inst.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil || len(node.Items) != 1 || !strings.Contains(node.Items[0].Status.NodeInfo.ContainerRuntimeVersion, "simulated") {
		t.Errorf("nodes %+v %v", node, err)
	}
	// A Job completes when its containers are told to exit.
	inst.mustKubectlIn(t, `apiVersion: batch/v1
kind: Job
metadata: {name: quick}
spec:
  template:
    metadata:
      annotations: {simulate.gatehouse.dev/exit-after: 1s, simulate.gatehouse.dev/exit-code: "0"}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
`, "apply", "-f", "-")
	poll(t, time.Minute, func() error {
		out, _, err := inst.kubectl(t, "get", "job", "quick", "-o", "jsonpath={.status.succeeded}")
		if err != nil || out != "1" {
			return fmt.Errorf("job succeeded=%q %v", out, err)
		}
		return nil
	})
	inst.mustKubectlIn(t, "", "delete", "pod", "sim", "--wait=true", "--timeout=60s")
	if _, err := inst.client.CoreV1().Pods("default").Get(context.Background(), "sim", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod sim after deletion: %v", err)
	}
}

// TestNodeJoins runs `gatehouse node` alone, with a node identity the
// control plane issued, on the simulated runtime.
func TestNodeJoins(t *testing.T) {
	inst := startGatehouse(t)
	nodeConf := filepath.Join(t.TempDir(), "worker-1.conf")
	stdout, stderr, code := runGatehouse(t, time.Minute, "kubeconfig", "--data-dir", inst.dataDir, "--node", "worker-1")
	if code != 0 {
		t.Fatalf("gatehouse kubeconfig --node: exit %d\n%s", code, stderr)
	}
	if err := os.WriteFile(nodeConf, []byte(stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePorts(t, 1)[0]
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, gatehouseBin, "node", "--kubeconfig", nodeConf, "--data-dir", t.TempDir(), "--runtime", "simulated",
		"--bind-address", "127.0.0.1", "--kubelet-port", strconv.Itoa(port), "--node-ip", "127.0.0.1")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("gatehouse node output:\n%s", out.String())
		}
	})
	poll(t, time.Minute, func() error {
		if !strings.Contains(out.String(), "node worker-1 ready (runtime: simulated)") {
			return fmt.Errorf("not ready yet: %s", out.String())
		}
		return nil
	})
	inst.mustKubectlIn(t, "", "run", "joined", "--image=busybox", "--overrides", `{"spec":{"nodeName":"worker-1"}}`)
	pod := inst.waitPod(t, "joined", time.Minute, running)
	if pod.Spec.NodeName != "worker-1" {
		t.Errorf("pod on %q", pod.Spec.NodeName)
	}
	if logs := inst.mustKubectlIn(t, "", "logs", "joined"); !strings.Contains(logs, "simulated container") {
		t.Errorf("kubectl logs through the joined node's kubelet API: %q", logs)
	}
	// The Node authorizer applies: the node reads no Secret its pods do
	// not use.
	inst.mustKubectlIn(t, "", "create", "secret", "generic", "unrelated", "--from-literal=k=v")
	_, errOut, err := inst.kubectl(t, "--kubeconfig", nodeConf, "get", "secret", "unrelated")
	if err == nil || !strings.Contains(errOut, "Forbidden") {
		t.Errorf("the node read an unrelated secret: %v %s", err, errOut)
	}
	// A kubeconfig without a node identity is refused with why.
	_, stderr, code = runGatehouse(t, time.Minute, "node", "--kubeconfig", inst.kubeconfig, "--data-dir", t.TempDir(), "--runtime", "simulated")
	if code != 2 || !strings.Contains(stderr, "not a node identity") {
		t.Errorf("admin kubeconfig for a node: exit %d, %s", code, stderr)
	}
	inst.mustKubectlIn(t, "", "delete", "pod", "joined", "--wait=true", "--timeout=60s")
}
