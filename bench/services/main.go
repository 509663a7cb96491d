// Command services measures the node's Service routing and cluster DNS on
// a running Gatehouse node (containerd):
//
//   - the time from creating a Service to the first successful HTTP answer
//     through its ClusterIP, from the host (p50/p90 over --services runs);
//
//   - DNS query latency, from the host, through the cluster DNS Service
//     (10.96.0.10, DNATed to the node's server) and against the server on
//     the bridge address alone (p50/p90/p99 over --queries queries, a new
//     socket each, as a resolver does).
//
//     go run ./bench/services --kubeconfig ~/.gatehouse/kubeconfig --services 20 --queries 2000
//
// It runs a busybox httpd pod in namespace bench-services and deletes the
// namespace at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

const namespace = "bench-services"

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster to measure")
	image := flag.String("image", "gatehouse.test/busybox:1", "busybox image present on the node")
	services := flag.Int("services", 20, "Services created one after another")
	queries := flag.Int("queries", 2000, "DNS queries per target")
	flag.Parse()
	if err := run(*kubeconfig, *image, *services, *queries); err != nil {
		fmt.Fprintln(os.Stderr, "services:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, image string, services, queries int) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("--kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	defer cleanUp(client)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "httpd", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"}}},
		},
	}
	if _, err := client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return err
	}
	var nodeName string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods(namespace).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				nodeName = p.Spec.NodeName
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("pod web not ready: %w", err)
	}

	// Service creation to first answer through the ClusterIP.
	httpClient := &http.Client{Timeout: 500 * time.Millisecond}
	var firstAnswer []time.Duration
	for i := range services {
		name := "svc-" + strconv.Itoa(i)
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}
		start := time.Now()
		created, err := client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		url := "http://" + created.Spec.ClusterIP + "/"
		deadline := start.Add(30 * time.Second)
		for {
			resp, err := httpClient.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s (%s) not answering 30 s after its creation: %v", name, url, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		firstAnswer = append(firstAnswer, time.Since(start))
		if err := client.CoreV1().Services(namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return err
		}
	}
	fmt.Printf("Service created to first HTTP answer through its ClusterIP (%d Services, one at a time): %s\n", services, summary(firstAnswer))

	// DNS: through the cluster DNS Service and against the server alone.
	node, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cidr, err := netip.ParsePrefix(node.Spec.PodCIDR)
	if err != nil {
		return fmt.Errorf("node %s pod CIDR %q: %w", nodeName, node.Spec.PodCIDR, err)
	}
	kubeDNS, err := client.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if _, err := client.CoreV1().Services(namespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	name := "web." + namespace + ".svc.cluster.local."
	for _, target := range []struct{ what, addr string }{
		{"through " + kubeDNS.Spec.ClusterIP + " (kube-dns, DNATed)", net.JoinHostPort(kubeDNS.Spec.ClusterIP, "53")},
		{"against the server alone (" + cidr.Addr().Next().String() + ")", net.JoinHostPort(cidr.Addr().Next().String(), "53")},
	} {
		lat, err := queryLatency(target.addr, name, queries)
		if err != nil {
			return fmt.Errorf("DNS %s: %w", target.what, err)
		}
		fmt.Printf("DNS A %s %s, %d queries: %s\n", name, target.what, queries, summary(lat))
	}
	return nil
}

// queryLatency sends n A queries one after another, each from a new
// socket; the first answers (the index may not have the Service yet) are
// waited for before measuring.
func queryLatency(addr, name string, n int) ([]time.Duration, error) {
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _, err := c.Exchange(m, addr)
		if err == nil && resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no answer for %s from %s: %v %v", name, addr, err, resp)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var out []time.Duration
	for range n {
		start := time.Now()
		resp, _, err := c.Exchange(m, addr)
		if err != nil {
			return nil, err
		}
		if len(resp.Answer) == 0 {
			return nil, fmt.Errorf("empty answer: %v", resp)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

func summary(d []time.Duration) string {
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	r := func(d time.Duration) string {
		if d < time.Millisecond {
			return fmt.Sprintf("%.0f µs", float64(d.Microseconds()))
		}
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s", r(q(0.5)), r(q(0.9)), r(q(0.99)), r(s[len(s)-1]))
}

func cleanUp(client kubernetes.Interface) {
	ctx := context.Background()
	_ = client.CoreV1().Namespaces().Delete(ctx, namespace, metav1.DeleteOptions{})
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}
