package stats

import (
	"encoding/json"
	"fmt"
	"net/http"

	"k8s.io/component-base/metrics"
	"k8s.io/kubernetes/pkg/kubelet/metrics/collectors"
)

// SummaryHandler serves /stats/summary as upstream's kubelet does: the
// full summary, or CPU and memory only with ?only_cpu_and_memory=true.
func (p *Provider) SummaryHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, fmt.Sprintf("Internal Error: parse form failed: %v", err), http.StatusInternalServerError)
			return
		}
		only := r.Form["only_cpu_and_memory"]
		summary, err := p.summary(r.Context(), len(only) == 1 && only[0] == "true")
		if err != nil {
			http.Error(w, fmt.Sprintf("Internal Error: %v", err), http.StatusInternalServerError)
			return
		}
		data, err := json.Marshal(summary)
		if err != nil {
			http.Error(w, fmt.Sprintf("Internal Error: %v", err), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	})
}

// ResourceMetricsHandler serves /metrics/resource: upstream kubelet's
// resource metrics collector over this provider, so the names, labels,
// help texts and timestamps are the kubelet's.
func (p *Provider) ResourceMetricsHandler() http.Handler {
	r := metrics.NewKubeRegistry()
	r.CustomMustRegister(collectors.NewResourceMetricsCollector(p))
	return metrics.HandlerFor(r, metrics.HandlerOpts{ErrorHandling: metrics.ContinueOnError})
}
