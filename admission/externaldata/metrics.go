package externaldata

import (
	"sync"
	"time"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Metrics on the API server's /metrics: the calls Gatehouse makes to each
// provider (answers from the response cache are not calls), and how long
// they take. Gatekeeper itself counts only Providers and their
// reconciliation errors; a provider's latency is what decides whether
// requests wait on it.
var (
	providerRequests = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace:      "gatehouse",
		Subsystem:      "external_data",
		Name:           "provider_requests_total",
		Help:           "Calls to Gatekeeper external data providers, by provider and outcome (ok; system_error: the provider answered one; error: no usable answer; stubbed: answered by a test stub).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"provider", "outcome"})

	providerLatency = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace:      "gatehouse",
		Subsystem:      "external_data",
		Name:           "provider_request_duration_seconds",
		Help:           "Time of one call to a Gatekeeper external data provider, answered or not, by provider.",
		Buckets:        []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		StabilityLevel: metrics.ALPHA,
	}, []string{"provider"})

	registerMetrics sync.Once
)

func ensureMetricsRegistered() {
	registerMetrics.Do(func() {
		legacyregistry.MustRegister(providerRequests, providerLatency)
	})
}

// Provider call outcomes.
const (
	outcomeOK          = "ok"
	outcomeSystemError = "system_error"
	outcomeError       = "error"
	outcomeStubbed     = "stubbed"
)

// observeCall counts one call to provider.
func observeCall(provider, outcome string, took time.Duration) {
	providerRequests.WithLabelValues(provider, outcome).Inc()
	if outcome != outcomeStubbed {
		providerLatency.WithLabelValues(provider).Observe(took.Seconds())
	}
}
