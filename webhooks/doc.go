// Package webhooks is Gatehouse's webhook developer kit: what the API
// server's webhook plugins send and receive, recorded per webhook; faults
// injected into those calls to test failurePolicy and timeouts; stubbed
// answers for webhooks that are not running; and replay of recorded
// requests against another endpoint.
//
// The hook into upstream is upstream's own: the validating and mutating
// webhook plugins build their REST clients through an
// AuthenticationInfoResolver that SetAuthenticationInfoResolverWrapper can
// wrap; Decorator (an admission decorator, so it runs after upstream's
// initializers) wraps it with a rest.Config transport wrapper, Transport.
// Upstream shares one client among webhooks of the same URL and CA and does
// not tell it which webhook it calls, but its dispatchers start an
// OpenTelemetry span per call with the configuration, webhook and request
// UID as attributes, through the tracer provider of the span in the
// request's context; Decorator gives each request such a span (see
// identity.go), so Transport knows the webhook of every call.
package webhooks
