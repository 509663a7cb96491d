package constraint

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
)

// What Gatekeeper replicates into data.inventory is named by its Config
// (only the one named config in its own namespace) and by SyncSets; the
// union of both is synced.
const (
	ConfigGroup  = "config.gatekeeper.sh"
	SyncSetGroup = "syncset.gatekeeper.sh"
	// GatekeeperNamespace is the namespace Gatekeeper reads its Config from.
	// Gatehouse does not create it: it is applied with the Config.
	GatekeeperNamespace = "gatekeeper-system"
	// ConfigName is the name of the one Config Gatekeeper reads.
	ConfigName = "config"
)

var (
	// ConfigGVR is Gatekeeper's Config resource (namespaced).
	ConfigGVR = schema.GroupVersionResource{Group: ConfigGroup, Version: "v1alpha1", Resource: "configs"}
	// SyncSetGVR is Gatekeeper's SyncSet resource (cluster-scoped).
	SyncSetGVR = schema.GroupVersionResource{Group: SyncSetGroup, Version: "v1alpha1", Resource: "syncsets"}
)

// gvkEntrySchema is a {group, version, kind} entry of spec.sync.syncOnly
// and spec.gvks.
func gvkEntrySchema() apiextensionsv1.JSONSchemaProps {
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	return apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"group": str, "version": str, "kind": str,
	}}
}

// ConfigCRD is Gatekeeper's Config CRD (config.gatekeeper.sh/v1alpha1,
// namespaced). spec.sync.syncOnly is described fully; match (read by
// ParseExclusions, which reports what it cannot use), validation and
// readiness (not read) keep whatever they hold.
func ConfigCRD() *apiextensionsv1.CustomResourceDefinition {
	entry := gvkEntrySchema()
	return singleVersionCRD(ConfigGVR, "Config", "config", apiextensionsv1.NamespaceScoped, objectSchema(apiextensionsv1.JSONSchemaProps{
		Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"sync": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
				"syncOnly": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &entry}},
			}},
			"match":      {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: preserveUnknown()}},
			"validation": *preserveUnknown(),
			"readiness":  *preserveUnknown(),
		},
	}, true))
}

// SyncSetCRD is Gatekeeper's SyncSet CRD (syncset.gatekeeper.sh/v1alpha1,
// cluster-scoped), whose spec.gvks names what to sync.
func SyncSetCRD() *apiextensionsv1.CustomResourceDefinition {
	entry := gvkEntrySchema()
	return singleVersionCRD(SyncSetGVR, "SyncSet", "syncset", apiextensionsv1.ClusterScoped, objectSchema(apiextensionsv1.JSONSchemaProps{
		Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"gvks": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &entry}},
		},
	}, false))
}

// InventoryKey is where Gatekeeper's admission target puts obj under
// data.inventory: [cluster, <groupversion>, <kind>, <name>] for a
// cluster-scoped object, [namespace, <namespace>, <groupversion>, <kind>,
// <name>] for a namespaced one, groupversion being "v1" for the core group
// and "<group>/<version>" otherwise.
func InventoryKey(obj *unstructured.Unstructured) ([]string, error) {
	gvk := obj.GroupVersionKind()
	switch {
	case gvk.Version == "":
		return nil, fmt.Errorf("resource %s has no version", obj.GetName())
	case gvk.Kind == "":
		return nil, fmt.Errorf("resource %s has no kind", obj.GetName())
	case obj.GetName() == "":
		return nil, fmt.Errorf("%s has no name", gvk.Kind)
	}
	if ns := obj.GetNamespace(); ns != "" {
		return []string{"namespace", ns, gvk.GroupVersion().String(), gvk.Kind, obj.GetName()}, nil
	}
	return []string{"cluster", gvk.GroupVersion().String(), gvk.Kind, obj.GetName()}, nil
}

// inventoryPath is key's path in the store.
func inventoryPath(key ...string) storage.Path {
	return append(storage.Path{"inventory"}, key...)
}

