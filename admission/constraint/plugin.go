package constraint

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/warning"

	"github.com/gatehouse-dev/gatehouse/admission/trace"
)

// PluginName is the name of the constraint plugin in the admission chain.
const PluginName = "GatekeeperConstraints"

// EnforcementPoint is Gatekeeper's name for admission-time enforcement,
// the one scopedEnforcementActions name for the webhook.
const EnforcementPoint = "validation.gatekeeper.sh"

// Enforcement actions.
const (
	ActionDeny   = "deny"
	ActionWarn   = "warn"
	ActionDryRun = "dryrun"
	ActionScoped = "scoped"
)

// Register registers the plugin; every instance evaluates with engine,
// which a Syncer keeps filled from the cluster's templates and constraints.
func Register(plugins *admission.Plugins, engine *Engine, namespaces NamespaceLookup, logger *slog.Logger) {
	ensureMetricsRegistered()
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) {
		return NewPlugin(engine, namespaces, logger), nil
	})
}

// NamespaceLookup returns a Namespace object by name, or nil when unknown.
type NamespaceLookup func(name string) map[string]any

// validatedSubresources are the subresources Gatekeeper's validating
// webhook selects besides every resource (validatingWebhookSubResources in
// its chart, the rules of validation.gatekeeper.sh): so that, for example,
// an ephemeral container added with kubectl debug is checked like the
// Pod's other containers. Those reached by CONNECT are listed for
// fidelity; like Gatekeeper by default, only CREATE and UPDATE are seen.
var validatedSubresources = map[string]bool{
	"pods/ephemeralcontainers": true, "pods/exec": true, "pods/log": true, "pods/eviction": true,
	"pods/portforward": true, "pods/proxy": true, "pods/attach": true, "pods/binding": true, "pods/resize": true,
	"deployments/scale": true, "replicasets/scale": true, "statefulsets/scale": true, "replicationcontrollers/scale": true,
	"services/proxy": true, "nodes/proxy": true, "services/status": true,
}

// Plugin enforces Gatekeeper constraints in-process, where Gatekeeper's
// validating webhook would: after ValidatingAdmissionPolicy, for CREATE and
// UPDATE of every resource and of the subresources its webhook selects,
// with the webhook's denial and warning messages.
type Plugin struct {
	*admission.Handler
	engine     *Engine
	namespaces NamespaceLookup
	logger     *slog.Logger
}

var _ admission.ValidationInterface = &Plugin{}

// NewPlugin returns the plugin.
func NewPlugin(engine *Engine, namespaces NamespaceLookup, logger *slog.Logger) *Plugin {
	if logger == nil {
		logger = slog.Default()
	}
	return &Plugin{
		// Gatekeeper's webhook configuration selects CREATE and UPDATE;
		// DELETE is handled for ConstraintTemplates only, to warn.
		Handler:    admission.NewHandler(admission.Create, admission.Update, admission.Delete),
		engine:     engine,
		namespaces: namespaces,
		logger:     logger,
	}
}

