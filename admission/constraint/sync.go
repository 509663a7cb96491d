package constraint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Syncer keeps an Engine in step with the cluster, as Gatekeeper's
// controllers do: it installs the ConstraintTemplate CRD, compiles every
// template, writes its status and its constraint CRD, and loads the
// constraints of every template kind.
type Syncer struct {
	engine *Engine
	dyn    dynamic.Interface
	crds   apiextensionsclient.Interface
	kube   kubernetes.Interface
	logger *slog.Logger

	// ReadOnly makes the syncer only read the cluster: no CRDs created,
	// updated or deleted, no template status written. For tools such as
	// `gatehouse audit` that load the cluster's policies into their own
	// engine without taking ownership of them.
	ReadOnly bool

	namespaces cache.Indexer
	// status writes each constraint's status.byPod; nil when ReadOnly.
	status *ByPodStatus

	mu sync.Mutex
	// watches stops each template kind's constraint informer.
	watches map[string]context.CancelFunc
	// generations are the template generations already handled, so the
	// status updates this syncer writes do not trigger it again.
	generations map[string]int64

	// Templates are handled concurrently, each by its own worker: making a
	// constraint CRD waits ~0.2 s on the API server, which one after the
	// other added up to seconds for a directory of templates. latest is the
	// newest event per template not yet handled (a worker handles only the
	// newest, as a level-triggered controller does); working marks the
	// templates with a worker; inflight counts the workers.
	latest   map[string]templateEvent
	working  map[string]bool
	inflight sync.WaitGroup
}

// templateEvent is a template's newest state: the object, or deleted.
type templateEvent struct {
	obj     any
	deleted bool
}

// NewSyncer returns a syncer for the cluster cfg points at.
func NewSyncer(cfg *rest.Config, engine *Engine, logger *slog.Logger) (*Syncer, error) {
	dyn, crds, err := Clients(cfg)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(withClientRate(cfg))
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Syncer{engine: engine, dyn: dyn, crds: crds, kube: kube, logger: logger,
		watches: map[string]context.CancelFunc{}, generations: map[string]int64{},
		latest: map[string]templateEvent{}, working: map[string]bool{}}, nil
}

// Clients are the dynamic and CRD clients of a Gatekeeper syncer (this
// one, the mutators', the ExpansionTemplates'), at the rate of Gatehouse's
// in-process controllers: they make CRDs and write statuses in bursts that
// client-go's default 5 QPS would space 200 ms apart.
func Clients(cfg *rest.Config) (dynamic.Interface, apiextensionsclient.Interface, error) {
	cfg = withClientRate(cfg)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	crds, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	return dyn, crds, nil
}

// syncTimeout bounds the initial sync and each CRD becoming established.
const syncTimeout = 30 * time.Second

// Start installs the CRD and starts the informers; it returns once every
// template and constraint that exists has been loaded, so a caller that
// reports "ready" afterwards has them in force. Work goes on until ctx ends.
func (s *Syncer) Start(ctx context.Context) error {
	if err := s.ensureCRDs(ctx, TemplateCRD(), ConfigCRD(), SyncSetCRD()); err != nil {
		return err
	}
	s.logger.Debug("constraint syncer: CRDs established")
	if !s.ReadOnly {
		if err := s.ensureGatekeeperNamespace(ctx); err != nil {
			return err
		}
		s.status = NewByPodStatus(s.dyn, s.logger)
		go s.status.Run(ctx)
	}

	nsFactory := informers.NewSharedInformerFactory(s.kube, 0)
	nsInformer := nsFactory.Core().V1().Namespaces().Informer()
	s.namespaces = nsInformer.GetIndexer()
	nsFactory.Start(ctx.Done())

	factory := dynamicinformer.NewDynamicSharedInformerFactory(s.dyn, 0)
	templates := factory.ForResource(TemplateGVR).Informer()
	// The registration's HasSynced, unlike the informer's, waits until the
	// handler has processed the initial list: templates compiled and their
	// constraints loaded, which is what "ready" promises.
	templatesHandled, err := templates.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.enqueue(ctx, obj, false) },
		UpdateFunc: func(_, obj any) { s.enqueue(ctx, obj, false) },
		DeleteFunc: func(obj any) { s.enqueue(ctx, obj, true) },
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())

	syncCtx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !waitForSync(syncCtx, nsInformer.HasSynced, templatesHandled.HasSynced) {
		return errors.New("ConstraintTemplates and Namespaces did not sync")
	}
	// The handler has queued every template; wait until they are handled.
	s.inflight.Wait()
	s.logger.Debug("constraint syncer: templates and constraints loaded")
	if err := s.startInventory(ctx); err != nil {
		return fmt.Errorf("data.inventory: %w", err)
	}
	s.logger.Debug("constraint syncer: inventory filled")
	return nil
}

