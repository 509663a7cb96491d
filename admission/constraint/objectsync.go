package constraint

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// ObjectSyncer keeps what Gatehouse holds of one cluster-scoped Gatekeeper
// resource (ExpansionTemplates, Providers) in step with the cluster, as
// Gatekeeper's controllers for them do: it installs the CRD, hands every
// object to Upsert as it comes and changes, writes the status.byPod entry
// Upsert returns, and calls Remove when an object goes.
type ObjectSyncer struct {
	// Resource names the objects in errors ("Providers").
	Resource string
	CRD      *apiextensionsv1.CustomResourceDefinition
	GVR      schema.GroupVersionResource
	// Upsert takes an object in (or says why not) and returns its
	// status.byPod entry.
	Upsert func(*unstructured.Unstructured) map[string]any
	// Remove takes the object named name out.
	Remove func(name string)
	// ReadOnly reads the objects of a cluster whose own control plane owns
	// them (gatehouse audit): the CRD must be installed already, and no
	// status is written.
	ReadOnly bool

	cfg    *rest.Config
	logger *slog.Logger
}

// NewObjectSyncer returns s for the cluster cfg points at.
func NewObjectSyncer(cfg *rest.Config, s ObjectSyncer, logger *slog.Logger) *ObjectSyncer {
	if logger == nil {
		logger = slog.Default()
	}
	s.cfg, s.logger = cfg, logger
	return &s
}

// Start installs the CRD and starts the informer; it returns once the
// objects that exist are taken in. Work goes on until ctx ends.
func (s *ObjectSyncer) Start(ctx context.Context) error {
	dyn, crds, err := Clients(s.cfg)
	if err != nil {
		return err
	}
	if err := EnsureCRDs(ctx, crds, dyn, s.ReadOnly, s.CRD); err != nil {
		return err
	}
	var status *ByPodStatus // nil writes nothing
	if !s.ReadOnly {
		status = NewByPodStatus(dyn, s.logger)
		go status.Run(ctx)
	}
	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	upsert := func(obj any) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			status.Set(s.GVR, u, s.Upsert(u))
		}
	}
	handled, err := factory.ForResource(s.GVR).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    upsert,
		UpdateFunc: func(_, obj any) { upsert(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				status.Forget(s.GVR, "", u.GetName())
				s.Remove(u.GetName())
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
		return fmt.Errorf("%s did not sync: %w", s.Resource, err)
	}
	return nil
}
