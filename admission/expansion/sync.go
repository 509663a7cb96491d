package expansion

import (
	"log/slog"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
)

// NewSyncer returns the syncer that keeps system in step with the
// cluster's ExpansionTemplates, as Gatekeeper's expansion controller does:
// it installs the CRD, upserts every template that parses and reports each
// in status.byPod.
func NewSyncer(cfg *rest.Config, system *System, logger *slog.Logger) *constraint.ObjectSyncer {
	if logger == nil {
		logger = slog.Default()
	}
	return constraint.NewObjectSyncer(cfg, constraint.ObjectSyncer{
		Resource: "ExpansionTemplates", CRD: CRD(), GVR: GVR,
		Upsert: func(u *unstructured.Unstructured) map[string]any {
			entry := map[string]any{
				"templateUID":        string(u.GetUID()),
				"observedGeneration": u.GetGeneration(),
				"operations":         []any{"audit", "webhook"},
				"enforced":           true,
			}
			t, err := Parse(u)
			if err != nil {
				// Stored before Gatehouse refused such templates: say why it
				// is not in force.
				system.Remove(u.GetName())
				logger.Warn("ExpansionTemplate not in force", "template", u.GetName(), "error", err)
				entry["enforced"] = false
				entry["errors"] = []any{map[string]any{"message": strings.Join(strings.Fields(err.Error()), " ")}}
				return entry
			}
			system.Upsert(t)
			return entry
		},
		Remove: system.Remove,
	}, logger)
}