// ensureGatekeeperNamespace creates gatekeeper-system, where Gatekeeper
// reads its Config, as a Gatekeeper install has it: so a Config copied from
// Gatekeeper's docs applies as it is. Like Gatekeeper's chart, it labels the
// namespace IgnoreLabel (Gatekeeper leaves its own namespace alone).
func (s *Syncer) ensureGatekeeperNamespace(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   GatekeeperNamespace,
		Labels: map[string]string{IgnoreLabel: "no-self-managing"},
	}}
	_, err := s.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", GatekeeperNamespace, err)
	}
	return nil
}

// waitForSync is cache.WaitForCacheSync without its 100 ms poll, which
// start-up and every new template would otherwise wait out: the checks are
// cheap, so they are polled every few milliseconds.
func waitForSync(ctx context.Context, synced ...cache.InformerSynced) bool {
	err := wait.PollUntilContextCancel(ctx, 5*time.Millisecond, true, func(context.Context) (bool, error) {
		for _, ok := range synced {
			if !ok() {
				return false, nil
			}
		}
		return true, nil
	})
	return err == nil
}

// Namespace returns a Namespace as Rego and spec.match see it, or nil.
func (s *Syncer) Namespace(name string) map[string]any {
	if s.namespaces == nil {
		return nil
	}
	obj, ok, err := s.namespaces.GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil
	}
	m["apiVersion"], m["kind"] = "v1", "Namespace"
	return m
}

// enqueue hands a template event to the template's worker, starting one
// if there is none.
func (s *Syncer) enqueue(ctx context.Context, obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	name := u.GetName()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest[name] = templateEvent{obj: obj, deleted: deleted}
	if s.working[name] {
		return
	}
	s.working[name] = true
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		for {
			s.mu.Lock()
			ev, ok := s.latest[name]
			delete(s.latest, name)
			if !ok {
				delete(s.working, name)
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			if ev.deleted {
				s.templateDeleted(ctx, ev.obj)
			} else {
				s.templateChanged(ctx, ev.obj)
			}
		}
	}()
}

func (s *Syncer) templateChanged(ctx context.Context, obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	s.mu.Lock()
	seen, done := s.generations[u.GetName()]
	s.mu.Unlock()
	if done && seen == u.GetGeneration() {
		return // only the status (ours) changed
	}
	errs := s.syncTemplate(ctx, u)
	s.mu.Lock()
	s.generations[u.GetName()] = u.GetGeneration()
	s.mu.Unlock()
	for _, err := range errs {
		s.logger.Warn("constraint template not in force", "template", u.GetName(), "error", err)
	}
	if !s.ReadOnly {
		s.writeTemplateStatus(ctx, u, errs)
	}
}

