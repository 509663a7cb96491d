package kubelet

import (
	"net/http"

	"github.com/gatehouse-dev/gatehouse/kubelet/stats"
)

// routeStats adds /stats/summary and /metrics/resource to the kubelet API
// (authorized as nodes/stats and nodes/metrics), built by package stats
// from the runtime's CRI stats and the host's figures.
func (s *server) routeStats(mux *http.ServeMux) {
	p := stats.New(stats.Options{
		NodeName: s.agent.cfg.NodeName, Runtime: s.agent.runtime, Images: s.agent.images,
		FsPath: s.agent.cfg.DataDir, Logger: s.agent.logger,
	})
	summary := p.SummaryHandler()
	mux.Handle("GET /stats/summary", summary)
	mux.Handle("POST /stats/summary", summary)
	mux.Handle("GET /metrics/resource", p.ResourceMetricsHandler())
}
