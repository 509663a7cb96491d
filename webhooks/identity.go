package webhooks

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// Identity is which webhook a call is for, as upstream's dispatcher names
// it in its span.
type Identity struct {
	// Kind is validating or mutating.
	Kind          string
	Configuration string
	Webhook       string
	UID           string
}

// Kinds of webhook. KindProvider is a Gatekeeper external data provider:
// not an admission webhook, but called over HTTPS during admission too, so
// its calls are logged and faulted the same way, by provider name.
const (
	KindValidating = "validating"
	KindMutating   = "mutating"
	KindProvider   = "provider"
)

// ProviderConfiguration stands in the place of a provider call's
// configuration, so that the log shows it as Provider/NAME.
const ProviderConfiguration = "Provider"

// ProviderCall returns ctx for a call to the external data provider name:
// a transport from Kit.Wrap then logs it and applies name's fault.
func ProviderCall(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, identityKey{}, Identity{Kind: KindProvider, Configuration: ProviderConfiguration, Webhook: name})
}

// The dispatchers' span names and attribute keys
// (k8s.io/apiserver/pkg/admission/plugin/webhook/{validating,mutating}/dispatcher.go).
const (
	spanValidating = "Call validating webhook"
	spanMutating   = "Call mutating webhook"
	attrConfig     = "configuration"
	attrWebhook    = "webhook"
	attrUID        = "UID"
)

type identityKey struct{}

// IdentityFrom returns the webhook identity of a call's context.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// WithIdentitySpan returns ctx whose span (the same as ctx's, seen from
// outside) has a tracer provider that notes the identity of every webhook
// call started under it, and passes every span on to the provider of ctx's
// own span (the API server's).
func WithIdentitySpan(ctx context.Context) context.Context {
	parent := trace.SpanFromContext(ctx)
	if _, ok := parent.(identitySpan); ok {
		return ctx
	}
	return trace.ContextWithSpan(ctx, identitySpan{Span: parent, provider: identityProvider{inner: parent.TracerProvider()}})
}

// identitySpan is the request's span, with another provider.
type identitySpan struct {
	trace.Span
	provider identityProvider
}

func (s identitySpan) TracerProvider() trace.TracerProvider { return s.provider }

type identityProvider struct {
	embedded.TracerProvider
	inner trace.TracerProvider
}

func (p identityProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return identityTracer{inner: p.inner.Tracer(name, opts...)}
}

type identityTracer struct {
	embedded.Tracer
	inner trace.Tracer
}

func (t identityTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if name == spanValidating || name == spanMutating {
		id := Identity{Kind: KindValidating}
		if name == spanMutating {
			id.Kind = KindMutating
		}
		cfg := trace.NewSpanStartConfig(opts...)
		for _, kv := range cfg.Attributes() {
			switch kv.Key {
			case attribute.Key(attrConfig):
				id.Configuration = kv.Value.AsString()
			case attribute.Key(attrWebhook):
				id.Webhook = kv.Value.AsString()
			case attribute.Key(attrUID):
				id.UID = kv.Value.AsString()
			}
		}
		ctx = context.WithValue(ctx, identityKey{}, id)
	}
	// The inner provider's span is a child of the request's own span.
	if s, ok := trace.SpanFromContext(ctx).(identitySpan); ok {
		ctx = trace.ContextWithSpan(ctx, s.Span)
	}
	return t.inner.Start(ctx, name, opts...)
}
