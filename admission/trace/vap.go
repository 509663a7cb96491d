package trace

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/matching"
	policymutating "k8s.io/apiserver/pkg/admission/plugin/policy/mutating"
	policyvalidating "k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Explainer adds per-policy detail to the step of a plugin that reports
// none itself; the decorator calls it after the plugin, with the same
// request.
type Explainer interface {
	Explain(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces, step *Step)
}

// PolicyExplainer says, for each binding of one kind of admission policy
// (ValidatingAdmissionPolicy or MutatingAdmissionPolicy), whether its
// policy's matchConstraints and its own matchResources select the
// request, and if not which criterion did not, with upstream's own matcher
// (policy/matching, the one the plugins' dispatchers use). What it cannot
// see from outside the plugin, matchConditions and the validations or
// mutations themselves, it leaves to the step's verdict: a matched binding
// that the step did not name is reported as allow.
type PolicyExplainer struct {
	kind     string
	bindings func() ([]policyBinding, error)
	policy   func(name string) (*policyInfo, error)
	matcher  *matching.Matcher
	synced   []cache.InformerSynced
	// conditions caches each policy's compiled matchConditions by UID and
	// resourceVersion.
	conditions sync.Map
	// rules caches, per policy or binding version and kind of request
	// (operation, resource, subresource), why its rules leave the request
	// out ("" when they cover it): most bindings do not cover most
	// requests, and this keeps upstream's matcher off the request path for
	// them.
	rules     sync.Map
	rulesSize atomic.Int64
}

type rulesKey struct {
	version     string
	op          admission.Operation
	resource    schema.GroupVersionResource
	subresource string
}

// cachedWhy says which criterion of m leaves the request out ("" when
// none does), with the rules' part remembered (see rules).
func (x *PolicyExplainer) cachedWhy(version string, a admission.Attributes, o admission.ObjectInterfaces, m *admissionregistrationv1.MatchResources) string {
	key := rulesKey{version, a.GetOperation(), a.GetResource(), a.GetSubresource()}
	cached, ok := x.rules.Load(key)
	if !ok {
		cached = x.rulesWhy(a, o, m)
		if x.rulesSize.Add(1) > 10000 {
			x.rules.Clear() // versions come and go; keep it bounded
			x.rulesSize.Store(0)
		}
		x.rules.Store(key, cached)
	}
	if why := cached.(string); why != "" {
		return why
	}
	return x.selectorsWhy(a, o, m)
}

// policyInfo is what the explainer reads of a policy.
type policyInfo struct {
	key, name, kind string
	match           *admissionregistrationv1.MatchResources
	conditions      []admissionregistrationv1.MatchCondition
	variables       []plugincel.NamedExpressionAccessor
	validations     []string
	failurePolicy   *admissionregistrationv1.FailurePolicyType
	hasParams       bool
	// reinvoked: a MutatingAdmissionPolicy with reinvocationPolicy
	// IfNeeded, applied again in the reinvocation round.
	reinvoked bool
}

// policyBinding is what the explainer reads of a binding.
type policyBinding struct {
	// key is the binding's UID and resourceVersion.
	key            string
	name, policy   string
	matchResources *admissionregistrationv1.MatchResources
}

// PolicyExplainers are the explainers of upstream's four plugins that run
// users' policies and webhooks, on one informer factory; Start starts it
// once the API server serves.
type PolicyExplainers struct {
	Validating, Mutating               *PolicyExplainer
	ValidatingWebhook, MutatingWebhook *WebhookExplainer
	factory                            informers.SharedInformerFactory
}

