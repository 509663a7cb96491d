package constraint

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// Gatekeeper's audit (pkg/audit/manager.go in open-policy-agent/gatekeeper)
// is what this file reproduces: every interval (--audit-interval, default
// 60 s, 0 disables) it lists the cluster's objects through discovery,
// reviews each one as an existing object (no operation, no user), and
// writes each constraint's status: auditTimestamp, totalViolations and up
// to --constraint-violations-limit (default 20) violations.

// AuditEnforcementPoint is Gatekeeper's name for audit, the one
// scopedEnforcementActions name for it.
const AuditEnforcementPoint = "audit.gatekeeper.sh"

// Defaults of Gatekeeper's audit flags.
const (
	DefaultAuditInterval   = 60 * time.Second // --audit-interval
	DefaultViolationsLimit = 20               // --constraint-violations-limit
)

const (
	// auditMessageSize is upstream's msgSize: a message longer than this
	// is cut to it, "..." included, in the status.
	auditMessageSize = 256
	// auditChunkSize is upstream's --audit-chunk-size: objects per List page.
	auditChunkSize = 500
)

// AuditResult is one constraint's outcome of an audit pass.
type AuditResult struct {
	Constraint *Constraint
	// EnforcementAction is what the audit records for the constraint, as
	// upstream does: spec.enforcementAction, "deny" when unset, "scoped"
	// for scoped constraints.
	EnforcementAction string
	// Actions are the actions that apply at audit: EnforcementAction, or
	// for a scoped constraint those of its scopedEnforcementActions that
	// name audit.gatekeeper.sh or "*". A scoped constraint without any is
	// not audited (upstream's client does not evaluate it) and has no
	// violations.
	Actions []string
	// Total counts every violation; Violations holds the first ones, up to
	// the auditor's limit.
	Total      int
	Violations []AuditViolation
	// Timestamp is when the pass started, status.auditTimestamp.
	Timestamp time.Time
}

// Denies reports whether the constraint has violations and deny is one of
// its actions at audit.
func (r *AuditResult) Denies() bool {
	return r.Total > 0 && slices.Contains(r.Actions, ActionDeny)
}

// AuditViolation is one entry of a constraint's status.violations, with
// upstream's field names (StatusViolation in pkg/audit/manager.go):
// namespace is left out for cluster-scoped objects, group is kept even when
// empty (the core group).
type AuditViolation struct {
	EnforcementAction string `json:"enforcementAction"`
	Group             string `json:"group"`
	Version           string `json:"version"`
	Kind              string `json:"kind"`
	Namespace         string `json:"namespace,omitempty"`
	Name              string `json:"name"`
	Message           string `json:"message"`
}

// Constraints lists every constraint in the engine, sorted by kind and name.
func (e *Engine) Constraints() []*Constraint {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []*Constraint
	for _, kind := range slices.Sorted(maps.Keys(e.constraints)) {
		byName := e.constraints[kind]
		for _, name := range slices.Sorted(maps.Keys(byName)) {
			out = append(out, byName[name])
		}
	}
	return out
}

// preferredResources is the part of discovery an audit uses.
type preferredResources interface {
	ServerPreferredResources() ([]*metav1.APIResourceList, error)
}

// Auditor runs Gatekeeper's audit against a cluster with an Engine that a
// Syncer keeps filled.
type Auditor struct {
	engine     *Engine
	dyn        dynamic.Interface
	discovery  preferredResources
	namespaces NamespaceLookup
	logger     *slog.Logger

	// Limit is how many violations each result keeps (upstream's
	// --constraint-violations-limit); NewAuditor sets DefaultViolationsLimit.
	Limit int
}

// NewAuditor returns an auditor for the cluster cfg points at. namespaces
// looks Namespaces up (Syncer.Namespace); a namespace it does not know is
// read from the API server.
func NewAuditor(cfg *rest.Config, engine *Engine, namespaces NamespaceLookup, logger *slog.Logger) (*Auditor, error) {
	cfg = rest.CopyConfig(cfg)
	// An audit lists every kind, deprecated ones too: their warnings are
	// noise here. And a pass makes a burst of requests.
	cfg.WarningHandler = rest.NoWarnings{}
	cfg.WarningHandlerWithContext = nil
	cfg = withClientRate(cfg)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Auditor{engine: engine, dyn: dyn, discovery: disco, namespaces: namespaces, logger: logger, Limit: DefaultViolationsLimit}, nil
}

