package trace

import (
	"context"
	"fmt"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/configuration"
	"k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/webhook"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/generic"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/namespace"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/object"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/rules"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
)

// WebhookExplainer says, for each webhook of one plugin (validating or
// mutating), whether it was called for the request and if not, which
// criterion left it out: namespaceSelector, objectSelector, rules (with
// matchPolicy Equivalent) or the matchCondition that was false — the
// order and the predicates of upstream's dispatcher (generic.Webhook's
// ShouldCallHook), on the same webhook source upstream builds
// (admission/configuration's managers). What a called webhook answered
// comes from the plugin's messages and annotations, already in the step.
type WebhookExplainer struct {
	source     generic.Source
	namespaces *namespace.Matcher
	objects    object.Matcher
	compiler   cel.ConditionCompiler
}

func newWebhookExplainer(source generic.Source, client kubernetes.Interface, f informers.SharedInformerFactory) *WebhookExplainer {
	return &WebhookExplainer{
		source:     source,
		namespaces: &namespace.Matcher{NamespaceLister: f.Core().V1().Namespaces().Lister(), Client: client},
		// The condition compiler upstream's webhook plugins use.
		compiler: cel.NewConditionCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())),
	}
}

// Explain adds a Policy per webhook the step does not name yet.
func (x *WebhookExplainer) Explain(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces, step *Step) {
	if !x.source.HasSynced() {
		return
	}
	for _, h := range x.source.Webhooks() {
		i := slices.IndexFunc(step.Policies, func(p Policy) bool {
			return p.Kind == KindWebhook && p.Name == h.GetName() && (p.Configuration == "" || p.Configuration == h.GetConfigurationName())
		})
		if i >= 0 {
			step.Policies[i].Configuration = h.GetConfigurationName()
			continue // it spoke: the step says so already
		}
		p := Policy{Kind: KindWebhook, Name: h.GetName(), Configuration: h.GetConfigurationName(), Verdict: VerdictAllow, Reason: "called; allowed"}
		if why, failed := x.why(ctx, h, a, o); why != "" {
			p.Verdict, p.Reason, p.Expression = VerdictSkip, why, failed
		} else if step.Reinvocation {
			// Upstream calls a webhook again only with reinvocationPolicy
			// IfNeeded, and then only if the object changed since its call;
			// one it called again has its annotation, read above.
			p.Verdict, p.Reason = VerdictSkip, "not called again in the reinvocation round"
			if m, ok := h.GetMutatingWebhook(); !ok || m.ReinvocationPolicy == nil || *m.ReinvocationPolicy == admissionregistrationv1.NeverReinvocationPolicy {
				p.Reason += " (reinvocationPolicy Never)"
			} else {
				p.Reason += " (the object did not change since its call)"
			}
		}
		step.Policies = append(step.Policies, p)
	}
}

// MayChange reports whether a webhook's rules cover the request (for
// MutatingAdmissionWebhook: whether the step may patch).
func (x *WebhookExplainer) MayChange(a admission.Attributes, o admission.ObjectInterfaces) bool {
	if !x.source.HasSynced() {
		return true
	}
	for _, h := range x.source.Webhooks() {
		if _, ok := matchingKind(h, a, o); ok {
			return true
		}
	}
	return false
}

// why says which criterion leaves h out ("" when none does), and the
// expression of the matchCondition that was false.
func (x *WebhookExplainer) why(ctx context.Context, h webhook.WebhookAccessor, a admission.Attributes, o admission.ObjectInterfaces) (string, string) {
	if ok, err := x.namespaces.MatchNamespaceSelector(h, a); err != nil {
		return "namespaceSelector could not be evaluated: " + err.Error(), ""
	} else if !ok {
		sel, _ := metav1.LabelSelectorAsSelector(h.GetNamespaceSelector())
		return fmt.Sprintf("namespaceSelector %q does not select namespace %q", sel, a.GetNamespace()), ""
	}
	if ok, err := x.objects.MatchObjectSelector(h, a); err != nil {
		return "objectSelector could not be evaluated: " + err.Error(), ""
	} else if !ok {
		sel, _ := metav1.LabelSelectorAsSelector(h.GetObjectSelector())
		return fmt.Sprintf("objectSelector %q does not select the object", sel), ""
	}
	kind, ok := matchingKind(h, a, o)
	if !ok {
		return fmt.Sprintf("rules do not cover %s %s", a.GetOperation(), resourceName(a)), ""
	}
	conditions := h.GetMatchConditions()
	if len(conditions) == 0 {
		return "", ""
	}
	versioned, err := admission.NewVersionedAttributes(a, kind, o)
	if err != nil {
		return "matchConditions could not be evaluated: " + err.Error(), ""
	}
	// No authorizer: a condition that asks one fails here, and says so.
	result := h.GetCompiledMatcher(x.compiler).Match(ctx, versioned, nil, nil)
	switch {
	case result.Error != nil:
		return "matchConditions could not be evaluated: " + result.Error.Error(), ""
	case !result.Matches:
		expr := ""
		for _, c := range conditions {
			if c.Name == result.FailedConditionName {
				expr = c.Expression
			}
		}
		return fmt.Sprintf("matchCondition %q is false", result.FailedConditionName), expr
	}
	return "", ""
}

// matchingKind is the kind upstream would send h the request as: the
// request's own when a rule covers it, else with matchPolicy Equivalent
// that of the first equivalent resource a rule covers.
func matchingKind(h webhook.WebhookAccessor, a admission.Attributes, o admission.ObjectInterfaces) (schema.GroupVersionKind, bool) {
	for _, r := range h.GetRules() {
		if (&rules.Matcher{Rule: r, Attr: a}).Matches() {
			return a.GetKind(), true
		}
	}
	if p := h.GetMatchPolicy(); p == nil || *p != admissionregistrationv1.Equivalent {
		return schema.GroupVersionKind{}, false
	}
	mapper := o.GetEquivalentResourceMapper()
	for _, r := range h.GetRules() {
		for _, equivalent := range mapper.EquivalentResourcesFor(a.GetResource(), a.GetSubresource()) {
			if equivalent == a.GetResource() {
				continue
			}
			if (&rules.Matcher{Rule: r, Attr: resourceOverride{a, equivalent}}).Matches() {
				return mapper.KindFor(equivalent, a.GetSubresource()), true
			}
		}
	}
	return schema.GroupVersionKind{}, false
}

// resourceOverride is a request seen as one for an equivalent resource.
type resourceOverride struct {
	admission.Attributes
	resource schema.GroupVersionResource
}

func (r resourceOverride) GetResource() schema.GroupVersionResource { return r.resource }

// webhookSources are upstream's webhook sources on f.
func webhookSources(f informers.SharedInformerFactory) (validating, mutating generic.Source) {
	none := sets.New[schema.GroupResource]()
	return configuration.NewValidatingWebhookConfigurationManager(f, none),
		configuration.NewMutatingWebhookConfigurationManager(f, none)
}
