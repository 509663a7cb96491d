// Command podstart measures create-to-Running latency: it creates N pods
// at once and reports, per pod, the time from sending its create to
// seeing it Running and Ready through a watch (upstream's pod startup SLO
// measures the same span, image present: p99 ≤ 5 s).
//
//	go run ./bench/podstart --kubeconfig ~/.gatehouse/kubeconfig --pods 1,10,50 --image gatehouse.test/busybox:1
//
// Each level runs in a fresh namespace, deleted (and its pods gone) before
// the next level starts.
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
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster to measure")
	levels := flag.String("pods", "1,10,50", "comma-separated numbers of pods created at once")
	image := flag.String("image", "gatehouse.test/busybox:1", "image of the pods (present on the node)")
	runs := flag.Int("runs", 3, "runs per level")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up on a level after this long")
	flag.Parse()
	if err := run(*kubeconfig, *levels, *image, *runs, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "podstart:", err)
		os.Exit(1)
	}
}

type result struct {
	pods      int
	latencies []time.Duration
	all       time.Duration
}

func run(kubeconfig, levels, image string, runs int, timeout time.Duration) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("--kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 100000, 100000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var results []result
	for _, field := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 1 {
			return fmt.Errorf("--pods: %q is not a positive number", field)
		}
		for r := range runs {
			res, err := level(client, n, image, timeout, r)
			if err != nil {
				return err
			}
			results = append(results, res)
			fmt.Fprintf(os.Stderr, "%d pods, run %d: all Running in %s\n", n, r+1, res.all.Round(time.Millisecond))
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PODS\tRUN\tP50\tP99\tMAX\tALL RUNNING")
	for i, r := range results {
		slices.Sort(r.latencies)
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s\t%s\n", r.pods, i%runs+1, pct(r.latencies, 50), pct(r.latencies, 99), r.latencies[len(r.latencies)-1].Round(time.Millisecond), r.all.Round(time.Millisecond))
	}
	return w.Flush()
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))].Round(time.Millisecond)
}

func level(client kubernetes.Interface, n int, image string, timeout time.Duration, run int) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ns := fmt.Sprintf("bench-podstart-%d-%d-%d", n, run, time.Now().Unix())
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return result{}, err
	}
	defer cleanUp(client, ns)
	for {
		if _, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return result{}, fmt.Errorf("namespace %s has no default ServiceAccount", ns)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// An informer, not a bare watch: a watcher that falls behind while
	// hundreds of creates are sent is closed by the API server, and the
	// informer watches again from where it was.
	var mu sync.Mutex
	sent := map[string]time.Time{}
	readyAt := map[string]time.Time{}
	allReady := make(chan struct{})
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	observe := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok || !ready(pod) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, seen := readyAt[pod.Name]; !seen {
			readyAt[pod.Name] = time.Now()
			if len(readyAt) == n {
				close(allReady)
			}
		}
	}
	_, _ = factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    observe,
		UpdateFunc: func(_, obj any) { observe(obj) },
	})
	stop := make(chan struct{})
	factory.Start(stop)
	defer func() { close(stop); factory.Shutdown() }()
	factory.WaitForCacheSync(stop)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("p%04d", i)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers: []corev1.Container{{Name: "c", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{"sleep", "3600"}}},
				},
			}
			mu.Lock()
			sent[name] = time.Now()
			mu.Unlock()
			if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	select {
	case <-allReady:
	case <-ctx.Done():
		mu.Lock()
		got := len(readyAt)
		mu.Unlock()
		return result{}, fmt.Errorf("%d pods: only %d Running after %s", n, got, timeout)
	}
	res := result{pods: n}
	mu.Lock()
	for name, t := range readyAt {
		res.latencies = append(res.latencies, t.Sub(sent[name]))
	}
	mu.Unlock()
	res.all = time.Since(start)
	return res, nil
}

func ready(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// cleanUp deletes the namespace and waits until its pods are gone, so the
// next level starts on an empty node.
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