// NewPolicyExplainers builds the explainers of ValidatingAdmissionPolicy,
// MutatingAdmissionPolicy and both webhook plugins.
func NewPolicyExplainers(client kubernetes.Interface) *PolicyExplainers {
	f := informers.NewSharedInformerFactory(client, 0)
	validatingHooks, mutatingHooks := webhookSources(f)
	ns := f.Core().V1().Namespaces()
	matcher := matching.NewMatcher(ns.Lister(), client)
	v1 := f.Admissionregistration().V1()
	vp, vb := v1.ValidatingAdmissionPolicies(), v1.ValidatingAdmissionPolicyBindings()
	mp, mb := v1.MutatingAdmissionPolicies(), v1.MutatingAdmissionPolicyBindings()
	return &PolicyExplainers{
		factory:           f,
		ValidatingWebhook: newWebhookExplainer(validatingHooks, client, f),
		MutatingWebhook:   newWebhookExplainer(mutatingHooks, client, f),
		Validating: &PolicyExplainer{
			kind: KindValidatingPolicy,
			bindings: func() ([]policyBinding, error) {
				list, err := vb.Lister().List(labels.Everything())
				out := make([]policyBinding, len(list))
				for i, b := range list {
					out[i] = policyBinding{key: string(b.UID) + "/" + b.ResourceVersion, name: b.Name, policy: b.Spec.PolicyName, matchResources: b.Spec.MatchResources}
				}
				return out, err
			},
			policy: func(name string) (*policyInfo, error) {
				p, err := vp.Lister().Get(name)
				if err != nil {
					return nil, err
				}
				info := &policyInfo{key: string(p.UID) + "/" + p.ResourceVersion, name: p.Name, kind: "validate",
					match: p.Spec.MatchConstraints, conditions: p.Spec.MatchConditions, failurePolicy: p.Spec.FailurePolicy,
					hasParams: p.Spec.ParamKind != nil}
				for _, v := range p.Spec.Variables {
					info.variables = append(info.variables, &policyvalidating.Variable{Name: v.Name, Expression: v.Expression})
				}
				for _, v := range p.Spec.Validations {
					info.validations = append(info.validations, v.Expression)
				}
				return info, nil
			},
			matcher: matcher,
			synced:  []cache.InformerSynced{vp.Informer().HasSynced, vb.Informer().HasSynced, ns.Informer().HasSynced},
		},
		Mutating: &PolicyExplainer{
			kind: KindMutatingPolicy,
			bindings: func() ([]policyBinding, error) {
				list, err := mb.Lister().List(labels.Everything())
				out := make([]policyBinding, len(list))
				for i, b := range list {
					out[i] = policyBinding{key: string(b.UID) + "/" + b.ResourceVersion, name: b.Name, policy: b.Spec.PolicyName, matchResources: b.Spec.MatchResources}
				}
				return out, err
			},
			policy: func(name string) (*policyInfo, error) {
				p, err := mp.Lister().Get(name)
				if err != nil {
					return nil, err
				}
				info := &policyInfo{key: string(p.UID) + "/" + p.ResourceVersion, name: p.Name, kind: "mutate",
					match: p.Spec.MatchConstraints, conditions: p.Spec.MatchConditions, failurePolicy: p.Spec.FailurePolicy,
					hasParams: p.Spec.ParamKind != nil, reinvoked: p.Spec.ReinvocationPolicy == admissionregistrationv1.IfNeededReinvocationPolicy}
				for _, v := range p.Spec.Variables {
					info.variables = append(info.variables, &policymutating.Variable{Name: v.Name, Expression: v.Expression})
				}
				return info, nil
			},
			matcher: matcher,
			synced:  []cache.InformerSynced{mp.Informer().HasSynced, mb.Informer().HasSynced, ns.Informer().HasSynced},
		},
	}
}

// Start starts the informers until ctx ends.
func (x *PolicyExplainers) Start(ctx context.Context) { x.factory.Start(ctx.Done()) }

