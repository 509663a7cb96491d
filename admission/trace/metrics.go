package trace

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// policyDecisions counts what each policy, binding, webhook, constraint and
// mutator did, from the traces as they close. Upstream's own metrics time
// each plugin, webhook and ValidatingAdmissionPolicy, but count policies
// only when they refuse, warn or fail; this one also counts allow and
// skip, so a policy that never matches shows as such.
var (
	policyDecisions = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace:      "gatehouse",
		Subsystem:      "admission",
		Name:           "policy_decisions_total",
		Help:           "Admission decisions per policy, from the admission trace: by plugin, policy kind, name, binding (admission policies) and verdict (skip, allow, warn, deny, audit, dryrun, patch, failed-open, error).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"plugin", "kind", "name", "binding", "verdict"})

	registerMetrics sync.Once
)

func ensureMetricsRegistered() {
	registerMetrics.Do(func() { legacyregistry.MustRegister(policyDecisions) })
}

// observe counts the decisions of a closed trace.
func observe(t *Trace) {
	for _, s := range t.Steps {
		for _, p := range s.Policies {
			if p.Kind == KindWarning || p.Name == "" {
				continue // words that name no policy
			}
			policyDecisions.WithLabelValues(s.Plugin, p.Kind, p.Name, p.Binding, p.Verdict).Inc()
		}
	}
}
