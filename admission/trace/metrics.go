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

// decisionKey is one series of policyDecisions.
type decisionKey struct{ plugin, kind, name, binding, verdict string }

// decisionCounters caches each series' counter: a request reports every
// constraint and binding, and the vector's own look-up hashes its five
// label values each time. Series are never deleted from the vector, so a
// cached counter stays the one it serves.
var decisionCounters = struct {
	sync.RWMutex
	m map[decisionKey]metrics.CounterMetric
}{m: map[decisionKey]metrics.CounterMetric{}}

func decisionCounter(key decisionKey) metrics.CounterMetric {
	decisionCounters.RLock()
	c, ok := decisionCounters.m[key]
	decisionCounters.RUnlock()
	if ok {
		return c
	}
	c = policyDecisions.WithLabelValues(key.plugin, key.kind, key.name, key.binding, key.verdict)
	decisionCounters.Lock()
	decisionCounters.m[key] = c
	decisionCounters.Unlock()
	return c
}

// observe counts the decisions of a closed trace.
func observe(t *Trace) {
	for _, s := range t.richSteps() {
		for i := range s.policyCount() {
			p := s.policy(i)
			if p.Kind == KindWarning || p.Name == "" {
				continue // words that name no policy
			}
			decisionCounter(decisionKey{s.Plugin, p.Kind, p.Name, p.Binding, p.Verdict}).Inc()
		}
	}
}
