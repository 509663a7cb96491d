// Command podcreate measures Pod CREATE throughput and latency against a
// running Gatehouse (or any cluster) at several concurrency levels.
//
//	go run ./bench/podcreate --kubeconfig ~/.gatehouse/kubeconfig --concurrency 1,16,64 --count 2000
//
// Every request is a real create through the whole admission chain into
// etcd. Pods are created in a fresh namespace that is deleted afterwards.
// Later issues reuse it to measure what each policy engine adds: load the
// policies, run it again, compare.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster to measure")
	levels := flag.String("concurrency", "1,16,64", "comma-separated concurrency levels")
	count := flag.Int("count", 2000, "pods created per level")
	warmup := flag.Int("warmup", 100, "pods created before measuring each level")
	flag.Parse()
	if err := run(*kubeconfig, *levels, *count, *warmup); err != nil {
		fmt.Fprintln(os.Stderr, "podcreate:", err)
		os.Exit(1)
	}
}

type result struct {
	concurrency int
	count       int
	elapsed     time.Duration
	latencies   []time.Duration
	errors      int64
}

func run(kubeconfig, levels string, count, warmup int) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("--kubeconfig: %w", err)
	}
	// The harness must not be the bottleneck: client-go's default 5 QPS
	// would measure the rate limiter.
	cfg.QPS, cfg.Burst = 100000, 100000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx := context.Background()
	ns := fmt.Sprintf("bench-podcreate-%d", time.Now().Unix())
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	defer client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	// The ServiceAccount admission plugin needs the namespace's default
	// ServiceAccount before any pod is admitted.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		} else if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s has no default ServiceAccount: %w", ns, err)
		}
	}

	var results []result
	for _, field := range strings.Split(levels, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || c < 1 {
			return fmt.Errorf("--concurrency: %q is not a positive integer", field)
		}
		measure(ctx, client, ns, c, warmup)
		results = append(results, measure(ctx, client, ns, c, count))
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONCURRENCY\tPODS\tERRORS\tPODS/S\tP50\tP99")
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.0f\t%s\t%s\n", r.concurrency, r.count, r.errors,
			float64(r.count)/r.elapsed.Seconds(), percentile(r.latencies, 50), percentile(r.latencies, 99))
	}
	return tw.Flush()
}

func measure(ctx context.Context, client kubernetes.Interface, ns string, concurrency, count int) result {
	var next atomic.Int64
	var errs atomic.Int64
	lat := make([][]time.Duration, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(count) {
				t := time.Now()
				_, err := client.CoreV1().Pods(ns).Create(ctx, benchPod(), metav1.CreateOptions{})
				lat[w] = append(lat[w], time.Since(t))
				if err != nil {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return result{concurrency: concurrency, count: count, elapsed: time.Since(start), latencies: slices.Concat(lat...), errors: errs.Load()}
}

func benchPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-", Labels: map[string]string{"app": "bench"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "app",
			Image: "registry.example/app:1.0",
			Resources: corev1.ResourceRequirements{
				Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			},
		}}},
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(i-1, len(s)-1))].Round(10 * time.Microsecond)
}
