package constraint

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Metrics on the API server's /metrics, next to upstream's admission
// metrics (which already count and time the GatekeeperConstraints step as
// a whole, and each ValidatingAdmissionPolicy and webhook): these break
// it down by constraint and template.
var (
	constraintViolations = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace:      "gatehouse",
		Subsystem:      "constraint",
		Name:           "violations_total",
		Help:           "Violations reported by Gatekeeper constraints at admission, by constraint kind, name and the enforcement action taken (deny, warn, dryrun).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"kind", "constraint", "action"})

	templateEvaluations = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace:      "gatehouse",
		Subsystem:      "constraint",
		Name:           "template_evaluation_duration_seconds",
		Help:           "Time to evaluate one ConstraintTemplate's matching constraints against one object (admission and audit), by template and result (pass, violation, error).",
		Buckets:        []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1},
		StabilityLevel: metrics.ALPHA,
	}, []string{"template", "result"})

	registerMetrics sync.Once
)

func ensureMetricsRegistered() {
	registerMetrics.Do(func() {
		legacyregistry.MustRegister(constraintViolations, templateEvaluations)
	})
}