// Explain adds a Policy per binding: skip with the criterion that did not
// select the request, or allow for those the step did not already name.
func (x *PolicyExplainer) Explain(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces, step *Step) {
	for _, ok := range x.synced {
		if !ok() {
			return
		}
	}
	bindings, err := x.bindings()
	if err != nil {
		return
	}
	slices.SortFunc(bindings, func(p, q policyBinding) int {
		return strings.Compare(p.policy+"/"+p.name, q.policy+"/"+q.name)
	})
	for _, b := range bindings {
		if slices.ContainsFunc(step.Policies, func(p Policy) bool {
			return p.Kind == x.kind && p.Name == b.policy && (p.Binding == "" || p.Binding == b.name)
		}) {
			continue // it spoke: the step says so already
		}
		policy := Policy{Kind: x.kind, Name: b.policy, Binding: b.name, Verdict: VerdictAllow}
		info, err := x.policy(b.policy)
		switch {
		case err != nil:
			policy.Verdict, policy.Reason = VerdictSkip, "binding names a policy that does not exist"
		case info.match == nil:
			policy.Verdict, policy.Reason = VerdictSkip, "policy has no matchConstraints"
		default:
			if why := x.cachedWhy(info.key, a, o, info.match); why != "" {
				policy.Verdict, policy.Reason = VerdictSkip, "policy matchConstraints: "+why
			} else if b.matchResources != nil {
				if why := x.cachedWhy(b.key, a, o, b.matchResources); why != "" {
					policy.Verdict, policy.Reason = VerdictSkip, "binding matchResources: "+why
				}
			}
			if policy.Verdict != VerdictSkip && len(info.conditions) > 0 {
				policy.Verdict, policy.Reason, policy.Expression = x.matchConditions(ctx, a, o, info)
			}
			if policy.Verdict != VerdictSkip && step.Reinvocation && !info.reinvoked {
				policy.Verdict, policy.Reason = VerdictSkip, "not applied again in the reinvocation round (reinvocationPolicy Never)"
			}
		}
		step.Policies = append(step.Policies, policy)
	}
	x.fillIn(step)
}

// fillIn completes what the step's own words left out: the expression of
// each failed validation whose index upstream gave (Audit bindings) or
// whose message is upstream's default ("failed expression: ..."), and,
// when exactly one MutatingAdmissionPolicy binding applied, the step's
// patch as that binding's.
func (x *PolicyExplainer) fillIn(step *Step) {
	applied := -1
	for i := range step.Policies {
		p := &step.Policies[i]
		if p.Kind != x.kind {
			continue
		}
		if p.Verdict == VerdictAllow {
			if applied == -1 {
				applied = i
			} else {
				applied = -2
			}
		}
		if expr, ok := strings.CutPrefix(p.Message, "failed expression: "); ok && p.Expression == "" {
			p.Expression = strings.TrimSpace(expr)
		}
		if p.ExpressionIndex != nil && p.Expression == "" {
			if info, err := x.policy(p.Name); err == nil && *p.ExpressionIndex < len(info.validations) {
				p.Expression = info.validations[*p.ExpressionIndex]
			}
		}
	}
	if x.kind == KindMutatingPolicy && applied >= 0 && step.Patch != nil {
		step.Policies[applied].Verdict, step.Policies[applied].Patch = VerdictPatch, step.Patch
	}
}

// matchConditions evaluates the policy's matchConditions after the fact,
// compiled as upstream's plugins compile them (a composited compiler with
// the policy's variables), and says which one was false. Params are not
// looked up: a condition that reads them reports an error here.
func (x *PolicyExplainer) matchConditions(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces, info *policyInfo) (verdict, reason, expression string) {
	var matcher matchconditions.Matcher
	if m, ok := x.conditions.Load(info.key); ok {
		matcher = m.(matchconditions.Matcher)
	} else {
		compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
		if err != nil {
			return VerdictAllow, "matchConditions not evaluated: " + err.Error(), ""
		}
		vars := plugincel.OptionalVariableDeclarations{HasParams: info.hasParams, HasAuthorizer: true}
		compiler.CompileAndStoreVariables(info.variables, vars, environment.StoredExpressions)
		accessors := make([]plugincel.ExpressionAccessor, len(info.conditions))
		for i := range info.conditions {
			accessors[i] = (*matchconditions.MatchCondition)(&info.conditions[i])
		}
		matcher = matchconditions.NewMatcher(compiler.CompileCondition(accessors, vars, environment.StoredExpressions), info.failurePolicy, "policy", info.kind, info.name)
		x.conditions.Store(info.key, matcher)
	}
	versioned, err := admission.NewVersionedAttributes(a, a.GetKind(), o)
	if err != nil {
		return VerdictAllow, "matchConditions not evaluated: " + err.Error(), ""
	}
	switch result := matcher.Match(ctx, versioned, nil, nil); {
	case result.Error != nil:
		return VerdictAllow, "matchConditions not evaluated here: " + result.Error.Error(), ""
	case !result.Matches:
		for _, c := range info.conditions {
			if c.Name == result.FailedConditionName {
				expression = c.Expression
			}
		}
		return VerdictSkip, fmt.Sprintf("matchCondition %q is false", result.FailedConditionName), expression
	}
	return VerdictAllow, "", ""
}

