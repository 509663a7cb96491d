package mutation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	webhookerrors "k8s.io/apiserver/pkg/admission/plugin/webhook/errors"
	"k8s.io/apiserver/pkg/warning"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
	"github.com/gatehouse-dev/gatehouse/admission/trace"
)

// PluginName is the admission plugin that applies Gatekeeper's mutators.
const PluginName = "GatekeeperMutation"

// mutationWebhook is the name of Gatekeeper's mutating webhook, whose place
// the plugin takes.
const mutationWebhook = "mutation.gatekeeper.sh"

// WebhookTimeout is the timeout of Gatekeeper's mutating webhook as its
// chart installs it (mutatingWebhookTimeoutSeconds: 1, failurePolicy
// Ignore): a mutation that takes longer, which only calls to external data
// providers can, lets the request through unmutated there.
const WebhookTimeout = time.Second

// Register registers the plugin with system, namespaces (for
// spec.match.namespaceSelector) and gatekeeper, the constraint engine
// whose Config exclusions and exempt namespaces also apply to mutation
// (nil for none).
func Register(plugins *admission.Plugins, system *System, namespaces constraint.NamespaceLookup, gatekeeper *constraint.Engine, logger *slog.Logger) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) {
		p := NewPlugin(system, namespaces, logger)
		p.gatekeeper = gatekeeper
		return p, nil
	})
}

// Plugin applies Gatekeeper's mutators in-process, where Gatekeeper's
// mutating webhook would: after MutatingAdmissionPolicy, before the
// mutating webhooks, on CREATE and UPDATE. When mutation fails (mutators
// that never converge, an external data value that cannot be had under
// failurePolicy Fail) the request is refused in that webhook's words: it
// answers such a request with an error response (allowed: false, code
// 500), which the API server turns into a denial whatever the webhook's
// failurePolicy, since the call itself succeeded. A mutation that outlasts
// that webhook's timeout (1 s; only external data calls can) lets the
// request through unmutated, with a warning, as failurePolicy Ignore does
// there. As its validating half,
// it refuses mutators that Gatekeeper's webhook would refuse, so none is
// stored and silently ignored.
type Plugin struct {
	*admission.Handler
	system     *System
	namespaces constraint.NamespaceLookup
	gatekeeper *constraint.Engine
	logger     *slog.Logger
}

var (
	_ admission.MutationInterface   = &Plugin{}
	_ admission.ValidationInterface = &Plugin{}
)

// NewPlugin returns the plugin.
func NewPlugin(system *System, namespaces constraint.NamespaceLookup, logger *slog.Logger) *Plugin {
	if logger == nil {
		logger = slog.Default()
	}
	return &Plugin{
		Handler:    admission.NewHandler(admission.Create, admission.Update),
		system:     system,
		namespaces: namespaces,
		logger:     logger,
	}
}

// Admit mutates the request's object.
func (p *Plugin) Admit(ctx context.Context, attrs admission.Attributes, o admission.ObjectInterfaces) error {
	if attrs.GetSubresource() != "" || attrs.GetObject() == nil || !p.system.Applies(attrs.GetKind(), attrs.GetOperation()) {
		return nil
	}
	mutateCtx, cancel := context.WithTimeout(ctx, WebhookTimeout)
	defer cancel()
	if err := p.mutate(mutateCtx, attrs, o); err != nil {
		msg := strings.Join(strings.Fields(err.Error()), " ")
		if ctx.Err() == nil && errors.Is(mutateCtx.Err(), context.DeadlineExceeded) {
			p.logger.Warn("gatekeeper mutation timed out; the object goes on unmutated, as under Gatekeeper's mutating webhook (1 s, failurePolicy Ignore)",
				"resource", attrs.GetResource().Resource, "namespace", attrs.GetNamespace(), "name", attrs.GetName(), "error", msg)
			warning.AddWarning(ctx, "", fmt.Sprintf("Gatekeeper mutation skipped: it did not finish within %s, the timeout of Gatekeeper's mutating webhook, whose failurePolicy Ignore lets the request through unmutated: %s", WebhookTimeout, msg))
			return nil
		}
		p.logger.Warn("gatekeeper mutation failed; the request is refused, as Gatekeeper's webhook refuses it",
			"resource", attrs.GetResource().Resource, "namespace", attrs.GetNamespace(), "name", attrs.GetName(), "error", msg)
		return webhookerrors.ToStatusErr(mutationWebhook, &metav1.Status{Code: http.StatusInternalServerError, Message: msg})
	}
	return nil
}