// Validate denies the request when a deny constraint reports a violation,
// adds a warning for each warn violation and logs dryrun ones.
func (p *Plugin) Validate(ctx context.Context, attrs admission.Attributes, o admission.ObjectInterfaces) error {
	if sub := attrs.GetSubresource(); sub != "" && !validatedSubresources[attrs.GetResource().Resource+"/"+sub] {
		return nil
	}
	if attrs.GetResource().GroupResource() == templateResource {
		p.warnAboutTemplate(ctx, attrs)
	}
	if attrs.GetResource().GroupResource() == configResource && attrs.GetOperation() != admission.Delete {
		warnAboutConfig(ctx, attrs)
	}
	if attrs.GetOperation() == admission.Delete {
		return nil
	}
	// A constraint the engine could not load would otherwise be stored
	// and silently not enforced; Gatekeeper's webhook refuses it too.
	if attrs.GetResource().Group == ConstraintsGroup {
		if u, ok := attrs.GetObject().(*unstructured.Unstructured); ok {
			if _, err := ParseConstraint(u); err != nil {
				return admission.NewForbidden(attrs, err)
			}
		}
	}
	review, versioned, err := newReview(attrs, o)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("%s: building the review: %w", PluginName, err))
	}
	target := p.target(attrs, review)
	target.Attributes = versioned
	if err := refuseIgnoreLabel(ctx, p.engine.Exempt(), target); err != nil {
		return err
	}
	if skip, why := p.engine.Exclusions().WebhookSkips(ProcessWebhook, p.engine.Exempt(), target.GVK, target.Name, target.Namespace, target.NamespaceObject); skip {
		// Gatekeeper's webhook is not called, or answers "allowed" at
		// once: no constraint is evaluated.
		trace.AddPolicy(ctx, trace.Policy{Kind: "ValidatingWebhook", Name: EnforcementPoint, Verdict: trace.VerdictSkip, Reason: "no constraint evaluated: " + why})
		return nil
	}
	// For the admission trace: every constraint, skipped (and why) or
	// evaluated, with what it reported.
	var matched []*Constraint
	if trace.Tracing(ctx) {
		target.Explain = func(c *Constraint, ok bool, reason string) {
			if ok {
				matched = append(matched, c)
				return
			}
			trace.AddPolicy(ctx, trace.Policy{Kind: c.Kind, Name: c.Name, Verdict: trace.VerdictSkip, Reason: reason})
		}
	}
	violations, err := p.engine.Review(ctx, review, target)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("%s: %w", PluginName, err))
	}
	if trace.Tracing(ctx) {
		reportConstraints(ctx, matched, violations)
	}
	// Gatekeeper's webhook also reviews what a workload would create
	// (ExpansionTemplates), and answers for both.
	if target.Object != nil && p.engine.Expands(attrs.GetKind()) {
		var expandedMatched []expandedMatch
		var explain func(*Resultant, *Constraint, bool, string)
		if trace.Tracing(ctx) {
			explain = func(r *Resultant, c *Constraint, ok bool, _ string) {
				if ok {
					expandedMatched = append(expandedMatched, expandedMatch{r.Object.GetKind(), r.Template, c})
				}
			}
		}
		expanded, err := p.engine.ReviewExpanded(ctx, expansionBase(attrs, target.Object), target.NamespaceObject, explain)
		if err != nil {
			return apierrors.NewInternalError(fmt.Errorf("%s: %w", PluginName, err))
		}
		if trace.Tracing(ctx) {
			reportExpanded(ctx, expandedMatched, expanded)
		}
		violations = append(violations, expanded...)
	}
	var denials []string
	for _, v := range violations {
		msg := fmt.Sprintf("[%s] %s", v.Constraint.Name, v.Msg)
		for _, action := range v.Actions() {
			constraintViolations.WithLabelValues(v.Constraint.Kind, v.Constraint.Name, action).Inc()
			switch action {
			case ActionDeny:
				denials = append(denials, msg)
			case ActionWarn:
				warning.AddWarning(ctx, "", msg)
			case ActionDryRun:
				p.logger.Info("constraint violation (dryrun)", "constraint", v.Constraint.Kind+"/"+v.Constraint.Name,
					"operation", attrs.GetOperation(), "resource", attrs.GetResource().Resource, "namespace", attrs.GetNamespace(), "name", attrs.GetName(), "msg", v.Msg)
			}
		}
	}
	if len(denials) == 0 {
		return nil
	}
	// Word for word what Gatekeeper's webhook answer becomes in the API
	// server, so scripts and tests written against Gatekeeper match.
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    403,
		Reason:  metav1.StatusReasonForbidden,
		Message: fmt.Sprintf("admission webhook %q denied the request: %s", EnforcementPoint, strings.Join(denials, "\n")),
	}}
}

var (
	templateResource = TemplateGVR.GroupResource()
	configResource   = ConfigGVR.GroupResource()
)