// MayChange reports whether a binding's policy covers the request by its
// rules (for MutatingAdmissionPolicy: whether the step may patch).
func (x *PolicyExplainer) MayChange(a admission.Attributes, o admission.ObjectInterfaces) bool {
	for _, ok := range x.synced {
		if !ok() {
			return true
		}
	}
	bindings, err := x.bindings()
	if err != nil {
		return true
	}
	for _, b := range bindings {
		if info, err := x.policy(b.policy); err == nil && info.match != nil && x.cachedWhy(info.key, a, o, info.match) == "" {
			return true
		}
	}
	return false
}

// rulesWhy and selectorsWhy say which criterion of m does not select the
// request ("" when all do), testing each alone with upstream's matcher:
// rulesWhy the criteria that depend on the kind of request only.
func (x *PolicyExplainer) rulesWhy(a admission.Attributes, o admission.ObjectInterfaces, m *admissionregistrationv1.MatchResources) string {
	only := func(r admissionregistrationv1.MatchResources) bool { return x.only(a, o, r, m) }
	if !only(admissionregistrationv1.MatchResources{ResourceRules: m.ResourceRules}) {
		return fmt.Sprintf("resourceRules do not cover %s %s", a.GetOperation(), resourceName(a))
	}
	if len(m.ExcludeResourceRules) > 0 && only(admissionregistrationv1.MatchResources{ResourceRules: m.ExcludeResourceRules}) {
		return fmt.Sprintf("excludeResourceRules exclude %s %s", a.GetOperation(), resourceName(a))
	}
	return ""
}

// selectorsWhy tests the criteria that depend on the namespace and object.
func (x *PolicyExplainer) selectorsWhy(a admission.Attributes, o admission.ObjectInterfaces, m *admissionregistrationv1.MatchResources) string {
	only := func(r admissionregistrationv1.MatchResources) bool { return x.only(a, o, r, m) }
	if m.NamespaceSelector != nil && !only(admissionregistrationv1.MatchResources{NamespaceSelector: m.NamespaceSelector}) {
		sel, _ := metav1.LabelSelectorAsSelector(m.NamespaceSelector)
		return fmt.Sprintf("namespaceSelector %q does not select namespace %q", sel, a.GetNamespace())
	}
	if m.ObjectSelector != nil && !only(admissionregistrationv1.MatchResources{ObjectSelector: m.ObjectSelector}) {
		sel, _ := metav1.LabelSelectorAsSelector(m.ObjectSelector)
		return fmt.Sprintf("objectSelector %q does not select the object", sel)
	}
	return ""
}

// only tests one criterion r of m alone with upstream's matcher.
func (x *PolicyExplainer) only(a admission.Attributes, o admission.ObjectInterfaces, r admissionregistrationv1.MatchResources, m *admissionregistrationv1.MatchResources) bool {
	everything := &metav1.LabelSelector{}
	if r.NamespaceSelector == nil {
		r.NamespaceSelector = everything
	}
	if r.ObjectSelector == nil {
		r.ObjectSelector = everything
	}
	r.MatchPolicy = m.MatchPolicy
	ok, _, _, err := x.matcher.Matches(a, o, criteria{r})
	return ok && err == nil
}

func resourceName(a admission.Attributes) string {
	r := a.GetResource()
	s := r.Resource
	if r.Group != "" {
		s += "." + r.Group
	}
	if a.GetSubresource() != "" {
		s += "/" + a.GetSubresource()
	}
	return s
}

// criteria is a MatchResources as upstream's matcher takes it.
type criteria struct {
	r admissionregistrationv1.MatchResources
}

var _ matching.MatchCriteria = criteria{}

func (c criteria) GetParsedNamespaceSelector() (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(c.r.NamespaceSelector)
}

func (c criteria) GetParsedObjectSelector() (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(c.r.ObjectSelector)
}

func (c criteria) GetMatchResources() admissionregistrationv1.MatchResources { return c.r }