// mutate applies the mutators to the object in the request's version, as
// the mutating webhooks see it, and converts the result back into the
// request's object.
func (p *Plugin) mutate(ctx context.Context, attrs admission.Attributes, o admission.ObjectInterfaces) error {
	versioned, err := admission.NewVersionedAttributes(attrs, attrs.GetKind(), o)
	if err != nil {
		return fmt.Errorf("converting the object to %s: %w", attrs.GetKind(), err)
	}
	obj := versioned.VersionedObject.Object()
	u, isUnstructured := obj.(*unstructured.Unstructured)
	if !isUnstructured {
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return err
		}
		u = &unstructured.Unstructured{Object: content}
	}
	req := &Request{Operation: attrs.GetOperation(), GVK: attrs.GetKind(), Namespace: attrs.GetNamespace()}
	if u := attrs.GetUserInfo(); u != nil {
		req.Username = u.GetName()
	}
	if ns := attrs.GetNamespace(); ns != "" && p.namespaces != nil {
		req.NamespaceObject = p.namespaces(ns)
	}
	nsObject := req.NamespaceObject
	if req.GVK.Group == "" && req.GVK.Kind == "Namespace" {
		nsObject = u.Object
	}
	var exclusions *constraint.Exclusions
	var exempt constraint.Exempt
	if p.gatekeeper != nil {
		exclusions, exempt = p.gatekeeper.Exclusions(), p.gatekeeper.Exempt()
	}
	if skip, why := exclusions.WebhookSkips(constraint.ProcessMutation, exempt, req.GVK, u.GetName(), req.Namespace, nsObject); skip {
		trace.AddPolicy(ctx, trace.Policy{Kind: "MutatingWebhook", Name: mutationWebhook, Verdict: trace.VerdictSkip, Reason: "no mutator applied: " + why})
		return nil
	}
	changed, applied, err := p.system.MutateContext(ctx, req, u)
	// For the admission trace: the mutators that changed the object, as
	// "<kind>//<name>:<generation>".
	for _, id := range applied {
		kind, rest, _ := strings.Cut(id, "//")
		name, _, _ := strings.Cut(rest, ":")
		trace.AddPolicy(ctx, trace.Policy{Kind: kind, Name: name, Verdict: trace.VerdictPatch})
	}
	if err != nil || !changed {
		return err
	}
	p.logger.Debug("gatekeeper mutation", "resource", attrs.GetResource().Resource, "namespace", attrs.GetNamespace(), "name", attrs.GetName(), "mutators", applied)
	if isUnstructured {
		// The request's own object: the mutators changed it in place.
		return nil
	}
	out, err := o.GetObjectCreater().New(attrs.GetKind())
	if err != nil {
		return err
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		return fmt.Errorf("the mutated object is not a valid %s: %w", attrs.GetKind().Kind, err)
	}
	return o.GetObjectConvertor().Convert(out, attrs.GetObject(), nil)
}

// Validate refuses a mutator that does not parse, naming the field.
func (p *Plugin) Validate(_ context.Context, attrs admission.Attributes, _ admission.ObjectInterfaces) error {
	if attrs.GetResource().Group != Group || attrs.GetSubresource() != "" {
		return nil
	}
	u, ok := attrs.GetObject().(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	if _, err := Parse(u); err != nil {
		return admission.NewForbidden(attrs, err)
	}
	return nil
}
