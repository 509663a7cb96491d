package webhooks

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"k8s.io/component-base/tracing"
)

// startLikeDispatcher starts the span upstream's validating dispatcher
// starts for each call, with the same helper and attributes.
func startLikeDispatcher(ctx context.Context, name string) context.Context {
	ctx, span := tracing.Start(ctx, name,
		attribute.String("configuration", "cfg"),
		attribute.String("webhook", "pods.example.com"),
		attribute.String("resource", "/v1, Resource=pods"),
		attribute.String("subresource", ""),
		attribute.String("operation", "CREATE"),
		attribute.String("UID", "1234"))
	span.End(0)
	return ctx
}

func TestIdentityThroughUpstreamTracing(t *testing.T) {
	for _, tc := range []struct{ span, kind string }{{"Call validating webhook", KindValidating}, {"Call mutating webhook", KindMutating}} {
		ctx := startLikeDispatcher(WithIdentitySpan(context.Background()), tc.span)
		id, ok := IdentityFrom(ctx)
		want := Identity{Kind: tc.kind, Configuration: "cfg", Webhook: "pods.example.com", UID: "1234"}
		if !ok || id != want {
			t.Errorf("%s: identity %+v (%v), want %+v", tc.span, id, ok, want)
		}
	}
	// Without the identity span, nothing is noted.
	if _, ok := IdentityFrom(startLikeDispatcher(context.Background(), "Call validating webhook")); ok {
		t.Error("identity without WithIdentitySpan")
	}
	// Another span is not a webhook call.
	ctx, span := tracing.Start(WithIdentitySpan(context.Background()), "Admit")
	span.End(0)
	if _, ok := IdentityFrom(ctx); ok {
		t.Error("identity from a span that is no webhook call")
	}
}

func TestIdentitySpansGoToTheServersProvider(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer provider.Shutdown(context.Background())
	ctx, request := provider.Tracer("test").Start(context.Background(), "request")
	ctx = startLikeDispatcher(WithIdentitySpan(ctx), "Call mutating webhook")
	request.End()
	if id, ok := IdentityFrom(ctx); !ok || id.Webhook != "pods.example.com" {
		t.Errorf("identity %+v (%v)", id, ok)
	}
	ended := rec.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans recorded, want the request's and the call's", len(ended))
	}
	call := ended[0]
	if call.Name() != "Call mutating webhook" || call.Parent().SpanID() != request.SpanContext().SpanID() {
		t.Errorf("call span %q with parent %v, want a child of the request's span %v", call.Name(), call.Parent().SpanID(), request.SpanContext().SpanID())
	}
}
