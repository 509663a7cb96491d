package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace/noop"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	criclient "k8s.io/cri-client/pkg"

	"github.com/gatehouse-dev/gatehouse/kubelet/containerd/containerdtest"
)

// execIn runs a shell command in the running container of a pod of the
// default namespace, through the CRI of Gatehouse's containerd (the test
// does not depend on kubectl exec), and returns its output with stderr.
// (busybox wget crashes on its own -T timeout: the commands use timeout.)
func execIn(t *testing.T, inst *instance, pod, command string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	socket := filepath.Join(inst.dataDir, "containerd", "containerd.sock")
	rt, err := criclient.NewRemoteRuntimeService(ctx, "unix://"+socket, 20*time.Second, noop.NewTracerProvider(), false)
	if err != nil {
		t.Fatalf("CRI %s: %v", socket, err)
	}
	defer rt.Close(ctx)
	cs, err := rt.ListContainers(ctx, &runtimeapi.ContainerFilter{
		State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		LabelSelector: map[string]string{"io.kubernetes.pod.name": pod, "io.kubernetes.pod.namespace": "default"},
	})
	if err != nil || len(cs) == 0 {
		t.Fatalf("no running container of pod %s: %v", pod, err)
	}
	// The exit status as text: ExecSync reports a non-zero one as an error.
	stdout, stderr, err := rt.ExecSync(ctx, cs[0].Id, []string{"sh", "-c", command + " 2>&1; echo exit=$?"}, 15*time.Second)
	if err != nil {
		t.Fatalf("exec %q in %s: %v (%s)", command, pod, err, stderr)
	}
	return string(stdout)
}

// succeeded reports whether execIn's output ends with exit=0.
func succeeded(out string) bool { return strings.HasSuffix(strings.TrimSpace(out), "exit=0") }

func nft(args ...string) (string, error) {
	out, err := exec.Command("nft", args...).CombinedOutput()
	return string(out), err
}