// SetInventory adds or replaces obj, whole, in data.inventory.
func (e *Engine) SetInventory(ctx context.Context, obj *unstructured.Unstructured) error {
	key, err := InventoryKey(obj)
	if err != nil {
		return err
	}
	return storage.Txn(ctx, e.store, storage.WriteParams, func(txn storage.Transaction) error {
		node, err := e.store.Read(ctx, txn, inventoryPath())
		if err != nil {
			return err
		}
		// The store adds a key only to an object that exists: the first
		// missing parent gets the rest of the path as one subtree.
		for i, k := range key[:len(key)-1] {
			next, ok, err := invChild(node, k)
			if err != nil {
				return fmt.Errorf("data.inventory %v: %w", key[:i], err)
			}
			if !ok {
				return e.store.Write(ctx, txn, storage.AddOp, inventoryPath(key[:i+1]...), invNest(key[i+1:], obj.Object))
			}
			node = next
		}
		return e.store.Write(ctx, txn, storage.AddOp, inventoryPath(key...), obj.Object)
	})
}

// RemoveInventory removes obj from data.inventory, and the objects that
// only held it; an object not there is no error.
func (e *Engine) RemoveInventory(ctx context.Context, obj *unstructured.Unstructured) error {
	key, err := InventoryKey(obj)
	if err != nil {
		return err
	}
	return e.removeInventory(ctx, func(inv any) ([][]string, error) {
		p, ok, err := removalPath(inv, key)
		if !ok {
			return nil, err
		}
		return [][]string{p}, err
	})
}

// RemoveInventoryKind removes every object of gvk from data.inventory, for
// when gvk is no longer synced.
func (e *Engine) RemoveInventoryKind(ctx context.Context, gvk schema.GroupVersionKind) error {
	gv := gvk.GroupVersion().String()
	return e.removeInventory(ctx, func(inv any) ([][]string, error) {
		var paths [][]string
		if p, ok, err := removalPath(inv, []string{"cluster", gv, gvk.Kind}); err != nil {
			return nil, err
		} else if ok {
			paths = append(paths, p)
		}
		namespaces, ok, err := invChild(inv, "namespace")
		if err != nil || !ok {
			return paths, err
		}
		nsNames, err := invKeys(namespaces)
		if err != nil {
			return nil, err
		}
		for _, ns := range nsNames {
			if p, ok, err := removalPath(inv, []string{"namespace", ns, gv, gvk.Kind}); err != nil {
				return nil, err
			} else if ok {
				paths = append(paths, p)
			}
		}
		return paths, nil
	})
}

// removeInventory removes the paths (relative to data.inventory) that
// paths finds in the current data.inventory, in one transaction. The paths
// are computed before any write, so that reading does not copy what the
// transaction changed.
func (e *Engine) removeInventory(ctx context.Context, paths func(inv any) ([][]string, error)) error {
	return storage.Txn(ctx, e.store, storage.WriteParams, func(txn storage.Transaction) error {
		inv, err := e.store.Read(ctx, txn, inventoryPath())
		if err != nil {
			return err
		}
		remove, err := paths(inv)
		if err != nil {
			return err
		}
		for _, p := range remove {
			if err := e.store.Write(ctx, txn, storage.RemoveOp, inventoryPath(p...), nil); err != nil && !storage.IsNotFound(err) {
				return err
			}
		}
		return nil
	})
}

// removalPath returns the prefix of key to remove so that removing key
// leaves no empty object behind: the highest ancestor below data.inventory
// that holds nothing but key. ok is false when key is not in inv.
func removalPath(inv any, key []string) (path []string, ok bool, err error) {
	sizes := make([]int, len(key)) // sizes[i]: keys of the object at key[:i]
	node := inv
	for i, k := range key {
		if sizes[i], err = invSize(node); err != nil {
			return nil, false, fmt.Errorf("data.inventory %v: %w", key[:i], err)
		}
		if node, ok, err = invChild(node, k); err != nil || !ok {
			return nil, false, err
		}
	}
	cut := len(key)
	for i := len(key) - 1; i >= 1 && sizes[i] == 1; i-- {
		cut = i
	}
	return key[:cut], true, nil
}

