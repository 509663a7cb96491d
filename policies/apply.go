package policies

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager owns the fields that policies set through server-side apply.
const FieldManager = "gatehouse"

const (
	establishTimeout = 30 * time.Second
	establishPoll    = 10 * time.Millisecond
)

// Applier applies the policy files of one directory to an API server.
type Applier struct {
	dir    string
	client dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	logger *slog.Logger
}

// Result is the outcome of one pass over the directory.
type Result struct {
	Applied []string // "kind/namespace/name" or "kind/name" per applied object
	Errors  []*DocumentError
}

// NewApplier returns an Applier for the files in dir, talking to the API
// server of cfg. A nil logger means slog.Default().
func NewApplier(cfg *rest.Config, dir string, logger *slog.Logger) (*Applier, error) {
	if cfg.QPS == 0 {
		// kubectl's rate, not client-go's 5 QPS, at which every apply
		// past the first few waited 200 ms.
		cfg = rest.CopyConfig(cfg)
		cfg.QPS, cfg.Burst = 50, 300
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	client, err := dynamic.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	disco, err := discovery.NewDiscoveryClientForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Applier{
		dir:    dir,
		client: client,
		mapper: restmapper.NewDeferredDiscoveryRESTMapperWithContext(memory.NewMemCacheClientWithContext(disco)),
		logger: logger,
	}, nil
}

// Apply loads the directory and applies every document with server-side
// apply, CustomResourceDefinitions first (waiting until they are established),
// then Namespaces, then the rest. A document that fails is reported in
// Result.Errors and the others are still applied. Nothing is deleted.
func (a *Applier) Apply(ctx context.Context) Result {
	var res Result
	if err := checkDir(a.dir); err != nil {
		res.Errors = append(res.Errors, &DocumentError{File: a.dir, Err: err})
		return res
	}
	docs, errs := Load(os.DirFS(a.dir))
	for _, e := range errs {
		if e.File == "." { // the root itself could not be read
			e.File = a.dir
		}
	}
	res.Errors = errs
	fail := func(d Document, err error) {
		res.Errors = append(res.Errors, &DocumentError{File: d.File, Index: d.Index, Err: err})
	}

	docs = Order(docs)
	nCRDs := slices.IndexFunc(docs, func(d Document) bool { return !isCRD(d) })
	if nCRDs < 0 {
		nCRDs = len(docs)
	}
	retried := map[schema.GroupVersionKind]bool{}

	var crds []applied
	for _, d := range docs[:nCRDs] {
		ap, err := a.apply(ctx, d, retried)
		if err != nil {
			fail(d, err)
			continue
		}
		crds = append(crds, ap)
	}
	if len(crds) > 0 {
		// The objects after the CRDs may be of their kinds, which the server
		// only serves once the CRDs are established.
		waitCtx, cancel := context.WithTimeout(ctx, establishTimeout)
		for _, ap := range crds {
			if err := a.waitEstablished(waitCtx, ap); err != nil {
				fail(ap.doc, err)
				continue
			}
			res.Applied = append(res.Applied, ap.ref)
		}
		cancel()
		a.mapper.ResetWithContext(ctx)
	}

	// Gatekeeper ConstraintTemplates come before the other objects (Order):
	// their constraints can only be applied once Gatehouse has made and
	// established the template's constraint CRD.
	var templates []applied
	for _, d := range docs[nCRDs:] {
		if len(templates) > 0 && !isTemplate(d) {
			a.waitConstraintCRDs(ctx, templates, fail)
			templates = nil
		}
		if ctx.Err() != nil {
			res.Errors = append(res.Errors, &DocumentError{File: a.dir, Err: fmt.Errorf("pass stopped: %w", ctx.Err())})
			break
		}
		ap, err := a.apply(ctx, d, retried)
		if err != nil {
			fail(d, err)
			continue
		}
		res.Applied = append(res.Applied, ap.ref)
		if isTemplate(d) {
			templates = append(templates, ap)
		}
	}

	slices.SortStableFunc(res.Errors, func(x, y *DocumentError) int {
		return cmp.Or(strings.Compare(x.File, y.File), cmp.Compare(x.Index, y.Index))
	})
	return res
}

// Run applies the directory now, then checks it every interval and applies it
// again whenever the files Load reads have changed. It logs every pass and
// returns when ctx is done. A non-positive interval means one second.
func (a *Applier) Run(ctx context.Context, interval time.Duration) {
	fsys, last, _ := a.firstPass(ctx)
	a.watch(ctx, fsys, last, interval)
}

// Start is Run whose first pass completes before it returns, so a caller
// can tell its user that the directory is in force; the watching goes on in
// the background until ctx is done.
func (a *Applier) Start(ctx context.Context, interval time.Duration) Result {
	fsys, last, res := a.firstPass(ctx)
	go a.watch(ctx, fsys, last, interval)
	return res
}

func (a *Applier) firstPass(ctx context.Context) (fs.FS, string, Result) {
	fsys := os.DirFS(a.dir)
	// Hash before applying, so that a change made during a pass is seen.
	last := hashDir(fsys)
	res := a.Apply(ctx)
	a.report(ctx, res)
	return fsys, last, res
}

func (a *Applier) watch(ctx context.Context, fsys fs.FS, last string, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if h := hashDir(fsys); h != last {
			last = h
			a.report(ctx, a.Apply(ctx))
		}
	}
}

func (a *Applier) report(ctx context.Context, res Result) {
	if ctx.Err() != nil {
		return // shutting down: the pass was cut short on purpose
	}
	for _, e := range res.Errors {
		// The error reads "<file>: document <n>: <why>", the form users grep for.
		a.logger.Warn("policy not applied", "dir", a.dir, "error", e.Error())
	}
	a.logger.Info("applied policies", "dir", a.dir, "applied", len(res.Applied), "errors", len(res.Errors))
}