// Audit runs one pass: it lists the objects of every kind that a
// constraint's spec.match.kinds names (every listable kind when a
// constraint names none, as upstream's --audit-match-kind-only does),
// reviews each one and groups the violations by constraint. Every
// constraint in the engine has a result, sorted by kind and name.
//
// A kind that cannot be listed or an object that cannot be reviewed is
// skipped, as upstream skips it; the error names them, and the results are
// those of everything else.
func (a *Auditor) Audit(ctx context.Context) ([]AuditResult, error) {
	start := time.Now()
	constraints := a.engine.Constraints()
	actions := map[constraintKey][]string{}
	var audited []*Constraint
	for _, c := range constraints {
		acts := auditActions(c)
		actions[keyOf(c)] = acts
		if len(acts) > 0 {
			audited = append(audited, c)
		}
	}
	col := newAuditCollector(constraints, actions, a.Limit, start)
	if len(audited) == 0 {
		return col.results(), nil
	}

	lists, err := a.discovery.ServerPreferredResources()
	if err != nil {
		if !discovery.IsGroupDiscoveryFailedError(err) {
			return nil, fmt.Errorf("discovering the cluster's resources: %w", err)
		}
		// Upstream goes on with the groups it could discover.
		a.logger.Warn("audit: some API groups could not be discovered", "error", err)
	}
	kinds, all := auditKinds(audited)
	if x := a.engine.expansion(); x != nil {
		for _, k := range x.Generators() {
			kinds[k] = true
		}
	}
	var errs []error
	namespaces := map[string]map[string]any{}
	for _, r := range selectResources(lists, kinds, all) {
		err := a.list(ctx, r, func(obj *unstructured.Unstructured) {
			if err := a.reviewObject(ctx, obj, namespaces, col); err != nil {
				errs = append(errs, err)
			}
		})
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("listing %s: %w", r.gvr.GroupResource(), err))
		}
	}
	return col.results(), errors.Join(errs...)
}

// list calls fn for every object of r, a page at a time.
func (a *Auditor) list(ctx context.Context, r auditResource, fn func(*unstructured.Unstructured)) error {
	opts := metav1.ListOptions{Limit: auditChunkSize}
	for {
		page, err := a.dyn.Resource(r.gvr).List(ctx, opts)
		if err != nil {
			return err
		}
		for i := range page.Items {
			obj := &page.Items[i]
			if obj.GetKind() == "" {
				obj.SetGroupVersionKind(r.gvk)
			}
			fn(obj)
		}
		opts.Continue = page.GetContinue()
		if opts.Continue == "" {
			return nil
		}
	}
}

// reviewObject reviews one existing object and adds its violations to col.
// A namespaced object whose Namespace cannot be found is skipped, as
// upstream skips it.
func (a *Auditor) reviewObject(ctx context.Context, obj *unstructured.Unstructured, namespaces map[string]map[string]any, col *auditCollector) error {
	var ns map[string]any
	if name := obj.GetNamespace(); name != "" {
		ns = a.namespace(ctx, name, namespaces)
		if ns == nil {
			a.logger.Debug("audit: skipping object in unknown namespace", "kind", obj.GetKind(), "namespace", name, "name", obj.GetName())
			return nil
		}
	}
	if excluded, why := a.engine.Exclusions().ExcludedObject(ProcessAudit, obj, ns); excluded {
		a.logger.Debug("audit: skipping excluded object", "kind", obj.GetKind(), "namespace", obj.GetNamespace(), "name", obj.GetName(), "why", why)
		return nil
	}
	review, err := AuditReview(obj, ns)
	if err != nil {
		return err
	}
	violations, err := a.engine.Review(ctx, review, AuditTarget(obj, ns))
	if err != nil {
		return fmt.Errorf("reviewing %s %s: %w", obj.GetKind(), objectName(obj.GetNamespace(), obj.GetName()), err)
	}
	// Gatekeeper's audit also reviews what a workload expands into and
	// reports it on the workload.
	expanded, err := a.engine.ReviewExpanded(ctx, obj, ns, nil)
	if err != nil {
		return err
	}
	col.add(obj, append(violations, expanded...))
	return nil
}

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// namespace returns the Namespace called name, from the lookup or else
// the API server, once per pass (upstream's nsCache); nil if there is none.
func (a *Auditor) namespace(ctx context.Context, name string, cache map[string]map[string]any) map[string]any {
	if ns, ok := cache[name]; ok {
		return ns
	}
	var ns map[string]any
	if a.namespaces != nil {
		ns = a.namespaces(name)
	}
	if ns == nil && a.dyn != nil {
		if u, err := a.dyn.Resource(namespacesGVR).Get(ctx, name, metav1.GetOptions{}); err == nil {
			ns = u.Object
		}
	}
	cache[name] = ns
	return ns
}

