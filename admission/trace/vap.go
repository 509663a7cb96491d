package trace

import (
	"context"
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/policy/matching"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	admissionlisters "k8s.io/client-go/listers/admissionregistration/v1"
	"k8s.io/client-go/tools/cache"
)

// Explainer adds per-policy detail to the step of a plugin that reports
// none itself; the decorator calls it after the plugin, with the same
// request.
type Explainer interface {
	Explain(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces, step *Step)
}

// VAPExplainer says, for each ValidatingAdmissionPolicyBinding, whether
// its policy's matchConstraints and its own matchResources select the
// request, and if not which criterion did not, with upstream's own matcher
// (policy/matching, the one the plugin's dispatcher uses). What it cannot
// see from outside the plugin, matchConditions and the validations
// themselves, it leaves to the step's verdict: a matched binding that
// neither denied nor warned is reported as allow.
type VAPExplainer struct {
	policies admissionlisters.ValidatingAdmissionPolicyLister
	bindings admissionlisters.ValidatingAdmissionPolicyBindingLister
	matcher  *matching.Matcher
	synced   []cache.InformerSynced
	factory  informers.SharedInformerFactory
}

// NewVAPExplainer builds the explainer on its own informers; Start starts
// them once the API server serves.
func NewVAPExplainer(client kubernetes.Interface) *VAPExplainer {
	f := informers.NewSharedInformerFactory(client, 0)
	p := f.Admissionregistration().V1().ValidatingAdmissionPolicies()
	b := f.Admissionregistration().V1().ValidatingAdmissionPolicyBindings()
	ns := f.Core().V1().Namespaces()
	return &VAPExplainer{
		policies: p.Lister(),
		bindings: b.Lister(),
		matcher:  matching.NewMatcher(ns.Lister(), client),
		synced:   []cache.InformerSynced{p.Informer().HasSynced, b.Informer().HasSynced, ns.Informer().HasSynced},
		factory:  f,
	}
}

// Start starts the informers until ctx ends.
func (x *VAPExplainer) Start(ctx context.Context) { x.factory.Start(ctx.Done()) }

// Explain adds a Policy per binding: skip with the criterion that did not
// select the request, or allow for those the step did not already name.
func (x *VAPExplainer) Explain(_ context.Context, a admission.Attributes, o admission.ObjectInterfaces, step *Step) {
	for _, ok := range x.synced {
		if !ok() {
			return
		}
	}
	bindings, err := x.bindings.List(labels.Everything())
	if err != nil {
		return
	}
	slices.SortFunc(bindings, func(p, q *admissionregistrationv1.ValidatingAdmissionPolicyBinding) int {
		return strings.Compare(p.Spec.PolicyName+"/"+p.Name, q.Spec.PolicyName+"/"+q.Name)
	})
	for _, b := range bindings {
		if slices.ContainsFunc(step.Policies, func(p Policy) bool {
			return p.Kind == KindValidatingPolicy && p.Name == b.Spec.PolicyName && (p.Binding == "" || p.Binding == b.Name)
		}) {
			continue // it spoke: the step says so already
		}
		policy := Policy{Kind: KindValidatingPolicy, Name: b.Spec.PolicyName, Binding: b.Name, Verdict: VerdictAllow}
		def, err := x.policies.Get(b.Spec.PolicyName)
		switch {
		case err != nil:
			policy.Verdict, policy.Reason = VerdictSkip, "binding names a policy that does not exist"
		case def.Spec.MatchConstraints == nil:
			policy.Verdict, policy.Reason = VerdictSkip, "policy has no matchConstraints"
		default:
			if why := x.why(a, o, def.Spec.MatchConstraints); why != "" {
				policy.Verdict, policy.Reason = VerdictSkip, "policy matchConstraints: "+why
			} else if b.Spec.MatchResources != nil {
				if why := x.why(a, o, b.Spec.MatchResources); why != "" {
					policy.Verdict, policy.Reason = VerdictSkip, "binding matchResources: "+why
				}
			}
		}
		step.Policies = append(step.Policies, policy)
	}
}

// why says which criterion of m does not select the request ("" when all
// do), testing each alone with upstream's matcher.
func (x *VAPExplainer) why(a admission.Attributes, o admission.ObjectInterfaces, m *admissionregistrationv1.MatchResources) string {
	everything := &metav1.LabelSelector{}
	only := func(r admissionregistrationv1.MatchResources) bool {
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
	if !only(admissionregistrationv1.MatchResources{ResourceRules: m.ResourceRules}) {
		return fmt.Sprintf("resourceRules do not cover %s %s", a.GetOperation(), resourceName(a))
	}
	if len(m.ExcludeResourceRules) > 0 && only(admissionregistrationv1.MatchResources{ResourceRules: m.ExcludeResourceRules}) {
		return fmt.Sprintf("excludeResourceRules exclude %s %s", a.GetOperation(), resourceName(a))
	}
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