// warnAboutConfig tells the user who writes Gatekeeper's Config what
// Gatekeeper would silently pass over: a Config it does not read, and
// spec.match entries that exclude nothing.
func warnAboutConfig(ctx context.Context, attrs admission.Attributes) {
	u, ok := attrs.GetObject().(*unstructured.Unstructured)
	if !ok || attrs.GetSubresource() != "" {
		return
	}
	if u.GetNamespace() != GatekeeperNamespace || u.GetName() != ConfigName {
		warning.AddWarning(ctx, "", fmt.Sprintf("Config %s/%s is not read: Gatekeeper reads only %s/%s", u.GetNamespace(), u.GetName(), GatekeeperNamespace, ConfigName))
		return
	}
	_, errs := ParseExclusions(u)
	for _, err := range errs {
		warning.AddWarning(ctx, "", strings.Join(strings.Fields(err.Error()), " "))
	}
}

// refuseIgnoreLabel answers for Gatekeeper's check-ignore-label webhook: a
// Namespace may carry IgnoreLabel only if it is exempt, or anyone allowed
// to label a namespace could take it out of every policy.
func refuseIgnoreLabel(ctx context.Context, exempt Exempt, t *Target) error {
	msg := IgnoreLabelRefusal(exempt, t.GVK, t.Object)
	if msg == "" {
		return nil
	}
	trace.AddPolicy(ctx, trace.Policy{Kind: "ValidatingWebhook", Name: IgnoreLabelWebhook, Verdict: trace.VerdictDeny, Message: msg})
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    403,
		Reason:  metav1.StatusReason(msg),
		Message: fmt.Sprintf("admission webhook %q denied the request: %s", IgnoreLabelWebhook, msg),
	}}
}

// warnAboutTemplate tells the user who writes a ConstraintTemplate what
// Gatekeeper would only show in the template's status: that its Rego does
// not compile (with line numbers), or that deleting it deletes its
// constraints.
func (p *Plugin) warnAboutTemplate(ctx context.Context, attrs admission.Attributes) {
	if attrs.GetOperation() == admission.Delete {
		kind := ""
		if u, ok := attrs.GetOldObject().(*unstructured.Unstructured); ok {
			kind, _, _ = unstructured.NestedString(u.Object, "spec", "crd", "spec", "names", "kind")
		}
		if names := p.engine.ConstraintNames(kind); len(names) > 0 {
			warning.AddWarning(ctx, "", fmt.Sprintf("deleting ConstraintTemplate %s also deletes its %d %s constraint(s): %s",
				attrs.GetName(), len(names), kind, strings.Join(names, ", ")))
		}
		return
	}
	u, ok := attrs.GetObject().(*unstructured.Unstructured)
	if !ok {
		return
	}
	t, err := ParseTemplate(u)
	if err == nil && t.HasCode() {
		err = p.engine.Check(t.Source())
	}
	if err != nil {
		// A warning header cannot hold control characters (the API server
		// drops such warnings), and OPA's messages span lines.
		msg := strings.Join(strings.Fields(err.Error()), " ")
		warning.AddWarning(ctx, "", fmt.Sprintf("ConstraintTemplate %s is not in force (any previous version stays): %s", attrs.GetName(), msg))
	}
}

// target gathers what spec.match looks at.
func (p *Plugin) target(attrs admission.Attributes, review map[string]any) *Target {
	t := &Target{
		GVK:       attrs.GetKind(),
		Namespace: attrs.GetNamespace(),
		Name:      attrs.GetName(),
	}
	t.Object, _ = review["object"].(map[string]any)
	t.OldObject, _ = review["oldObject"].(map[string]any)
	switch {
	case isNamespaceKind(t.GVK):
		t.NamespaceObject = t.Object
		if t.NamespaceObject == nil {
			t.NamespaceObject = t.OldObject
		}
	case t.Namespace != "" && p.namespaces != nil:
		t.NamespaceObject = p.namespaces(t.Namespace)
		// Gatekeeper hands policies the namespace of namespaced requests.
		WithNamespace(review, t.NamespaceObject)
	}
	return t
}

