package trace

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

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
	x.mergeCalls(ctx, step)
}

// mergeCalls adds to each called webhook's policy what the webhook kit saw
// of its call (exchange, fault, time) and what failurePolicy made of a
// failure. Upstream applies failurePolicy to failed calls and refused
// answers only: a patch that does not apply refuses the request whatever
// the failurePolicy.
func (x *WebhookExplainer) mergeCalls(ctx context.Context, step *Step) {
	if len(step.calls) == 0 {
		return
	}
	hooks := map[string]webhook.WebhookAccessor{}
	for _, h := range x.source.Webhooks() {
		hooks[h.GetConfigurationName()+"/"+h.GetName()] = h
	}
	var timedOutIgnored []string
	for ci, c := range step.calls {
		key := c.Configuration + "/" + c.Webhook
		h := hooks[key]
		ignore := false
		if h != nil {
			fp := h.GetFailurePolicy()
			ignore = fp != nil && *fp == admissionregistrationv1.Ignore
		}
		i := slices.IndexFunc(step.Policies, func(p Policy) bool {
			return p.Kind == KindWebhook && p.Name == c.Webhook && (p.Configuration == "" || p.Configuration == c.Configuration)
		})
		if i < 0 {
			step.Policies = append(step.Policies, Policy{Kind: KindWebhook, Name: c.Webhook, Configuration: c.Configuration})
			i = len(step.Policies) - 1
		}
		p := &step.Policies[i]
		p.Configuration, p.Exchange, p.Fault, p.CallDuration, p.Stubbed = c.Configuration, c.Exchange, c.Fault, c.Duration, c.Stubbed
		var what string
		switch {
		case c.TimedOut:
			what = fmt.Sprintf("the call timed out after %s", c.Duration.Round(10*time.Millisecond))
		case c.Failed:
			what = "the call failed"
		case c.Problem != "":
			what = "its answer was refused: " + c.Problem
		}
		failedCall := what != ""
		last := ci == len(step.calls)-1
		switch {
		case failedCall && ignore:
			p.Verdict, p.Reason = VerdictFailedOpen, what+"; failurePolicy Ignore let the request through"
			if c.TimedOut {
				timedOutIgnored = append(timedOutIgnored, fmt.Sprintf("%s %s", c.Webhook, c.Duration.Round(10*time.Millisecond)))
			}
		case failedCall:
			p.Verdict, p.Reason = VerdictError, what+"; failurePolicy Fail refused the request"
		case last && step.Phase == "mutating" && step.Verdict == VerdictError && !strings.Contains(step.Message, "admission webhook \""+c.Webhook+"\" denied"):
			// The call answered, and the step still failed after it: its
			// patch did not apply (or the patched object did not decode).
			p.Verdict = VerdictError
			p.Reason = "its patch could not be applied: " + step.Message
			if ignore {
				p.Reason += "; refused although failurePolicy is Ignore"
			} else {
				p.Reason += "; failurePolicy Fail refused the request"
			}
		}
		if c.Stubbed {
			if p.Reason == "" {
				p.Reason = "called"
			}
			p.Reason += " (stubbed: answered with its last recorded answer)"
		}
	}
	// Kubernetes issue 128162: mutating webhooks run one after another, each
	// with its own timeout; Ignore lets each timeout through, but together
	// they can outlast the request's deadline, and the request fails.
	if deadline, ok := ctx.Deadline(); ok && step.Phase == "mutating" && len(timedOutIgnored) > 0 && !time.Now().Before(deadline) {
		msg := fmt.Sprintf("mutating webhooks with failurePolicy Ignore timed out one after another (%s) past the request's deadline: each timeout was let through, but together they used up the request's time, so the request failed (kubernetes issue 128162)", strings.Join(timedOutIgnored, ", "))
		if step.Message != "" {
			msg += ": " + step.Message
		}
		step.Message = msg
		if step.Verdict == VerdictAllow || step.Verdict == VerdictWarn {
			step.Verdict = VerdictError
		}
		// Those that matched after them were never called.
		for i := range step.Policies {
			if p := &step.Policies[i]; p.Kind == KindWebhook && p.Exchange == 0 && p.Verdict == VerdictAllow {
				p.Verdict, p.Reason = VerdictSkip, "not called: the request's deadline had passed"
			}
		}
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
