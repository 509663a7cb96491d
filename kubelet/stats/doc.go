// Package stats is the node agent's resource usage reporting: it builds
// the kubelet's stats summary (k8s.io/kubelet/pkg/apis/stats/v1alpha1, as
// served on /stats/summary) from the CRI's container and sandbox stats and
// the host's root cgroup (or /proc), and serves /metrics/resource with
// upstream kubelet's resource metrics collector, which is what
// metrics-server and Gatehouse's metrics.k8s.io API scrape.
//
// CPU rates (usageNanoCores) come from the runtime when it reports them,
// else from the previous sample, as upstream's CRI stats provider does. A
// runtime that refuses sandbox stats (containerd 1.6 without a pod cgroup)
// gets pod figures that are the sums of its containers'.
//
// Usage:
//
//	p := stats.New(stats.Options{NodeName: "gatehouse", Runtime: rt, Images: img, FsPath: dataDir})
//	mux.Handle("GET /stats/summary", p.SummaryHandler())
//	mux.Handle("GET /metrics/resource", p.ResourceMetricsHandler())
package stats