// applied is an object the server accepted.
type applied struct {
	doc     Document
	mapping *meta.RESTMapping
	ref     string // kind/namespace/name or kind/name
}

// apply server-side applies one document.
func (a *Applier) apply(ctx context.Context, d Document, retried map[schema.GroupVersionKind]bool) (applied, error) {
	obj := d.Object
	gvk := obj.GroupVersionKind()
	mapping, err := a.mapping(ctx, gvk, retried)
	if err != nil {
		return applied{}, err
	}
	resource := a.client.Resource(mapping.Resource)
	var client dynamic.ResourceInterface = resource
	ref := gvk.Kind + "/" + obj.GetName()
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := cmp.Or(obj.GetNamespace(), metav1.NamespaceDefault)
		client = resource.Namespace(ns)
		ref = gvk.Kind + "/" + ns + "/" + obj.GetName()
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if _, err := client.Apply(ctx, obj.GetName(), obj, opts); err != nil {
		return applied{}, fmt.Errorf("%s: %w", ref, err)
	}
	return applied{doc: d, mapping: mapping, ref: ref}, nil
}

// mapping finds the resource that serves gvk. Discovery is cached, so an
// unknown kind resets the cache once per pass and looks again: its CRD may
// have been added since.
func (a *Applier) mapping(ctx context.Context, gvk schema.GroupVersionKind, retried map[schema.GroupVersionKind]bool) (*meta.RESTMapping, error) {
	m, err := a.mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) && !retried[gvk] {
		retried[gvk] = true
		a.mapper.ResetWithContext(ctx)
		m, err = a.mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
	}
	if meta.IsNoMatchError(err) {
		return nil, &noKindError{gvk: gvk, err: err}
	}
	return m, err
}

// noKindError says what an unknown kind most likely means for a policy directory.
type noKindError struct {
	gvk schema.GroupVersionKind
	err error
}

func (e *noKindError) Error() string {
	return fmt.Sprintf("no kind %q is registered for version %q: is its CRD in the directory?", e.gvk.Kind, e.gvk.GroupVersion())
}

func (e *noKindError) Unwrap() error { return e.err }

// waitEstablished polls an applied CRD until it reports Established=True or
// ctx is done.
func (a *Applier) waitEstablished(ctx context.Context, ap applied) error {
	var why string
	err := wait.PollUntilContextCancel(ctx, establishPoll, true, func(ctx context.Context) (bool, error) {
		crd, err := a.client.Resource(ap.mapping.Resource).Get(ctx, ap.doc.Object.GetName(), metav1.GetOptions{})
		if err != nil {
			why = err.Error()
			return false, nil // keep trying until the deadline
		}
		var ok bool
		ok, why = established(crd)
		return ok, nil
	})
	if err == nil || errors.Is(err, context.Canceled) {
		return err // on cancellation the caller is stopping, not the CRD
	}
	if why == "" {
		why = "no condition reported"
	}
	return fmt.Errorf("%s: not established within %v: %s", ap.ref, establishTimeout, why)
}

// waitConstraintCRDs waits until the constraint CRD of every applied
// ConstraintTemplate is established, then refreshes the RESTMapper.
func (a *Applier) waitConstraintCRDs(ctx context.Context, templates []applied, fail func(Document, error)) {
	waitCtx, cancel := context.WithTimeout(ctx, establishTimeout)
	defer cancel()
	for _, ap := range templates {
		kind, _, _ := unstructured.NestedString(ap.doc.Object.Object, "spec", "crd", "spec", "names", "kind")
		name := strings.ToLower(kind) + ".constraints.gatekeeper.sh"
		crdRef := applied{doc: Document{File: ap.doc.File, Index: ap.doc.Index, Object: &unstructured.Unstructured{}}, mapping: &meta.RESTMapping{Resource: crdResource}, ref: "CustomResourceDefinition/" + name}
		crdRef.doc.Object.SetName(name)
		if err := a.waitEstablished(waitCtx, crdRef); err != nil {
			fail(ap.doc, fmt.Errorf("%s: its constraint CRD: %w", ap.ref, err))
			continue
		}
		// Established comes a moment before the resource is served;
		// constraints applied in between would get a 404.
		gvr := schema.GroupVersionResource{Group: "constraints.gatekeeper.sh", Version: "v1beta1", Resource: strings.ToLower(kind)}
		_ = wait.PollUntilContextCancel(waitCtx, establishPoll, true, func(ctx context.Context) (bool, error) {
			_, err := a.client.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
			return err == nil, nil
		})
	}
	a.mapper.ResetWithContext(ctx)
}

// established reports whether a CRD has condition Established=True, and if not,
// the messages of its false conditions (such as NamesAccepted) to say why.
func established(crd *unstructured.Unstructured) (bool, string) {
	conditions, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	var why []string
	for _, c := range conditions {
		c, _ := c.(map[string]any)
		typ, _ := c["type"].(string)
		status, _ := c["status"].(string)
		if typ == "Established" && status == "True" {
			return true, ""
		}
		if status == "False" {
			msg, _ := c["message"].(string)
			why = append(why, typ+": "+msg)
		}
	}
	return false, strings.Join(why, "; ")
}

// isTemplate reports whether d is a Gatekeeper ConstraintTemplate.
func isTemplate(d Document) bool {
	return d.Object.GroupVersionKind().GroupKind() == schema.GroupKind{Group: "templates.gatekeeper.sh", Kind: "ConstraintTemplate"}
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func isCRD(d Document) bool {
	return d.Object.GroupVersionKind().GroupKind() == crdKind
}

// checkDir reports why dir cannot be used as a policy directory, if it cannot.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return pathErr(err)
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	return nil
}
