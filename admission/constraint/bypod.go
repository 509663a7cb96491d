package constraint

import (
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/workqueue"
)

// ByPodID is the id of Gatehouse's entry in status.byPod, where each
// Gatekeeper pod reports whether it enforces an object: Gatehouse is the
// one "pod" that does.
const ByPodID = "gatehouse"

// ByPodStatus writes the status.byPod entry of Gatekeeper objects
// (constraints, mutators) once the engine has taken them in, as Gatekeeper's
// status controllers do: scripts and CI wait on
// status.byPod[].enforced before they rely on a policy. Writes happen off
// the informers' goroutines, newest entry first, and only when the entry
// differs from the object's, so the status update an object's informer
// then sees writes nothing.
type ByPodStatus struct {
	dyn    dynamic.Interface
	logger *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[byPodKey]

	mu      sync.Mutex
	pending map[byPodKey]map[string]any
}

type byPodKey struct {
	gvr             schema.GroupVersionResource
	namespace, name string
}

// NewByPodStatus returns a writer; Run starts it.
func NewByPodStatus(dyn dynamic.Interface, logger *slog.Logger) *ByPodStatus {
	if logger == nil {
		logger = slog.Default()
	}
	return &ByPodStatus{
		dyn:     dyn,
		logger:  logger,
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[byPodKey]()),
		pending: map[byPodKey]map[string]any{},
	}
}

// Run writes until ctx ends.
func (w *ByPodStatus) Run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for {
		key, shutdown := w.queue.Get()
		if shutdown {
			return
		}
		w.write(ctx, key)
	}
}

// Set makes entry obj's status.byPod (Gatehouse's entry, with id ByPodID),
// unless it already is. A nil writer does nothing.
func (w *ByPodStatus) Set(gvr schema.GroupVersionResource, obj *unstructured.Unstructured, entry map[string]any) {
	if w == nil {
		return
	}
	entry["id"] = ByPodID
	if current, _, _ := unstructured.NestedSlice(obj.Object, "status", "byPod"); len(current) == 1 && jsonEqual(current[0], entry) {
		return
	}
	key := byPodKey{gvr, obj.GetNamespace(), obj.GetName()}
	w.mu.Lock()
	w.pending[key] = entry
	w.mu.Unlock()
	w.queue.Add(key)
}

// Forget drops what is pending for a deleted object.
func (w *ByPodStatus) Forget(gvr schema.GroupVersionResource, namespace, name string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	delete(w.pending, byPodKey{gvr, namespace, name})
	w.mu.Unlock()
}

func (w *ByPodStatus) write(ctx context.Context, key byPodKey) {
	defer w.queue.Done(key)
	w.mu.Lock()
	entry, ok := w.pending[key]
	delete(w.pending, key)
	w.mu.Unlock()
	if !ok {
		w.queue.Forget(key)
		return
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"byPod": []any{entry}}})
	if err != nil {
		w.logger.Warn("status.byPod", "resource", key.gvr.Resource, "name", key.name, "error", err)
		return
	}
	client := w.dyn.Resource(key.gvr)
	var ri dynamic.ResourceInterface = client
	if key.namespace != "" {
		ri = client.Namespace(key.namespace)
	}
	_, err = ri.Patch(ctx, key.name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "gatehouse-status"}, "status")
	switch {
	case err == nil, apierrors.IsNotFound(err), ctx.Err() != nil:
		w.queue.Forget(key)
	default:
		// Retried with back-off, unless a newer entry came meanwhile.
		w.mu.Lock()
		if _, newer := w.pending[key]; !newer {
			w.pending[key] = entry
		}
		w.mu.Unlock()
		w.logger.Debug("writing status.byPod, will retry", "resource", key.gvr.Resource, "name", key.name, "error", err)
		w.queue.AddRateLimited(key)
	}
}

// jsonEqual compares a and b as JSON values (numbers of any Go type).
func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var va, vb any
	if json.Unmarshal(ja, &va) != nil || json.Unmarshal(jb, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}