// Actions are the enforcement actions that apply at admission: the
// constraint's enforcementAction, or for "scoped" those of its
// scopedEnforcementActions that name the validation enforcement point.
func (c *Constraint) Actions() []string {
	switch c.EnforcementAction {
	case "", ActionDeny:
		return []string{ActionDeny}
	case ActionScoped:
		return c.ActionsAt(EnforcementPoint)
	}
	return []string{c.EnforcementAction}
}

// reportConstraints tells the admission trace what each matched constraint
// did: allow when it reported nothing, else its violations with the
// actions taken.
func reportConstraints(ctx context.Context, matched []*Constraint, violations []Violation) {
	byConstraint := map[*Constraint][]string{}
	for _, v := range violations {
		byConstraint[v.Constraint] = append(byConstraint[v.Constraint], v.Msg)
	}
	slices.SortFunc(matched, func(a, b *Constraint) int { return strings.Compare(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name) })
	for _, c := range matched {
		msgs := byConstraint[c]
		if len(msgs) == 0 {
			trace.AddPolicy(ctx, trace.Policy{Kind: c.Kind, Name: c.Name, Verdict: trace.VerdictAllow})
			continue
		}
		verdict := trace.VerdictAllow
		for _, a := range c.Actions() {
			verdict = strongerVerdict(verdict, a)
		}
		trace.AddPolicy(ctx, trace.Policy{Kind: c.Kind, Name: c.Name, Verdict: verdict, Message: strings.Join(msgs, "; ")})
	}
}

// Actions are the enforcement actions of v at admission: its
// ExpansionTemplate's override, or else its constraint's.
func (v *Violation) Actions() []string {
	if v.EnforcementAction != "" {
		return []string{v.EnforcementAction}
	}
	return v.Constraint.Actions()
}

// expansionBase is the request's object as ExpansionTemplates read it,
// with the request's kind and namespace, leaving the review's object as it
// is.
func expansionBase(attrs admission.Attributes, object map[string]any) *unstructured.Unstructured {
	base := &unstructured.Unstructured{Object: maps.Clone(object)}
	if md, ok := object["metadata"].(map[string]any); ok {
		base.Object["metadata"] = maps.Clone(md)
	}
	base.SetGroupVersionKind(attrs.GetKind())
	base.SetNamespace(attrs.GetNamespace())
	return base
}

// expandedMatch is a constraint that selected a resource expanded from the
// request's object.
type expandedMatch struct {
	kind, template string
	constraint     *Constraint
}

// reportExpanded tells the admission trace what each constraint said of
// the resources the request's object expands into.
func reportExpanded(ctx context.Context, matched []expandedMatch, violations []Violation) {
	spoke := map[*Constraint][]Violation{}
	for _, v := range violations {
		spoke[v.Constraint] = append(spoke[v.Constraint], v)
	}
	for _, m := range matched {
		where := fmt.Sprintf("on the %s implied by ExpansionTemplate %s", m.kind, m.template)
		vs := spoke[m.constraint]
		if len(vs) == 0 {
			trace.AddPolicy(ctx, trace.Policy{Kind: m.constraint.Kind, Name: m.constraint.Name, Verdict: trace.VerdictAllow, Reason: where})
			continue
		}
		delete(spoke, m.constraint)
		var msgs []string
		verdict := trace.VerdictAllow
		for _, v := range vs {
			msgs = append(msgs, v.Msg)
			for _, a := range v.Actions() {
				verdict = strongerVerdict(verdict, a)
			}
		}
		trace.AddPolicy(ctx, trace.Policy{Kind: m.constraint.Kind, Name: m.constraint.Name, Verdict: verdict, Reason: where, Message: strings.Join(msgs, "; ")})
	}
}

// strongerVerdict is the trace verdict of a constraint that reported a
// violation with action, given its verdict so far: deny over warn over
// dryrun.
func strongerVerdict(verdict, action string) string {
	switch {
	case action == ActionDeny:
		return trace.VerdictDeny
	case action == ActionWarn && verdict != trace.VerdictDeny:
		return trace.VerdictWarn
	case action == ActionDryRun && verdict == trace.VerdictAllow:
		return trace.VerdictDryRun
	}
	return verdict
}
