package metricsapi

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset/fake"
	kubeletclient "k8s.io/kubernetes/pkg/kubelet/client"
)

func TestEnsureAPIService(t *testing.T) {
	ctx := context.Background()
	client := fake.NewSimpleClientset()
	if err := ensureAPIService(ctx, client); err != nil {
		t.Fatal(err)
	}
	got, err := client.ApiregistrationV1().APIServices().Get(ctx, APIServiceName, metav1.GetOptions{})
	if err != nil || got.Spec.Service != nil || got.Spec.Group != "metrics.k8s.io" || got.Spec.Version != "v1beta1" {
		t.Fatalf("APIService %+v %v, want a local one for metrics.k8s.io/v1beta1", got, err)
	}

	// One pointing at an installed metrics-server is left alone.
	other := &apiregistrationv1.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: APIServiceName},
		Spec: apiregistrationv1.APIServiceSpec{Group: "metrics.k8s.io", Version: "v1beta1",
			Service: &apiregistrationv1.ServiceReference{Namespace: "kube-system", Name: "metrics-server"}},
	}
	client = fake.NewSimpleClientset(other)
	if err := ensureAPIService(ctx, client); err != nil {
		t.Fatal(err)
	}
	if got, _ := client.ApiregistrationV1().APIServices().Get(ctx, APIServiceName, metav1.GetOptions{}); got.Spec.Service == nil {
		t.Errorf("metrics-server's APIService was replaced: %+v", got.Spec)
	}
}

// staticConn sends every node to one kubelet.
type staticConn struct {
	url       *url.URL
	transport http.RoundTripper
}

func (c staticConn) GetConnectionInfo(context.Context, types.NodeName) (*kubeletclient.ConnectionInfo, error) {
	host, port, _ := net.SplitHostPort(c.url.Host)
	return &kubeletclient.ConnectionInfo{Scheme: c.url.Scheme, Hostname: host, Port: port, Transport: c.transport}, nil
}

func TestScrape(t *testing.T) {
	var calls int
	kubelet := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if r.URL.Path != "/metrics/resource" {
			http.NotFound(w, r)
			return
		}
		// Upstream's format: CPU counters with millisecond timestamps.
		ms := 1796119200000 + int64(calls)*10_000
		_, _ = w.Write([]byte(strings.NewReplacer("TS", itoa(ms), "CPU", itoa(int64(calls)*5)).Replace(`# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total CPU TS
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1e+09 TS
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="c",namespace="ns",pod="p"} CPU TS
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="c",namespace="ns",pod="p"} 1e+06 TS
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="c",namespace="ns",pod="p"} 1.7961e+09
`)))
	}))
	defer kubelet.Close()
	u, _ := url.Parse(kubelet.URL)
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	_ = indexer.Add(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	st := newStore(15 * time.Second)
	s := &scraper{nodes: corelisters.NewNodeLister(indexer), conn: staticConn{u, kubelet.Client().Transport}, store: st, every: time.Second, timeout: 5 * time.Second}
	st.add(s.scrape(context.Background()))
	st.add(s.scrape(context.Background()))
	// 5 s of CPU over the 10 s between the samples: 500m.
	n, ok := st.node("n1")
	if cpu := n.list[v1.ResourceCPU]; !ok || cpu.MilliValue() != 500 || n.window != 10*time.Second {
		t.Errorf("node usage %+v %v, want 500m over 10s", n, ok)
	}
	pod, ok := st.pod(types.NamespacedName{Namespace: "ns", Name: "p"})
	if cpu := pod["c"].list[v1.ResourceCPU]; !ok || cpu.MilliValue() != 500 {
		t.Errorf("pod usage %+v %v, want 500m", pod, ok)
	}

	// A kubelet that fails leaves the node out of the batch.
	kubelet.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "Forbidden", http.StatusForbidden) })
	if b := s.scrape(context.Background()); len(b.nodes) != 0 || len(b.pods) != 0 {
		t.Errorf("batch from a failing kubelet: %+v", b)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
