package externaldata

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
)

// Syncer keeps a System in step with the cluster's Providers, as
// Gatekeeper's external data controller does: it installs the CRD, puts
// every Provider that parses in force and reports each in status.byPod
// (active, or the error that keeps it out).
type Syncer struct {
	system *System
	dyn    dynamic.Interface
	crds   apiextensionsclient.Interface
	logger *slog.Logger
	status *constraint.ByPodStatus
}

// NewSyncer returns a syncer for the cluster cfg points at.
func NewSyncer(cfg *rest.Config, system *System, logger *slog.Logger) (*Syncer, error) {
	dyn, crds, err := constraint.Clients(cfg)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Syncer{system: system, dyn: dyn, crds: crds, logger: logger}, nil
}

// Start installs the CRD and starts the informer; it returns once the
// Providers that exist are in force. Work goes on until ctx ends.
func (s *Syncer) Start(ctx context.Context) error {
	if err := constraint.EnsureCRDs(ctx, s.crds, s.dyn, false, CRD()); err != nil {
		return err
	}
	s.status = constraint.NewByPodStatus(s.dyn, s.logger)
	go s.status.Run(ctx)
	factory := dynamicinformer.NewDynamicSharedInformerFactory(s.dyn, 0)
	handled, err := factory.ForResource(GVR).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.upsert,
		UpdateFunc: func(_, obj any) { s.upsert(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				s.status.Forget(GVR, "", u.GetName())
				s.system.Remove(u.GetName())
			}
		},
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	err = wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return handled.HasSynced(), nil
	})
	if err != nil {
		return fmt.Errorf("Providers did not sync: %w", err)
	}
	return nil
}

func (s *Syncer) upsert(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	entry := map[string]any{
		"providerUID":        string(u.GetUID()),
		"observedGeneration": u.GetGeneration(),
		"operations":         []any{"audit", "mutation-webhook", "webhook"},
		"active":             true,
	}
	p, err := Parse(u)
	if err != nil {
		// Stored before Gatehouse refused such Providers. Gatekeeper keeps
		// the last good version in force; the status says why this one
		// is not.
		s.logger.Warn("Provider not in force", "provider", u.GetName(), "error", err)
		entry["active"] = false
		entry["errors"] = []any{map[string]any{"type": "UpsertCache", "message": strings.Join(strings.Fields(err.Error()), " "), "retryable": true}}
	} else {
		s.system.Upsert(p)
	}
	s.status.Set(GVR, u, entry)
}