// invNest wraps value in one object per key.
func invNest(key []string, value any) any {
	for i := len(key) - 1; i >= 0; i-- {
		value = map[string]any{key[i]: value}
	}
	return value
}

// invChild, invSize and invKeys read the store's objects, which are Go
// maps, or AST objects if the store is made to keep those.
func invChild(node any, k string) (any, bool, error) {
	switch n := node.(type) {
	case map[string]any:
		v, ok := n[k]
		return v, ok, nil
	case ast.Object:
		v := n.Get(ast.InternedTerm(k))
		if v == nil {
			return nil, false, nil
		}
		return v.Value, true, nil
	}
	return nil, false, fmt.Errorf("%T is not an object", node)
}

func invSize(node any) (int, error) {
	switch n := node.(type) {
	case map[string]any:
		return len(n), nil
	case ast.Object:
		return n.Len(), nil
	}
	return 0, fmt.Errorf("%T is not an object", node)
}

func invKeys(node any) ([]string, error) {
	switch n := node.(type) {
	case map[string]any:
		return slices.Sorted(maps.Keys(n)), nil
	case ast.Object:
		var out []string
		for _, k := range n.Keys() {
			if s, ok := k.Value.(ast.String); ok {
				out = append(out, string(s))
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%T is not an object", node)
}

// SyncedGVKs reads the GVKs a Config (field spec.sync.syncOnly) or a
// SyncSet (field spec.gvks) lists. Entries without a version or a kind are
// returned as errors, naming the field, and left out.
func SyncedGVKs(u *unstructured.Unstructured, field ...string) ([]schema.GroupVersionKind, []error) {
	entries, _, err := unstructured.NestedSlice(u.Object, field...)
	if err != nil {
		return nil, []error{err}
	}
	var out []schema.GroupVersionKind
	var errs []error
	for i, raw := range entries {
		m, _ := raw.(map[string]any)
		group, _ := m["group"].(string)
		version, _ := m["version"].(string)
		kind, _ := m["kind"].(string)
		if version == "" || kind == "" {
			errs = append(errs, fmt.Errorf("%s[%d]: version and kind are required", strings.Join(field, "."), i))
			continue
		}
		out = append(out, schema.GroupVersionKind{Group: group, Version: version, Kind: kind})
	}
	return out, errs
}

// inventoryRetry is how often GVKs listed for sync but not served are
// looked up again.
const inventoryRetry = 5 * time.Second

// inventorySyncer mirrors into the engine's data.inventory the objects of
// every GVK the Config and the SyncSets list, as Gatekeeper's sync does.
type inventorySyncer struct {
	s        *Syncer
	mapper   *restmapper.DeferredDiscoveryRESTMapper
	configs  cache.Store
	syncSets cache.Store
	changed  chan struct{}

	// watches and unknown are only used by the goroutine that reconciles.
	watches map[schema.GroupVersionKind]*gvkWatch
	// unknown are GVKs listed but not served, looked up again every
	// inventoryRetry; each is warned about once.
	unknown map[schema.GroupVersionKind]bool
}

// gvkWatch is the informer mirroring one GVK.
type gvkWatch struct {
	cancel context.CancelFunc
	synced func() bool
	// mu and stopped make sure that no event reaches the engine once the
	// watch is stopped and its objects removed.
	mu      sync.Mutex
	stopped bool
}

// startInventory watches the Config
// gatekeeper-system/config and the SyncSets, and mirrors the objects of the
// GVKs they list into data.inventory, following changes. It returns once
// the objects of what is listed now are in the engine; a GVK that does not
// sync within syncTimeout is warned about, not fatal.
func (s *Syncer) startInventory(ctx context.Context) error {
	// The Config and SyncSet CRDs were ensured with the template CRD.
	v := &inventorySyncer{
		s:       s,
		mapper:  restmapper.NewDeferredDiscoveryRESTMapperWithContext(memory.NewMemCacheClientWithContext(s.kube.Discovery())),
		changed: make(chan struct{}, 1),
		watches: map[schema.GroupVersionKind]*gvkWatch{},
		unknown: map[schema.GroupVersionKind]bool{},
	}
	poke := func() {
		select {
		case v.changed <- struct{}{}:
		default:
		}
	}
	onChange := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(_, _ any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	configs := dynamicinformer.NewFilteredDynamicInformer(s.dyn, ConfigGVR, GatekeeperNamespace, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + ConfigName }).Informer()
	syncSets := dynamicinformer.NewFilteredDynamicInformer(s.dyn, SyncSetGVR, metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()
	for _, inf := range []cache.SharedIndexInformer{configs, syncSets} {
		if _, err := inf.AddEventHandler(onChange); err != nil {
			return err
		}
		go inf.RunWithContext(ctx)
	}
	v.configs, v.syncSets = configs.GetStore(), syncSets.GetStore()

	syncCtx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !waitForSync(syncCtx, configs.HasSynced, syncSets.HasSynced) {
		return errors.New("Config and SyncSets did not sync")
	}
	v.loadExclusions()
	want := v.desired()
	v.reconcile(ctx, want, true)
	go v.run(ctx, want)
	return nil
}

// loadExclusions puts the Config's spec.match in force (none without a
// Config), warning about entries that cannot be used, and tells whether
// what the sync process excludes changed.
func (v *inventorySyncer) loadExclusions() (syncChanged bool) {
	var next *Exclusions
	for _, obj := range v.configs.List() {
		if u, ok := obj.(*unstructured.Unstructured); ok && u.GetNamespace() == GatekeeperNamespace && u.GetName() == ConfigName {
			var errs []error
			next, errs = ParseExclusions(u)
			for _, err := range errs {
				v.s.logger.Warn("Config match entry ignored", "error", err)
			}
		}
	}
	prev := v.s.engine.Exclusions()
	v.s.engine.SetExclusions(next)
	return !prev.Equal(next, ProcessSync)
}

// run follows changes of the Config and SyncSets and retries GVKs not yet
// served, until ctx ends.
func (v *inventorySyncer) run(ctx context.Context, want map[schema.GroupVersionKind]bool) {
	ticker := time.NewTicker(inventoryRetry)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.changed:
			if v.loadExclusions() {
				// Objects once left out must come in and others go: the
				// watches start again and list everything anew.
				v.reconcile(ctx, nil, false)
			}
			want = v.desired()
			v.reconcile(ctx, want, false)
		case <-ticker.C:
			if len(v.unknown) > 0 {
				v.mapper.ResetWithContext(ctx)
				v.reconcile(ctx, want, false)
			}
		}
	}
}

// desired is the union of the GVKs the Config and the SyncSets list.
func (v *inventorySyncer) desired() map[schema.GroupVersionKind]bool {
	want := map[schema.GroupVersionKind]bool{}
	add := func(source string, u *unstructured.Unstructured, field ...string) {
		gvks, errs := SyncedGVKs(u, field...)
		for _, err := range errs {
			v.s.logger.Warn("sync entry ignored", "source", source, "error", err)
		}
		for _, gvk := range gvks {
			want[gvk] = true
		}
	}
	for _, obj := range v.configs.List() {
		if u, ok := obj.(*unstructured.Unstructured); ok && u.GetNamespace() == GatekeeperNamespace && u.GetName() == ConfigName {
			add("Config "+GatekeeperNamespace+"/"+ConfigName, u, "spec", "sync", "syncOnly")
		}
	}
	for _, obj := range v.syncSets.List() {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			add("SyncSet "+u.GetName(), u, "spec", "gvks")
		}
	}
	return want
}

// reconcile stops the watches of GVKs no longer wanted, removing their
// objects, and starts those of the wanted GVKs that are served; with wait,
// it waits (bounded) until the objects of the new ones are in the engine.
func (v *inventorySyncer) reconcile(ctx context.Context, want map[schema.GroupVersionKind]bool, wait bool) {
	logger := v.s.logger
	for gvk, w := range v.watches {
		if want[gvk] {
			continue
		}
		w.mu.Lock()
		w.stopped = true
		w.mu.Unlock()
		w.cancel()
		delete(v.watches, gvk)
		if err := v.s.engine.RemoveInventoryKind(ctx, gvk); err != nil {
			logger.Warn("removing from data.inventory", "gvk", gvk.String(), "error", err)
		}
		logger.Info("no longer syncing into data.inventory", "gvk", gvk.String())
	}
	for gvk := range v.unknown {
		if !want[gvk] {
			delete(v.unknown, gvk)
		}
	}

	var started []schema.GroupVersionKind
	for _, gvk := range slices.SortedFunc(maps.Keys(want), func(a, b schema.GroupVersionKind) int {
		return strings.Compare(a.String(), b.String())
	}) {
		if v.watches[gvk] != nil {
			continue
		}
		mapping, err := v.mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
		if err != nil {
			if !v.unknown[gvk] {
				msg := "cannot sync into data.inventory, will retry"
				if meta.IsNoMatchError(err) {
					msg = "cannot sync into data.inventory: no such resource is served, will retry"
				}
				logger.Warn(msg, "gvk", gvk.String(), "error", err)
			}
			v.unknown[gvk] = true
			continue
		}
		if v.unknown[gvk] {
			delete(v.unknown, gvk)
		}
		v.watches[gvk] = v.watch(ctx, gvk, mapping.Resource)
		started = append(started, gvk)
		logger.Info("syncing into data.inventory", "gvk", gvk.String(), "resource", mapping.Resource.String())
	}
	if !wait || len(started) == 0 {
		return
	}
	syncCtx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	for _, gvk := range started {
		if !waitForSync(syncCtx, v.watches[gvk].synced) {
			logger.Warn("data.inventory not filled in time: referential policies may miss objects", "gvk", gvk.String(), "timeout", syncTimeout)
		}
	}
}

// watch starts an informer that mirrors the objects of gvk (served as
// resource) into data.inventory. An object being deleted (with a
// deletionTimestamp) is removed, as Gatekeeper does.
func (v *inventorySyncer) watch(ctx context.Context, gvk schema.GroupVersionKind, resource schema.GroupVersionResource) *gvkWatch {
	watchCtx, cancel := context.WithCancel(ctx)
	w := &gvkWatch{cancel: cancel}
	engine, logger := v.s.engine, v.s.logger
	apply := func(obj any, remove bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			u = u.DeepCopy() // the informer's copy stays as it is
			u.SetGroupVersionKind(gvk)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.stopped {
			return
		}
		var err error
		if x := engine.Exclusions(); x != nil {
			// Gatekeeper's sync leaves out what its Config excludes; an
			// object whose namespace became excluded goes.
			if excluded, _ := x.ExcludedObject(ProcessSync, u, v.s.Namespace(u.GetNamespace())); excluded {
				remove = true
			}
		}
		if remove || u.GetDeletionTimestamp() != nil {
			err = engine.RemoveInventory(watchCtx, u)
		} else {
			err = engine.SetInventory(watchCtx, u)
		}
		if err != nil && watchCtx.Err() == nil {
			logger.Warn("syncing into data.inventory", "gvk", gvk.String(), "namespace", u.GetNamespace(), "name", u.GetName(), "error", err)
		}
	}
	informer := dynamicinformer.NewFilteredDynamicInformer(v.s.dyn, resource, metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()
	w.synced = informer.HasSynced
	// AddEventHandler fails only on a stopped informer, and this one has
	// not started.
	if reg, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { apply(obj, false) },
		UpdateFunc: func(_, obj any) { apply(obj, false) },
		DeleteFunc: func(obj any) { apply(obj, true) },
	}); err == nil {
		// Synced once every object listed at start has been handled, not
		// only stored by the informer.
		w.synced = reg.HasSynced
	}
	go informer.RunWithContext(watchCtx)
	return w
}