// AuditReview builds the input.review that Gatekeeper's audit hands
// policies for an existing object: the AdmissionRequest of upstream's
// unstructuredToAdmissionRequest (pkg/target/target.go, reached from the
// audit's AugmentedUnstructured review) as JSON: kind, name, namespace (when
// set) and object, with no operation, no user and no oldObject (uid "",
// resource {} and operation "" as Go's zero values encode; userInfo {};
// oldObject and options null). It goes through JSON as upstream's Rego
// driver sends it (numbers become float64).
//
// For a namespaced object, ns (its Namespace) is added as
// input.review.namespaceObject, as the webhook's review has it (see
// WithNamespace); a Namespace itself gets none.
func AuditReview(obj *unstructured.Unstructured, ns map[string]any) (map[string]any, error) {
	gvk := obj.GroupVersionKind()
	if gvk.Version == "" || gvk.Kind == "" {
		return nil, fmt.Errorf("object %s has no apiVersion or kind", objectName(obj.GetNamespace(), obj.GetName()))
	}
	raw, err := obj.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encoding %s %s: %w", gvk.Kind, objectName(obj.GetNamespace(), obj.GetName()), err)
	}
	req := admissionv1.AdmissionRequest{
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Object:    runtime.RawExtension{Raw: raw},
		Name:      obj.GetName(),
		Namespace: obj.GetNamespace(),
	}
	review, err := requestToReview(&req)
	if err != nil {
		return nil, err
	}
	if obj.GetNamespace() != "" {
		WithNamespace(review, ns)
	}
	return review, nil
}

// AuditTarget is what spec.match is tested against for an existing object
// (upstream's matcher on an AugmentedUnstructured): the object alone, and
// its Namespace (a Namespace's is itself).
func AuditTarget(obj *unstructured.Unstructured, ns map[string]any) *Target {
	t := &Target{
		GVK:       obj.GroupVersionKind(),
		Namespace: obj.GetNamespace(),
		Name:      obj.GetName(),
		Object:    obj.Object,
		// What Gatekeeper's CEL driver makes of the audit's review: the
		// object with its kind, name and namespace, and nothing else (no
		// operation, resource or user).
		Attributes: &admission.VersionedAttributes{
			Attributes: admission.NewAttributesRecord(obj, nil, obj.GroupVersionKind(), obj.GetNamespace(), obj.GetName(),
				schema.GroupVersionResource{}, "", "", nil, false, &user.DefaultInfo{}),
			VersionedKind:   obj.GroupVersionKind(),
			VersionedObject: admission.NewLazyObject(obj),
		},
	}
	if isNamespaceKind(t.GVK) {
		t.NamespaceObject = obj.Object
	} else if t.Namespace != "" {
		t.NamespaceObject = ns
	}
	return t
}

// recordedAction is the enforcement action upstream records for c: its
// spec.enforcementAction, which Gatekeeper defaults to deny.
func recordedAction(c *Constraint) string {
	if c.EnforcementAction == "" {
		return ActionDeny
	}
	return c.EnforcementAction
}

// auditActions are the actions of c at audit: its enforcementAction, or
// for a scoped constraint the actions its scopedEnforcementActions give
// audit.gatekeeper.sh (or "*").
func auditActions(c *Constraint) []string {
	if c.EnforcementAction != ActionScoped {
		return []string{recordedAction(c)}
	}
	return c.ActionsAt(AuditEnforcementPoint)
}

