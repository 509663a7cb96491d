package metricsapi

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func nodeBatch(at time.Time, cpu, memory uint64) *batch {
	return &batch{nodes: map[string]point{"n1": {at: at, cpu: cpu, memory: memory}}}
}

func podBatch(containers map[string]point) *batch {
	return &batch{pods: map[types.NamespacedName]map[string]point{{Namespace: "ns", Name: "p"}: containers}}
}

func TestNodeUsageFromTwoSamples(t *testing.T) {
	s := newStore(15 * time.Second)
	s.add(nodeBatch(t0, 1_000_000_000, 100))
	if _, ok := s.node("n1"); ok {
		t.Fatal("usage from one sample")
	}
	// 3 s of CPU over 15 s: 200m.
	s.add(nodeBatch(t0.Add(15*time.Second), 4_000_000_000, 200))
	u, ok := s.node("n1")
	if !ok {
		t.Fatal("no usage from two samples")
	}
	cpu, mem := u.list[v1.ResourceCPU], u.list[v1.ResourceMemory]
	if cpu.MilliValue() != 200 || mem.Value() != 200 || u.window != 15*time.Second || !u.at.Equal(t0.Add(15*time.Second)) {
		t.Errorf("usage cpu %s memory %s window %s at %s", cpu.String(), mem.String(), u.window, u.at)
	}
	// The same sample again keeps the previous one.
	s.add(nodeBatch(t0.Add(15*time.Second), 4_000_000_000, 200))
	if u2, ok := s.node("n1"); !ok || u2.window != u.window {
		t.Errorf("a repeated sample lost the window: %+v %v", u2, ok)
	}
	// A node missing from a batch is forgotten.
	s.add(&batch{})
	if _, ok := s.node("n1"); ok {
		t.Error("a node left out of the batch still has usage")
	}
}

func TestContainerUsage(t *testing.T) {
	start := t0.Add(-time.Hour)
	tests := []struct {
		name    string
		batches []map[string]point
		want    map[string]int64 // container: millicores; nil: no pod usage
	}{
		{
			name: "two samples of every container",
			batches: []map[string]point{
				{"a": {start: start, at: t0, cpu: 0}, "b": {start: start, at: t0, cpu: 0}},
				{"a": {start: start, at: t0.Add(10 * time.Second), cpu: 1e9}, "b": {start: start, at: t0.Add(10 * time.Second), cpu: 5e9}},
			},
			want: map[string]int64{"a": 100, "b": 500},
		},
		{
			name: "a container with one sample holds back the pod",
			batches: []map[string]point{
				{"a": {start: start, at: t0}},
				{"a": {start: start, at: t0.Add(10 * time.Second), cpu: 1e9}, "b": {start: start, at: t0.Add(10 * time.Second)}},
			},
		},
		{
			name: "a restarted container starts over",
			batches: []map[string]point{
				{"a": {start: start, at: t0, cpu: 9e9}},
				{"a": {start: t0.Add(5 * time.Second), at: t0.Add(40 * time.Second), cpu: 1e9}},
			},
		},
		{
			name: "a fresh container (10 s to one resolution old) gets a rate from its start",
			batches: []map[string]point{
				{"a": {start: t0, at: t0.Add(12 * time.Second), cpu: 6e9}},
			},
			want: map[string]int64{"a": 500},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(15 * time.Second)
			for _, b := range tt.batches {
				s.add(podBatch(b))
			}
			got, ok := s.pod(types.NamespacedName{Namespace: "ns", Name: "p"})
			if tt.want == nil {
				if ok {
					t.Errorf("usage %+v, want none", got)
				}
				return
			}
			if !ok || len(got) != len(tt.want) {
				t.Fatalf("usage %+v %v, want %v", got, ok, tt.want)
			}
			for name, milli := range tt.want {
				q := got[name].list[v1.ResourceCPU]
				if q.MilliValue() != milli {
					t.Errorf("container %s: cpu %s, want %dm", name, q.String(), milli)
				}
			}
		})
	}
}

func TestBetweenRejectsDecreases(t *testing.T) {
	for name, pair := range map[string][2]point{
		"cpu went down":   {{at: t0.Add(time.Second), cpu: 1}, {at: t0, cpu: 2}},
		"start went back": {{start: t0, at: t0.Add(2 * time.Second)}, {start: t0.Add(time.Second), at: t0}},
		"same time":       {{at: t0, cpu: 2}, {at: t0, cpu: 1}},
	} {
		if _, err := between(pair[0], pair[1]); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestDecodeKubeletResourceMetrics(t *testing.T) {
	// What upstream's collector (and so package kubelet/stats) writes.
	text := `# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="shop",pod="web"} 1.5 1796119215000
container_cpu_usage_seconds_total{container="cpuonly",namespace="shop",pod="web"} 1 1796119215000
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="shop",pod="web"} 2.097152e+06 1796119215000
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="app",namespace="shop",pod="web"} 1.7961192e+09
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 1234.5 1796119216000
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.073741824e+09 1796119216000
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
`
	b, err := decode(strings.NewReader(text), "n1")
	if err != nil {
		t.Fatal(err)
	}
	n := b.nodes["n1"]
	if n.cpu != 1234_500_000_000 || n.memory != 1<<30 || !n.at.Equal(time.UnixMilli(1796119216000)) {
		t.Errorf("node point %+v", n)
	}
	pod := b.pods[types.NamespacedName{Namespace: "shop", Name: "web"}]
	if len(pod) != 1 {
		t.Fatalf("containers %+v, want app only (cpuonly has no memory)", pod)
	}
	app := pod["app"]
	if app.cpu != 1_500_000_000 || app.memory != 2<<20 || !app.start.Equal(t0) || !app.at.Equal(time.UnixMilli(1796119215000)) {
		t.Errorf("app point %+v", app)
	}
	if _, err := decode(strings.NewReader("not { prometheus"), "n1"); err == nil {
		t.Error("garbage decoded without error")
	}
}
