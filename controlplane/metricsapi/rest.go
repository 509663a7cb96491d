package metricsapi

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/metrics/pkg/apis/metrics"
)

// nodeREST serves nodes.metrics.k8s.io (NodeMetrics), get and list with
// label and field selectors, as metrics-server does.
type nodeREST struct {
	nodes corelisters.NodeLister
	store *store
}

var (
	_ rest.Storage              = &nodeREST{}
	_ rest.KindProvider         = &nodeREST{}
	_ rest.Getter               = &nodeREST{}
	_ rest.Lister               = &nodeREST{}
	_ rest.Scoper               = &nodeREST{}
	_ rest.TableConvertor       = &nodeREST{}
	_ rest.SingularNameProvider = &nodeREST{}
)

func (r *nodeREST) New() runtime.Object     { return &metrics.NodeMetrics{} }
func (r *nodeREST) NewList() runtime.Object { return &metrics.NodeMetricsList{} }
func (r *nodeREST) Destroy()                {}
func (r *nodeREST) Kind() string            { return "NodeMetrics" }
func (r *nodeREST) NamespaceScoped() bool   { return false }
func (r *nodeREST) GetSingularName() string { return "nodemetrics" }

func (r *nodeREST) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	nodes, err := r.nodes.List(labelSelector(opts))
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	list := &metrics.NodeMetricsList{}
	for _, n := range nodes {
		if opts != nil && opts.FieldSelector != nil && !opts.FieldSelector.Matches(generic.AddObjectMetaFieldsSet(fields.Set{}, &n.ObjectMeta, false)) {
			continue
		}
		if m, ok := r.metrics(n); ok {
			list.Items = append(list.Items, m)
		}
	}
	slices.SortFunc(list.Items, func(a, b metrics.NodeMetrics) int { return cmp.Compare(a.Name, b.Name) })
	return list, nil
}

func (r *nodeREST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	n, err := r.nodes.Get(name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, err
		}
		return nil, fmt.Errorf("getting node %s: %w", name, err)
	}
	m, ok := r.metrics(n)
	if !ok {
		return nil, apierrors.NewNotFound(metrics.Resource("nodemetrics"), name)
	}
	return &m, nil
}

func (r *nodeREST) metrics(n *v1.Node) (metrics.NodeMetrics, bool) {
	u, ok := r.store.node(n.Name)
	if !ok {
		return metrics.NodeMetrics{}, false
	}
	return metrics.NodeMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, CreationTimestamp: metav1.NewTime(time.Now())},
		Timestamp:  metav1.NewTime(u.at), Window: metav1.Duration{Duration: u.window}, Usage: u.list,
	}, true
}

func (r *nodeREST) ConvertToTable(ctx context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	switch t := obj.(type) {
	case *metrics.NodeMetrics:
		addRows(table, []row{{t.Name, t.Usage, t.Window.Duration, t}})
	case *metrics.NodeMetricsList:
		rows := make([]row, len(t.Items))
		for i := range t.Items {
			rows[i] = row{t.Items[i].Name, t.Items[i].Usage, t.Items[i].Window.Duration, &t.Items[i]}
		}
		addRows(table, rows)
	}
	return table, nil
}

// podREST serves pods.metrics.k8s.io (PodMetrics) of Running pods, get and
// list with label and field selectors, as metrics-server does.
type podREST struct {
	pods  corelisters.PodLister
	store *store
}

var (
	_ rest.Storage              = &podREST{}
	_ rest.KindProvider         = &podREST{}
	_ rest.Getter               = &podREST{}
	_ rest.Lister               = &podREST{}
	_ rest.Scoper               = &podREST{}
	_ rest.TableConvertor       = &podREST{}
	_ rest.SingularNameProvider = &podREST{}
)

func (r *podREST) New() runtime.Object     { return &metrics.PodMetrics{} }
func (r *podREST) NewList() runtime.Object { return &metrics.PodMetricsList{} }
func (r *podREST) Destroy()                {}
func (r *podREST) Kind() string            { return "PodMetrics" }
func (r *podREST) NamespaceScoped() bool   { return true }
func (r *podREST) GetSingularName() string { return "podmetrics" }