type constraintKey struct{ kind, name string }

func keyOf(c *Constraint) constraintKey { return constraintKey{c.Kind, c.Name} }

// auditCollector groups a pass's violations by constraint, the way
// upstream's addAuditResponsesToUpdateLists does: every violation counts
// toward the total, the first limit ones are kept.
type auditCollector struct {
	limit int
	order []*AuditResult
	byKey map[constraintKey]*AuditResult
}

func newAuditCollector(constraints []*Constraint, actions map[constraintKey][]string, limit int, at time.Time) *auditCollector {
	col := &auditCollector{limit: limit, byKey: map[constraintKey]*AuditResult{}}
	for _, c := range constraints {
		r := &AuditResult{Constraint: c, EnforcementAction: recordedAction(c), Actions: actions[keyOf(c)], Violations: []AuditViolation{}, Timestamp: at}
		col.order = append(col.order, r)
		col.byKey[keyOf(c)] = r
	}
	return col
}

// add records obj's violations. They are matched to results by kind and
// name, not pointer: the syncer replaces a constraint's Constraint on every
// update, our own status writes included. Violations of constraints that
// are not audited, or that appeared during the pass, are left out.
func (col *auditCollector) add(obj *unstructured.Unstructured, violations []Violation) {
	gvk := obj.GroupVersionKind()
	for _, v := range violations {
		r := col.byKey[keyOf(v.Constraint)]
		if r == nil || len(r.Actions) == 0 {
			continue
		}
		r.Total++
		if len(r.Violations) < col.limit {
			r.Violations = append(r.Violations, AuditViolation{
				EnforcementAction: cmp.Or(v.EnforcementAction, r.EnforcementAction),
				Group:             gvk.Group,
				Version:           gvk.Version,
				Kind:              gvk.Kind,
				Namespace:         obj.GetNamespace(),
				Name:              obj.GetName(),
				Message:           truncateMessage(v.Msg, auditMessageSize),
			})
		}
	}
}

func (col *auditCollector) results() []AuditResult {
	out := make([]AuditResult, 0, len(col.order))
	for _, r := range col.order {
		out = append(out, *r)
	}
	return out
}

// truncateMessage is upstream's truncateString: a message longer than size
// bytes is cut to size-3 bytes and "...". The cut is moved back to a rune
// boundary so the status stays valid UTF-8.
func truncateMessage(msg string, size int) string {
	if len(msg) <= size {
		return msg
	}
	if size > 3 {
		size -= 3
	}
	for size > 0 && !utf8.RuneStart(msg[size]) {
		size--
	}
	return msg[:size] + "..."
}

// auditKinds are the kinds an audit lists for constraints, upstream's
// matchedKinds under --audit-match-kind-only: the kinds their
// spec.match.kinds name (by kind, in any group: spec.match sorts out
// groups when objects are reviewed). all is set when a constraint selects
// every kind: no spec.match.kinds, a kind "*" or "", or (unlike upstream,
// which then lists nothing for that entry) an entry without kinds, which
// spec.match takes as every kind.
func auditKinds(constraints []*Constraint) (kinds map[string]bool, all bool) {
	kinds = map[string]bool{}
	for _, c := range constraints {
		if len(c.Match.Kinds) == 0 {
			return kinds, true
		}
		for _, kk := range c.Match.Kinds {
			if len(kk.Kinds) == 0 {
				return kinds, true
			}
			for _, k := range kk.Kinds {
				if k == "" || k == "*" {
					return kinds, true
				}
				kinds[k] = true
			}
		}
	}
	return kinds, false
}

// auditResource is one kind an audit lists.
type auditResource struct {
	gvr schema.GroupVersionResource
	gvk schema.GroupVersionKind
}

