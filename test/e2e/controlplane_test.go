package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// TestControlPlane checks that the components `gatehouse up` runs do their
// jobs. The subtests share one instance: each works in its own namespace
// (or, for the node, on its own cluster-scoped object).
func TestControlPlane(t *testing.T) {
	inst := startGatehouse(t)

	t.Run("ready line names the data dir kubeconfig", func(t *testing.T) {
		want := filepath.Join(inst.dataDir, "kubeconfig")
		if inst.kubeconfig != want {
			t.Errorf("ready line names kubeconfig %q, want %q", inst.kubeconfig, want)
		}
		if stdout := inst.current().stdout.String(); !strings.Contains(stdout, "export KUBECONFIG="+want+"\n") {
			t.Errorf("stdout has no line %q; stdout:\n%s", "export KUBECONFIG="+want, stdout)
		}
	})

	t.Run("system namespaces", func(t *testing.T) {
		want := []string{"namespace/default", "namespace/kube-system", "namespace/kube-public", "namespace/kube-node-lease"}
		poll(t, 30*time.Second, func() error {
			out, errOut, err := inst.kubectl(t, "get", "ns", "-o", "name")
			if err != nil {
				return fmt.Errorf("kubectl get ns: %v: %s", err, errOut)
			}
			got := strings.Fields(out)
			for _, ns := range want {
				if !slices.Contains(got, ns) {
					return fmt.Errorf("kubectl get ns -o name = %q, want it to include %q", got, ns)
				}
			}
			return nil
		})
	})

	t.Run("new namespace gets a default service account", func(t *testing.T) {
		ns := createNamespace(t, inst, "e2e-sa")
		poll(t, 30*time.Second, func() error {
			_, err := inst.client.CoreV1().ServiceAccounts(ns).Get(t.Context(), "default", metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("service account %s/default (created by the serviceaccount controller): %w", ns, err)
			}
			return nil
		})
	})

	t.Run("deployment makes a replicaset and pods", func(t *testing.T) {
		ns := createNamespace(t, inst, "e2e-deploy")
		labels := map[string]string{"app": "web"}
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Replicas: new(int32(2)),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}}},
				},
			},
		}
		dep, err := inst.client.AppsV1().Deployments(ns).Create(t.Context(), dep, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating deployment: %v", err)
		}
		poll(t, 45*time.Second, func() error {
			rss, err := inst.client.AppsV1().ReplicaSets(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err
			}
			var owned []string
			for _, rs := range rss.Items {
				if ref := metav1.GetControllerOf(&rs); ref != nil && ref.UID == dep.UID {
					owned = append(owned, rs.Name)
				}
			}
			if len(owned) != 1 {
				return fmt.Errorf("want 1 replicaset owned by deployment %s/web, got %d: %v", ns, len(owned), owned)
			}
			pods, err := inst.client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err
			}
			if len(pods.Items) != 2 {
				return fmt.Errorf("want 2 pods of deployment %s/web, got %d", ns, len(pods.Items))
			}
			for _, p := range pods.Items {
				if ref := metav1.GetControllerOf(&p); ref == nil || ref.Name != owned[0] {
					return fmt.Errorf("pod %s is not controlled by replicaset %s (controller: %v)", p.Name, owned[0], ref)
				}
			}
			return nil
		})
	})

	t.Run("scheduler binds a pod to a registered node", func(t *testing.T) {
		registerReadyNode(t, inst, "e2e-node")
		ns := createNamespace(t, inst, "e2e-sched")
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "scheduled"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}}},
		}
		if _, err := inst.client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating pod: %v", err)
		}
		poll(t, 45*time.Second, func() error {
			p, err := inst.client.CoreV1().Pods(ns).Get(t.Context(), "scheduled", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Spec.NodeName != "e2e-node" {
				return fmt.Errorf("pod %s/scheduled has spec.nodeName %q, want %q; conditions: %v", ns, p.Spec.NodeName, "e2e-node", p.Status.Conditions)
			}
			return nil
		})
	})

	// After the subtests that exercise the cluster, so it covers what they
	// made happen.
	t.Run("stderr holds only gatehouse's own lines", func(t *testing.T) {
		var foreign []string
		for line := range strings.SplitSeq(inst.stderr(), "\n") {
			if line != "" && !ownLogLine.MatchString(line) {
				foreign = append(foreign, line)
			}
		}
		if len(foreign) > 0 {
			t.Errorf("stderr has %d lines that are not gatehouse's own (level=... msg=...); upstream logs belong in %s:\n%s",
				len(foreign), filepath.Join(inst.dataDir, "logs", "gatehouse.log"), strings.Join(foreign, "\n"))
		}
	})

	t.Run("kubeconfig command prints the kubeconfig file", func(t *testing.T) {
		want, err := os.ReadFile(filepath.Join(inst.dataDir, "kubeconfig"))
		if err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := runGatehouse(t, 30*time.Second, "kubeconfig", "--data-dir", inst.dataDir)
		if code != 0 {
			t.Fatalf("gatehouse kubeconfig exited %d, want 0; stderr:\n%s", code, stderr)
		}
		if stdout != string(want) {
			t.Errorf("gatehouse kubeconfig printed %d bytes that differ from the %d bytes of %s/kubeconfig:\n%s", len(stdout), len(want), inst.dataDir, stdout)
		}
	})
}

// ownLogLine is a line of gatehouse's own terminal log (slog's text format
// without the time).
var ownLogLine = regexp.MustCompile(`^level=(DEBUG|INFO|WARN|ERROR) msg=`)

func TestVersionJSON(t *testing.T) {
	stdout, stderr, code := runGatehouse(t, 30*time.Second, "version", "-o", "json")
	if code != 0 {
		t.Fatalf("gatehouse version -o json exited %d, want 0; stderr:\n%s", code, stderr)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("gatehouse version -o json printed no JSON object of strings (%v):\n%s", err, stdout)
	}
	for _, key := range []string{"gatehouse", "kubernetes", "etcd", "go"} {
		if v[key] == "" {
			t.Errorf("version JSON has no %q, want a version; got %s", key, stdout)
		}
	}
	if !strings.HasPrefix(v["kubernetes"], "v1.37") {
		t.Errorf("kubernetes version is %q, want v1.37.*", v["kubernetes"])
	}
}

// createNamespace creates the namespace name and returns the name.
func createNamespace(t *testing.T, inst *instance, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := inst.client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

// registerReadyNode does what a kubelet does to join: create a Node, report
// it Ready with capacity, and (standing in for the node-lifecycle
// controller, which may be slower) drop the not-ready taint that
// TaintNodesByCondition puts on every new node.
func registerReadyNode(t *testing.T, inst *instance, name string) {
	t.Helper()
	nodes := inst.client.CoreV1().Nodes()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status:     corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	if _, err := nodes.Create(t.Context(), node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating node %s: %v", name, err)
	}
	// Controllers (node IPAM, node lifecycle) update a new node at once, so
	// every write here is read-modify-write with a retry on conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		n.Status.Capacity, n.Status.Allocatable = capacity, capacity
		n.Status.Conditions = []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "e2e test node",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
		_, err = nodes.UpdateStatus(t.Context(), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("reporting node %s ready: %v", name, err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		kept := slices.DeleteFunc(slices.Clone(n.Spec.Taints), func(taint corev1.Taint) bool {
			return taint.Effect == corev1.TaintEffectNoSchedule
		})
		if len(kept) == len(n.Spec.Taints) {
			return nil
		}
		n.Spec.Taints = kept
		_, err = nodes.Update(t.Context(), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("removing NoSchedule taints from node %s: %v", name, err)
	}
}
