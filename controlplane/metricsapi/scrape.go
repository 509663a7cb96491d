package metricsapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"
	kubeletclient "k8s.io/kubernetes/pkg/kubelet/client"
)

// scraper reads every node's /metrics/resource into the store.
type scraper struct {
	nodes corelisters.NodeLister
	conn  kubeletclient.ConnectionInfoGetter
	store *store
	// every is the resolution; timeout bounds one node's scrape.
	every, timeout time.Duration
}

func (s *scraper) run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		s.store.add(s.scrape(ctx))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// scrape reads every node at once; a node that fails is left out of the
// batch (and so has no metrics until it answers again), as with
// metrics-server.
func (s *scraper) scrape(ctx context.Context) *batch {
	b := &batch{nodes: map[string]point{}, pods: map[types.NamespacedName]map[string]point{}}
	nodes, err := s.nodes.List(labels.Everything())
	if err != nil {
		klog.ErrorS(err, "metrics API: listing nodes")
		return b
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, node := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodeCtx, cancel := context.WithTimeout(ctx, s.timeout)
			defer cancel()
			nb, err := s.scrapeNode(nodeCtx, node)
			if err != nil {
				klog.V(2).InfoS("metrics API: scraping a node failed", "node", node.Name, "err", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if p, ok := nb.nodes[node.Name]; ok {
				b.nodes[node.Name] = p
			}
			for pod, containers := range nb.pods {
				b.pods[pod] = containers
			}
		}()
	}
	wg.Wait()
	return b
}

func (s *scraper) scrapeNode(ctx context.Context, node *v1.Node) (*batch, error) {
	info, err := s.conn.GetConnectionInfo(ctx, types.NodeName(node.Name))
	if err != nil {
		return nil, fmt.Errorf("kubelet address: %w", err)
	}
	u := url.URL{Scheme: info.Scheme, Host: net.JoinHostPort(info.Hostname, info.Port), Path: "/metrics/resource"}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: info.Transport}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.String(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET %s: %s: %s", u.String(), resp.Status, body)
	}
	return decode(resp.Body, node.Name)
}

// decode reads the kubelet's resource metrics: a node point from
// node_cpu_usage_seconds_total and node_memory_working_set_bytes, and
// container points from container_cpu_usage_seconds_total,
// container_memory_working_set_bytes and container_start_time_seconds.
// Points without both CPU and memory are dropped.
func decode(r io.Reader, nodeName string) (*batch, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing resource metrics: %w", err)
	}
	type key struct {
		pod       types.NamespacedName
		container string
	}
	type partial struct {
		point
		hasCPU, hasMemory bool
	}
	var node partial
	containers := map[key]*partial{}
	get := func(m *dto.Metric) *partial {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		k := key{types.NamespacedName{Namespace: l["namespace"], Name: l["pod"]}, l["container"]}
		if containers[k] == nil {
			containers[k] = &partial{}
		}
		return containers[k]
	}
	seconds := func(v float64) uint64 { return uint64(v * float64(time.Second)) }
	at := func(m *dto.Metric) time.Time { return time.UnixMilli(m.GetTimestampMs()) }
	for _, m := range families["node_cpu_usage_seconds_total"].GetMetric() {
		node.cpu, node.at, node.hasCPU = seconds(m.GetCounter().GetValue()), at(m), true
	}
	for _, m := range families["node_memory_working_set_bytes"].GetMetric() {
		node.memory, node.hasMemory = uint64(m.GetGauge().GetValue()), true
	}
	for _, m := range families["container_cpu_usage_seconds_total"].GetMetric() {
		p := get(m)
		p.cpu, p.at, p.hasCPU = seconds(m.GetCounter().GetValue()), at(m), true
	}
	for _, m := range families["container_memory_working_set_bytes"].GetMetric() {
		p := get(m)
		p.memory, p.hasMemory = uint64(m.GetGauge().GetValue()), true
	}
	for _, m := range families["container_start_time_seconds"].GetMetric() {
		v := m.GetGauge().GetValue()
		get(m).start = time.Unix(0, int64(v*float64(time.Second)))
	}
	b := &batch{nodes: map[string]point{}, pods: map[types.NamespacedName]map[string]point{}}
	if node.hasCPU && node.hasMemory && node.at.Unix() > 0 {
		b.nodes[nodeName] = node.point
	}
	for k, p := range containers {
		if !p.hasCPU || !p.hasMemory || p.at.Unix() <= 0 {
			continue
		}
		if b.pods[k.pod] == nil {
			b.pods[k.pod] = map[string]point{}
		}
		b.pods[k.pod][k.container] = p.point
	}
	return b, nil
}
