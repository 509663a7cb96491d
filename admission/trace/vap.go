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
	policy   func(name string) (*admissionregistrationv1.MatchResources, error)
	matcher  *matching.Matcher
	synced   []cache.InformerSynced
}

// policyBinding is what the explainer reads of a binding.
type policyBinding struct {
	name, policy   string
	matchResources *admissionregistrationv1.MatchResources
}

// PolicyExplainers are the explainers of both plugins, on one informer
// factory; Start starts it once the API server serves.
type PolicyExplainers struct {
	Validating, Mutating *PolicyExplainer
	factory              informers.SharedInformerFactory
}

// NewPolicyExplainers builds the explainers of ValidatingAdmissionPolicy
// and MutatingAdmissionPolicy.
func NewPolicyExplainers(client kubernetes.Interface) *PolicyExplainers {
	f := informers.NewSharedInformerFactory(client, 0)
	ns := f.Core().V1().Namespaces()
	matcher := matching.NewMatcher(ns.Lister(), client)
	v1 := f.Admissionregistration().V1()
	vp, vb := v1.ValidatingAdmissionPolicies(), v1.ValidatingAdmissionPolicyBindings()
	mp, mb := v1.MutatingAdmissionPolicies(), v1.MutatingAdmissionPolicyBindings()
	return &PolicyExplainers{
		factory: f,
		Validating: &PolicyExplainer{
			kind: KindValidatingPolicy,
			bindings: func() ([]policyBinding, error) {
				list, err := vb.Lister().List(labels.Everything())
				out := make([]policyBinding, len(list))
				for i, b := range list {
					out[i] = policyBinding{name: b.Name, policy: b.Spec.PolicyName, matchResources: b.Spec.MatchResources}
				}
				return out, err
			},
			policy: func(name string) (*admissionregistrationv1.MatchResources, error) {
				p, err := vp.Lister().Get(name)
				if err != nil {
					return nil, err
				}
				return p.Spec.MatchConstraints, nil
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
					out[i] = policyBinding{name: b.Name, policy: b.Spec.PolicyName, matchResources: b.Spec.MatchResources}
				}
				return out, err
			},
			policy: func(name string) (*admissionregistrationv1.MatchResources, error) {
				p, err := mp.Lister().Get(name)
				if err != nil {
					return nil, err
				}
				return p.Spec.MatchConstraints, nil
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
func (x *PolicyExplainer) Explain(_ context.Context, a admission.Attributes, o admission.ObjectInterfaces, step *Step) {
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
		constraints, err := x.policy(b.policy)
		switch {
		case err != nil:
			policy.Verdict, policy.Reason = VerdictSkip, "binding names a policy that does not exist"
		case constraints == nil:
			policy.Verdict, policy.Reason = VerdictSkip, "policy has no matchConstraints"
		default:
			if why := x.why(a, o, constraints); why != "" {
				policy.Verdict, policy.Reason = VerdictSkip, "policy matchConstraints: "+why
			} else if b.matchResources != nil {
				if why := x.why(a, o, b.matchResources); why != "" {
					policy.Verdict, policy.Reason = VerdictSkip, "binding matchResources: "+why
				}
			}
		}
		step.Policies = append(step.Policies, policy)
	}
}

// why says which criterion of m does not select the request ("" when all
// do), testing each alone with upstream's matcher.
func (x *PolicyExplainer) why(a admission.Attributes, o admission.ObjectInterfaces, m *admissionregistrationv1.MatchResources) string {
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
