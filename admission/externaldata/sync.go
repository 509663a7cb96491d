package externaldata

import (
	"log/slog"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
)

// NewSyncer returns the syncer that keeps system in step with the
// cluster's Providers, as Gatekeeper's external data controller does: it
// installs the CRD, puts every Provider that parses in force and reports
// each in status.byPod (active, or the error that keeps it out).
func NewSyncer(cfg *rest.Config, system *System, logger *slog.Logger) *constraint.ObjectSyncer {
	if logger == nil {
		logger = slog.Default()
	}
	return constraint.NewObjectSyncer(cfg, constraint.ObjectSyncer{
		Resource: "Providers", CRD: CRD(), GVR: GVR,
		Upsert: func(u *unstructured.Unstructured) map[string]any {
			entry := map[string]any{
				"providerUID":        string(u.GetUID()),
				"observedGeneration": u.GetGeneration(),
				"operations":         []any{"audit", "mutation-webhook", "webhook"},
				"active":             true,
			}
			p, err := Parse(u)
			if err != nil {
				// Stored before Gatehouse refused such Providers. As in
				// Gatekeeper, the last version that parsed stays in
				// force; the status says why this one is not.
				logger.Warn("Provider not in force", "provider", u.GetName(), "error", err)
				entry["active"] = false
				entry["errors"] = []any{map[string]any{"type": "UpsertCache", "message": strings.Join(strings.Fields(err.Error()), " "), "retryable": true}}
				return entry
			}
			system.Upsert(p)
			return entry
		},
		Remove: system.Remove,
	}, logger)
}
