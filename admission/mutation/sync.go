package mutation

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
)

// Syncer keeps a System in step with the cluster's mutators, as
// Gatekeeper's mutation controllers do: it installs the four CRDs and
// upserts every mutator that parses.
type Syncer struct {
	system *System
	dyn    dynamic.Interface
	crds   apiextensionsclient.Interface
	logger *slog.Logger

	// status writes each mutator's status.byPod; stores are the four
	// kinds' informer stores, by resource, to refresh every mutator's
	// status when one change holds others back or lets them go.
	status *constraint.ByPodStatus
	mu     sync.Mutex
	stores map[schema.GroupVersionResource]cache.Store
	// invalid holds why each stored mutator that does not parse is not
	// in force, by id, so that refreshing statuses parses nothing again.
	invalid map[string]string
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

// Start installs the CRDs and starts the informers; it returns once the
// mutators that exist are in force. Work goes on until ctx ends.
func (s *Syncer) Start(ctx context.Context) error {
	crds := CRDs()
	if err := constraint.EnsureCRDs(ctx, s.crds, s.dyn, false, crds...); err != nil {
		return err
	}
	s.status = constraint.NewByPodStatus(s.dyn, s.logger)
	go s.status.Run(ctx)
	s.stores, s.invalid = map[schema.GroupVersionResource]cache.Store{}, map[string]string{}
	factory := dynamicinformer.NewDynamicSharedInformerFactory(s.dyn, 0)
	var synced []cache.InformerSynced
	for _, crd := range crds {
		gvr := schema.GroupVersionResource{Group: Group, Version: storageVersion(crd.Spec.Versions), Resource: crd.Spec.Names.Plural}
		kind := crd.Spec.Names.Kind
		informer := factory.ForResource(gvr).Informer()
		s.stores[gvr] = informer.GetStore()
		handled, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.upsert(obj) },
			UpdateFunc: func(_, obj any) { s.upsert(obj) },
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				if u, ok := obj.(*unstructured.Unstructured); ok {
					s.status.Forget(gvr, "", u.GetName())
					s.mu.Lock()
					delete(s.invalid, id(kind, u.GetName()))
					s.mu.Unlock()
					s.system.Remove(kind, u.GetName())
					s.refreshStatus()
				}
			},
		})
		if err != nil {
			return err
		}
		synced = append(synced, handled.HasSynced)
	}
	factory.Start(ctx.Done())
	err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		for _, ok := range synced {
			if !ok() {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("mutators did not sync: %w", err)
	}
	return nil
}

func (s *Syncer) upsert(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	m, err := Parse(u)
	s.mu.Lock()
	if err != nil {
		s.invalid[id(u.GetKind(), u.GetName())] = strings.Join(strings.Fields(err.Error()), " ")
	} else {
		delete(s.invalid, id(u.GetKind(), u.GetName()))
	}
	s.mu.Unlock()
	if err != nil {
		// Stored before Gatehouse refused such mutators, or written
		// around admission: say why it is not in force.
		s.system.Remove(u.GetKind(), u.GetName())
		s.logger.Warn("gatekeeper mutator not in force", "mutator", u.GetKind()+"/"+u.GetName(), "error", err)
	} else if err := s.system.Upsert(m); err != nil {
		s.logger.Warn("gatekeeper mutator not applied", "mutator", u.GetKind()+"/"+u.GetName(), "error", err)
	}
	s.refreshStatus()
}

// refreshStatus sets every mutator's status.byPod, as Gatekeeper's mutator
// status controller writes it: enforced unless it does not parse or is held
// back by a schema conflict. Only changed entries are written.
func (s *Syncer) refreshStatus() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for gvr, store := range s.stores {
		for _, obj := range store.List() {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			entry := map[string]any{
				"mutatorUID":         string(u.GetUID()),
				"observedGeneration": u.GetGeneration(),
				"operations":         []any{"mutation-webhook"},
				"enforced":           true,
			}
			var problem map[string]any
			if msg, bad := s.invalid[id(u.GetKind(), u.GetName())]; bad {
				problem = map[string]any{"message": msg}
			} else if with := s.system.Conflicts(u.GetKind(), u.GetName()); len(with) > 0 {
				problem = map[string]any{"type": "schema_conflict", "message": "conflicts with " + strings.Join(with, ", ") + " on the shape of the objects they mutate; not applied until that changes"}
			}
			if problem != nil {
				entry["enforced"] = false
				entry["errors"] = []any{problem}
			}
			s.status.Set(gvr, u, entry)
		}
	}
}

// storageVersion is the version a CRD stores, which its informer lists.
func storageVersion(versions []apiextensionsv1.CustomResourceDefinitionVersion) string {
	for _, v := range versions {
		if v.Storage {
			return v.Name
		}
	}
	return versions[0].Name
}