func readSysctl(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc/sys", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// TestNodeServices: Services and cluster DNS on real containerd: ClusterIP
// and names from a pod, headless names, NodePort from the host, hairpin,
// refusal without endpoints, a leftover table after kill -9, and nothing
// left after a stop.
func TestNodeServices(t *testing.T) {
	containerdtest.RequireNode(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft: %v (hack/install-test-deps.sh installs nftables)", err)
	}
	routeLocalnet := readSysctl(t, "net/ipv4/conf/all/route_localnet")
	inst := startNode(t, "auto")

	inst.mustKubectlIn(t, "", "run", "web", "--image="+busybox, "--image-pull-policy=IfNotPresent", "--labels=app=web",
		"--command", "--", "sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www")
	inst.mustKubectlIn(t, "", "run", "client", "--image="+busybox, "--image-pull-policy=IfNotPresent", "--command", "--", "sleep", "3600")
	inst.mustKubectlIn(t, "", "expose", "pod", "web", "--port=80", "--target-port=8080", "--type=NodePort")
	inst.mustKubectlIn(t, `apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: idle}
spec:
  replicas: 1
  selector: {matchLabels: {app: idle}}
  template:
    metadata: {labels: {app: idle}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: `+busybox+`
        imagePullPolicy: IfNotPresent
        command: [sh, -c, "mkdir -p /www && echo idle > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {name: idle}
spec:
  selector: {app: idle}
  ports: [{port: 80, targetPort: 8080}]
`, "apply", "-f", "-")
	web := inst.waitPod(t, "web", time.Minute, running)
	inst.waitPod(t, "client", time.Minute, running)
	svc, err := inst.client.CoreV1().Services("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clusterIP, nodePort := svc.Spec.ClusterIP, int(svc.Spec.Ports[0].NodePort)

	wgetFrom := func(pod, url, want string) func() error {
		return func() error {
			out := execIn(t, inst, pod, "timeout 5 wget -q -O - "+url)
			if !succeeded(out) || !strings.Contains(out, want) {
				return fmt.Errorf("wget %s from %s: %s", url, pod, out)
			}
			return nil
		}
	}
	t.Run("ClusterIP from a pod", func(t *testing.T) {
		poll(t, 30*time.Second, wgetFrom("client", "http://"+clusterIP+"/", "web"))
	})
	t.Run("pods get the cluster DNS", func(t *testing.T) {
		out := execIn(t, inst, "client", "cat /etc/resolv.conf")
		for _, want := range []string{"nameserver 10.96.0.10", "search default.svc.cluster.local svc.cluster.local cluster.local", "ndots:5"} {
			if !strings.Contains(out, want) {
				t.Errorf("resolv.conf lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("by name", func(t *testing.T) {
		for _, name := range []string{"web", "web.default", "web.default.svc.cluster.local"} {
			poll(t, 10*time.Second, wgetFrom("client", "http://"+name+"/", "web"))
		}
	})
	t.Run("headless Service resolves to the pod", func(t *testing.T) {
		poll(t, 10*time.Second, func() error {
			out := execIn(t, inst, "client", "nslookup web-headless.default.svc.cluster.local")
			if !succeeded(out) || !strings.Contains(out, "Address: "+web.Status.PodIP) || strings.Contains(out, clusterIP) {
				return fmt.Errorf("nslookup: %s", out)
			}
			return nil
		})
	})
	t.Run("NodePort from the host", func(t *testing.T) {
		hosts := []string{"127.0.0.1"}
		if ip, err := utilnet.ChooseHostInterface(); err == nil {
			hosts = append(hosts, ip.String())
		}
		client := &http.Client{Timeout: 3 * time.Second}
		for _, host := range hosts {
			url := "http://" + net.JoinHostPort(host, strconv.Itoa(nodePort)) + "/"
			poll(t, 10*time.Second, func() error {
				resp, err := client.Get(url)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if strings.TrimSpace(string(body)) != "web" {
					return fmt.Errorf("%s answered %q", url, body)
				}
				return nil
			})
		}
	})
	t.Run("hairpin: a pod through its own Service", func(t *testing.T) {
		// Not "web": the pod's /etc/hosts maps its own name to itself.
		poll(t, 10*time.Second, wgetFrom("web", "http://"+clusterIP+"/", "web"))
		poll(t, 10*time.Second, wgetFrom("web", "http://web.default.svc.cluster.local/", "web"))
	})
	t.Run("unallocated service address refuses", func(t *testing.T) {
		out := execIn(t, inst, "client", "timeout 5 wget -q -O - http://10.96.200.200/")
		if succeeded(out) || !strings.Contains(out, "refused") {
			t.Errorf("wget of an address no Service holds: %s, want connection refused", out)
		}
	})
	t.Run("Service scaled to 0 refuses at once", func(t *testing.T) {
		poll(t, 30*time.Second, wgetFrom("client", "http://idle/", "idle"))
		inst.mustKubectlIn(t, "", "scale", "deployment", "idle", "--replicas=0")
		// Refused, not timed out: the reject rule answers at once.
		poll(t, 30*time.Second, func() error {
			out := execIn(t, inst, "client", "timeout 5 wget -q -O - http://idle/")
			if succeeded(out) || !strings.Contains(out, "refused") {
				return fmt.Errorf("wget http://idle/ with no endpoints: %s, want connection refused", out)
			}
			return nil
		})
	})
	t.Run("a table left by a killed run is replaced", func(t *testing.T) {
		inst.kill9(t)
		if out, err := nft("list", "table", "ip", "gatehouse"); err != nil {
			t.Fatalf("no table after kill -9 (%v): %s", err, out)
		}
		if out, err := nft("add", "chain", "ip", "gatehouse", "leftover-sentinel"); err != nil {
			t.Fatalf("marking the leftover table: %v: %s", err, out)
		}
		inst.restart(t)
		if out, err := nft("list", "chain", "ip", "gatehouse", "leftover-sentinel"); err == nil {
			t.Errorf("the leftover table's chain survived the restart:\n%s", out)
		}
		poll(t, 30*time.Second, wgetFrom("client", "http://web/", "web"))
	})
	t.Run("nothing left after stop", func(t *testing.T) {
		// httpd as PID 1 ignores SIGTERM: no need to wait out its 30 s.
		inst.mustKubectlIn(t, "", "delete", "pods", "--all", "--grace-period=1", "--wait=false")
		deleteAllPods(t, inst)
		inst.stop(t)
		if out, err := nft("list", "table", "ip", "gatehouse"); err == nil {
			t.Errorf("table ip gatehouse still there after gatehouse stopped:\n%s", out)
		}
		if got := readSysctl(t, "net/ipv4/conf/all/route_localnet"); got != routeLocalnet {
			t.Errorf("route_localnet = %s after stop, want the %s it was before", got, routeLocalnet)
		}
	})
}
