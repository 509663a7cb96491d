package metricsapi

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/metrics/pkg/apis/metrics"
)

func pod(name string, phase v1.PodPhase, lbl map[string]string) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: lbl}, Status: v1.PodStatus{Phase: phase}}
}

// twoSamples stores two samples 10 s apart of one container per pod, at
// 100m times the pod's position.
func twoSamples(s *store, pods ...string) {
	for i, at := range []time.Time{t0, t0.Add(10 * time.Second)} {
		b := &batch{nodes: map[string]point{"n1": {at: at, cpu: uint64(i) * 20e9, memory: 1 << 30}}, pods: map[types.NamespacedName]map[string]point{}}
		for j, name := range pods {
			b.pods[types.NamespacedName{Namespace: "ns", Name: name}] = map[string]point{
				"c": {start: t0.Add(-time.Hour), at: at, cpu: uint64(i) * uint64(j+1) * 1e9, memory: 10 << 20},
			}
		}
		s.add(b)
	}
}

func TestPodMetricsREST(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, p := range []*v1.Pod{
		pod("a", v1.PodRunning, map[string]string{"app": "web"}),
		pod("b", v1.PodRunning, map[string]string{"app": "db"}),
		pod("pending", v1.PodPending, map[string]string{"app": "web"}),
		pod("unscraped", v1.PodRunning, map[string]string{"app": "web"}),
	} {
		_ = indexer.Add(p)
	}
	st := newStore(15 * time.Second)
	twoSamples(st, "a", "b", "pending")
	r := &podREST{pods: corelisters.NewPodLister(indexer), store: st}
	ctx := genericapirequest.WithNamespace(context.Background(), "ns")

	obj, err := r.List(ctx, &metainternalversion.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	list := obj.(*metrics.PodMetricsList)
	if len(list.Items) != 2 || list.Items[0].Name != "a" || list.Items[1].Name != "b" {
		t.Fatalf("list %+v, want a and b (pending is not Running, unscraped has no samples)", list.Items)
	}
	a := list.Items[0]
	cpu := a.Containers[0].Usage[v1.ResourceCPU]
	if cpu.MilliValue() != 100 || a.Window.Duration != 10*time.Second || a.Labels["app"] != "web" {
		t.Errorf("pod a: cpu %s window %s labels %v", cpu.String(), a.Window.Duration, a.Labels)
	}

	sel, _ := labels.Parse("app=db")
	obj, _ = r.List(ctx, &metainternalversion.ListOptions{LabelSelector: sel})
	if items := obj.(*metrics.PodMetricsList).Items; len(items) != 1 || items[0].Name != "b" {
		t.Errorf("label selector app=db: %+v", items)
	}
	obj, _ = r.List(ctx, &metainternalversion.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "a")})
	if items := obj.(*metrics.PodMetricsList).Items; len(items) != 1 || items[0].Name != "a" {
		t.Errorf("field selector metadata.name=a: %+v", items)
	}

	if obj, err := r.Get(ctx, "b", &metav1.GetOptions{}); err != nil || obj.(*metrics.PodMetrics).Name != "b" {
		t.Errorf("get b: %+v %v", obj, err)
	}
	for _, name := range []string{"unscraped", "pending", "nope"} {
		if _, err := r.Get(ctx, name, &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("get %s: %v, want NotFound", name, err)
		}
	}
	table, err := r.ConvertToTable(ctx, list, nil)
	if err != nil || len(table.Rows) != 2 || table.Rows[1].Cells[1] != "200m" || table.Rows[1].Cells[2] != "10Mi" || table.Rows[1].Cells[3] != "10s" {
		t.Errorf("table %+v %v", table, err)
	}
}

func TestNodeMetricsREST(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	_ = indexer.Add(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"}}})
	_ = indexer.Add(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}})
	st := newStore(15 * time.Second)
	twoSamples(st)
	r := &nodeREST{nodes: corelisters.NewNodeLister(indexer), store: st}
	obj, err := r.List(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	items := obj.(*metrics.NodeMetricsList).Items
	if len(items) != 1 || items[0].Name != "n1" || items[0].Labels["zone"] != "a" {
		t.Fatalf("nodes %+v, want n1 only (n2 has no samples)", items)
	}
	if cpu := items[0].Usage[v1.ResourceCPU]; cpu.MilliValue() != 2000 {
		t.Errorf("n1 cpu %s, want 2 cores", cpu.String())
	}
	sel, _ := labels.Parse("zone=b")
	if obj, _ := r.List(context.Background(), &metainternalversion.ListOptions{LabelSelector: sel}); len(obj.(*metrics.NodeMetricsList).Items) != 0 {
		t.Errorf("zone=b selected %+v", obj)
	}
	if _, err := r.Get(context.Background(), "n2", nil); !apierrors.IsNotFound(err) {
		t.Errorf("get n2: %v, want NotFound", err)
	}
}