func (r *podREST) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	ns := genericapirequest.NamespaceValue(ctx)
	pods, err := r.pods.Pods(ns).List(labelSelector(opts))
	if err != nil {
		return nil, fmt.Errorf("listing pods in namespace %q: %w", ns, err)
	}
	list := &metrics.PodMetricsList{}
	for _, p := range pods {
		if opts != nil && opts.FieldSelector != nil && !opts.FieldSelector.Matches(generic.AddObjectMetaFieldsSet(fields.Set{}, &p.ObjectMeta, true)) {
			continue
		}
		if m, ok := r.metrics(p); ok {
			list.Items = append(list.Items, m)
		}
	}
	slices.SortFunc(list.Items, func(a, b metrics.PodMetrics) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return list, nil
}

func (r *podREST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	ns := genericapirequest.NamespaceValue(ctx)
	p, err := r.pods.Pods(ns).Get(name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, err
		}
		return nil, fmt.Errorf("getting pod %s/%s: %w", ns, name, err)
	}
	m, ok := r.metrics(p)
	if !ok {
		return nil, apierrors.NewNotFound(metrics.Resource("podmetrics"), ns+"/"+name)
	}
	return &m, nil
}

// metrics is a Running pod's metrics once every one of its containers has
// two points; the pod's timestamp and window are its earliest container's.
func (r *podREST) metrics(p *v1.Pod) (metrics.PodMetrics, bool) {
	if p.Status.Phase != v1.PodRunning {
		return metrics.PodMetrics{}, false
	}
	containers, ok := r.store.pod(types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
	if !ok {
		return metrics.PodMetrics{}, false
	}
	m := metrics.PodMetrics{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels, CreationTimestamp: metav1.NewTime(time.Now())}}
	var earliest *usage
	names := make([]string, 0, len(containers))
	for name := range containers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		u := containers[name]
		m.Containers = append(m.Containers, metrics.ContainerMetrics{Name: name, Usage: u.list})
		if earliest == nil || u.at.Before(earliest.at) {
			earliest = &u
		}
	}
	if earliest != nil {
		m.Timestamp, m.Window = metav1.NewTime(earliest.at), metav1.Duration{Duration: earliest.window}
	}
	return m, true
}

func (r *podREST) ConvertToTable(ctx context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	podRow := func(m *metrics.PodMetrics) row {
		sum := v1.ResourceList{}
		for _, c := range m.Containers {
			for k, v := range c.Usage {
				q := sum[k]
				q.Add(v)
				sum[k] = q
			}
		}
		return row{m.Name, sum, m.Window.Duration, m}
	}
	switch t := obj.(type) {
	case *metrics.PodMetrics:
		addRows(table, []row{podRow(t)})
	case *metrics.PodMetricsList:
		rows := make([]row, len(t.Items))
		for i := range t.Items {
			rows[i] = podRow(&t.Items[i])
		}
		addRows(table, rows)
	}
	return table, nil
}

type row struct {
	name   string
	usage  v1.ResourceList
	window time.Duration
	obj    runtime.Object
}

// addRows is metrics-server's table: name, one column per resource, window.
func addRows(table *metav1.Table, rows []row) {
	table.ColumnDefinitions = []metav1.TableColumnDefinition{{Name: "Name", Type: "string", Format: "name", Description: "Name of the resource"}}
	names := []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory}
	for _, n := range names {
		table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{Name: string(n), Type: "string", Format: "quantity"})
	}
	table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{Name: "Window", Type: "string", Format: "duration"})
	for _, r := range rows {
		cells := []any{r.name}
		for _, n := range names {
			q := r.usage[n]
			cells = append(cells, q.String())
		}
		cells = append(cells, r.window.String())
		table.Rows = append(table.Rows, metav1.TableRow{Cells: cells, Object: runtime.RawExtension{Object: r.obj}})
	}
}

func labelSelector(opts *metainternalversion.ListOptions) labels.Selector {
	if opts != nil && opts.LabelSelector != nil {
		return opts.LabelSelector
	}
	return labels.Everything()
}