// selectResources picks from discovery's preferred resources those an
// audit lists: each kind in kinds (every kind when all is set) that can be
// listed, once per group and version (upstream's clusterAPIResources),
// sorted. Subresources are skipped, and so are Events when they come in
// only through all: they are not objects a policy governs and there are
// many.
func selectResources(lists []*metav1.APIResourceList, kinds map[string]bool, all bool) []auditResource {
	seen := map[schema.GroupVersionKind]bool{}
	var out []auditResource
	for _, rl := range lists {
		if rl == nil {
			continue
		}
		gv, err := schema.ParseGroupVersion(rl.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range rl.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") {
				continue
			}
			gvk := gv.WithKind(r.Kind)
			if seen[gvk] {
				continue
			}
			if !kinds[r.Kind] && (!all || isEvent(gvk)) {
				continue
			}
			seen[gvk] = true
			out = append(out, auditResource{gvr: gv.WithResource(r.Name), gvk: gvk})
		}
	}
	slices.SortFunc(out, func(a, b auditResource) int {
		return strings.Compare(a.gvk.Group+"/"+a.gvk.Version+"/"+a.gvk.Kind, b.gvk.Group+"/"+b.gvk.Version+"/"+b.gvk.Kind)
	})
	return out
}

func isEvent(gvk schema.GroupVersionKind) bool {
	return gvk.Kind == "Event" && (gvk.Group == "" || gvk.Group == "events.k8s.io")
}

// WriteStatus writes each result to its constraint's status, as
// upstream's updateConstraintStatus does: auditTimestamp (RFC 3339, UTC),
// totalViolations and violations, which is removed when there are none.
// The rest of the status is kept. A constraint deleted meanwhile is
// skipped.
func (a *Auditor) WriteStatus(ctx context.Context, results []AuditResult) error {
	var errs []error
	for i := range results {
		r := &results[i]
		patch, err := json.Marshal(statusPatch(r))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, err = a.dyn.Resource(ConstraintGVR(r.Constraint.Kind)).Patch(ctx, r.Constraint.Name, types.MergePatchType, patch,
			metav1.PatchOptions{FieldManager: "gatehouse-audit"}, "status")
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("writing the status of %s %s: %w", r.Constraint.Kind, r.Constraint.Name, err))
		}
	}
	return errors.Join(errs...)
}

// statusPatch is the JSON merge patch of r's constraint status.
func statusPatch(r *AuditResult) map[string]any {
	var violations any // null removes status.violations
	if len(r.Violations) > 0 {
		list := make([]any, 0, len(r.Violations))
		for _, v := range r.Violations {
			entry := map[string]any{
				"enforcementAction": v.EnforcementAction,
				"group":             v.Group,
				"version":           v.Version,
				"kind":              v.Kind,
				"name":              v.Name,
				"message":           v.Message,
			}
			if v.Namespace != "" {
				entry["namespace"] = v.Namespace
			}
			list = append(list, entry)
		}
		violations = list
	}
	return map[string]any{"status": map[string]any{
		"auditTimestamp":  r.Timestamp.UTC().Format(time.RFC3339),
		"totalViolations": int64(r.Total),
		"violations":      violations,
	}}
}

// Run audits every interval and writes the constraints' status, until ctx
// ends; interval <= 0 disables it. As upstream, the first pass is one
// interval after the start. Each pass logs one summary line.
func (a *Auditor) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			a.pass(ctx)
		}
	}
}

func (a *Auditor) pass(ctx context.Context) {
	start := time.Now()
	results, err := a.Audit(ctx)
	if ctx.Err() != nil {
		return
	}
	if results != nil {
		err = errors.Join(err, a.WriteStatus(ctx, results))
	}
	if ctx.Err() != nil {
		return
	}
	violations, denied := 0, 0
	for i := range results {
		violations += results[i].Total
		if slices.Contains(results[i].Actions, ActionDeny) {
			denied += results[i].Total
		}
	}
	attrs := []any{"constraints", len(results), "violations", violations, "deny", denied, "duration", time.Since(start).Round(time.Millisecond)}
	if err != nil {
		a.logger.Warn("audit finished with errors", append(attrs, "error", err)...)
		return
	}
	a.logger.Info("audit finished", attrs...)
}

func objectName(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// withClientRate gives a config without a rate of its own kubectl's
// (50 QPS, burst 300) instead of client-go's 5 QPS: syncing or auditing a
// cluster makes bursts of requests, and at 5 QPS each one past the burst
// waits 200 ms.
func withClientRate(cfg *rest.Config) *rest.Config {
	if cfg.QPS != 0 {
		return cfg
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 50, 300
	return cfg
}