// syncTemplate compiles the template, installs its constraint CRD and
// starts loading its constraints. A template that fails to compile keeps
// its previous version, if any, in force.
func (s *Syncer) syncTemplate(ctx context.Context, u *unstructured.Unstructured) []error {
	t, err := ParseTemplate(u)
	if err != nil {
		return []error{err}
	}
	var errs []error
	if !t.HasCode() {
		errs = append(errs, fmt.Errorf("spec.targets: the %s target has no %s or %s code (engines: %v)", AdmissionTarget, EngineRego, EngineCEL, t.Engines))
	} else if err := s.engine.AddTemplate(ctx, t.Source()); err != nil {
		errs = append(errs, err)
	}
	crd, err := ConstraintCRD(t)
	if err != nil {
		return append(errs, err)
	}
	if err := s.ensureCRD(ctx, crd); err != nil {
		return append(errs, fmt.Errorf("constraint CRD %s: %w", crd.Name, err))
	}
	if s.engine.HasTemplate(t.Kind) {
		if err := s.watchConstraints(ctx, t.Kind); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// watchConstraints loads the constraints of kind, once per kind, and waits
// until the existing ones are in the engine. After a template is
// recompiled, the existing informer's objects are loaded again, since a
// constraint added while its template did not compile was refused.
func (s *Syncer) watchConstraints(ctx context.Context, kind string) error {
	s.mu.Lock()
	_, running := s.watches[kind]
	s.mu.Unlock()
	if running {
		return nil
	}
	watchCtx, cancel := context.WithCancel(ctx)
	factory := dynamicinformer.NewDynamicSharedInformerFactory(s.dyn, 0)
	informer := factory.ForResource(ConstraintGVR(kind)).Informer()
	add := func(obj any) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		c, err := ParseConstraint(u)
		if err == nil {
			err = s.engine.AddConstraint(ctx, c)
		}
		if err != nil {
			s.logger.Warn("constraint not in force", "constraint", kind+"/"+u.GetName(), "error", err)
		}
		s.status.Set(ConstraintGVR(kind), u, constraintByPod(u, err))
	}
	handled, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    add,
		UpdateFunc: func(_, obj any) { add(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				s.status.Forget(ConstraintGVR(kind), "", u.GetName())
				if err := s.engine.RemoveConstraint(ctx, kind, u.GetName()); err != nil {
					s.logger.Warn("removing constraint", "constraint", kind+"/"+u.GetName(), "error", err)
				}
			}
		},
	})
	if err != nil {
		cancel()
		return err
	}
	factory.Start(watchCtx.Done())
	syncCtx, syncCancel := context.WithTimeout(ctx, syncTimeout)
	defer syncCancel()
	if !waitForSync(syncCtx, handled.HasSynced) {
		cancel()
		return fmt.Errorf("constraints of kind %s did not sync", kind)
	}
	s.mu.Lock()
	s.watches[kind] = cancel
	s.mu.Unlock()
	return nil
}

// constraintByPod is a constraint's status.byPod entry as Gatekeeper's
// constraint status controller writes it: enforced once the engine has it,
// else the reason as an error.
func constraintByPod(u *unstructured.Unstructured, err error) map[string]any {
	entry := map[string]any{
		"constraintUID":      string(u.GetUID()),
		"enforced":           err == nil,
		"observedGeneration": u.GetGeneration(),
		"operations":         []any{"audit", "webhook"},
	}
	if err != nil {
		entry["errors"] = []any{map[string]any{"code": "ingest_error", "message": strings.Join(strings.Fields(err.Error()), " ")}}
	}
	return entry
}

func (s *Syncer) templateDeleted(ctx context.Context, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	kind, _, _ := unstructured.NestedString(u.Object, "spec", "crd", "spec", "names", "kind")
	s.mu.Lock()
	if stop := s.watches[kind]; stop != nil {
		stop()
		delete(s.watches, kind)
	}
	delete(s.generations, u.GetName())
	s.mu.Unlock()
	if err := s.engine.RemoveTemplate(ctx, kind); err != nil {
		s.logger.Warn("removing template", "template", u.GetName(), "error", err)
	}
	// Gatekeeper removes a template's constraint CRD, and so its
	// constraints, with the template.
	if kind != "" && !s.ReadOnly {
		err := s.crds.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, ConstraintGVR(kind).Resource+"."+ConstraintsGroup, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			s.logger.Warn("deleting constraint CRD", "template", u.GetName(), "error", err)
		}
	}
}

// writeTemplateStatus records the outcome the way Gatekeeper does, in
// status.created and status.byPod[].errors.
func (s *Syncer) writeTemplateStatus(ctx context.Context, u *unstructured.Unstructured, errs []error) {
	statusErrors := []any{}
	for _, err := range errs {
		statusErrors = append(statusErrors, map[string]any{"code": "ingest_error", "message": err.Error()})
	}
	kind, _, _ := unstructured.NestedString(u.Object, "spec", "crd", "spec", "names", "kind")
	status := map[string]any{
		"created": kind != "" && s.engine.HasTemplate(kind),
		"byPod": []any{map[string]any{
			"id":                 "gatehouse",
			"observedGeneration": u.GetGeneration(),
			"operations":         []any{"audit", "webhook"},
			"templateUID":        string(u.GetUID()),
			"errors":             statusErrors,
		}},
	}
	err := wait.ExponentialBackoffWithContext(ctx, wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Steps: 5}, func(ctx context.Context) (bool, error) {
		latest, err := s.dyn.Resource(TemplateGVR).Get(ctx, u.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if latest.GetGeneration() != u.GetGeneration() {
			return true, nil // a newer version will write its own status
		}
		latest.Object["status"] = status
		_, err = s.dyn.Resource(TemplateGVR).UpdateStatus(ctx, latest, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil && ctx.Err() == nil {
		s.logger.Warn("writing template status", "template", u.GetName(), "error", err)
	}
}

// ensureCRDs ensures several CRDs at once: each waits on the API server to
// establish it, so doing them one after the other adds up at start-up.
func (s *Syncer) ensureCRDs(ctx context.Context, crds ...*apiextensionsv1.CustomResourceDefinition) error {
	return EnsureCRDs(ctx, s.crds, s.dyn, s.ReadOnly, crds...)
}

// EnsureCRDs is EnsureCRD for several CRDs at once.
func EnsureCRDs(ctx context.Context, client apiextensionsclient.Interface, dyn dynamic.Interface, readOnly bool, crds ...*apiextensionsv1.CustomResourceDefinition) error {
	errs := make([]error, len(crds))
	var wg sync.WaitGroup
	for i, crd := range crds {
		wg.Go(func() {
			if err := EnsureCRD(ctx, client, dyn, crd, readOnly); err != nil {
				errs[i] = fmt.Errorf("%s CRD: %w", crd.Spec.Names.Kind, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ensureCRD creates or updates crd and waits until it is established.
func (s *Syncer) ensureCRD(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition) error {
	return EnsureCRD(ctx, s.crds, s.dyn, crd, s.ReadOnly)
}

// EnsureCRD creates or updates crd (or, readOnly, only checks that it is
// installed) and waits until the API server serves it.
func EnsureCRD(ctx context.Context, crds apiextensionsclient.Interface, dyn dynamic.Interface, crd *apiextensionsv1.CustomResourceDefinition, readOnly bool) error {
	client := crds.ApiextensionsV1().CustomResourceDefinitions()
	existing, err := client.Get(ctx, crd.Name, metav1.GetOptions{})
	switch {
	case readOnly && apierrors.IsNotFound(err):
		return fmt.Errorf("CRD %s is not installed", crd.Name)
	case readOnly:
		// only wait for it below
	case apierrors.IsNotFound(err):
		_, err = client.Create(ctx, crd, metav1.CreateOptions{FieldManager: "gatehouse"})
	case err == nil:
		crd.ResourceVersion = existing.ResourceVersion
		_, err = client.Update(ctx, crd, metav1.UpdateOptions{FieldManager: "gatehouse"})
	}
	if err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, syncTimeout, true, func(ctx context.Context) (bool, error) {
		got, err := client.Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	// Established is not yet served: for a moment after the API server
	// starts, or after a CRD is created, its resource answers 404, and an
	// informer that lists then backs off for a second. Wait until a list
	// succeeds, so the informers started next sync at once.
	gvr := schema.GroupVersionResource{Group: crd.Spec.Group, Version: crd.Spec.Versions[0].Name, Resource: crd.Spec.Names.Plural}
	var listErr error
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, syncTimeout, true, func(ctx context.Context) (bool, error) {
		_, listErr = dyn.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
		return listErr == nil, nil
	})
	if err != nil && listErr != nil {
		return fmt.Errorf("%s is established but not served: %w", gvr.GroupResource(), listErr)
	}
	return err
}
