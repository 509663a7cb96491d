// Package cabundle is the GatehouseCABundleInjection admission plugin: it
// fills in the caBundle of every webhook of Validating and Mutating
// WebhookConfigurations annotated gatehouse.dev/inject-ca-bundle: "true"
// with the Gatehouse CA (the one 'gatehouse webhook certs' signs serving
// certificates from), for url and service references alike, so that no
// one base64-encodes a CA by hand. Gatekeeper external data Providers
// annotated the same way get their spec.caBundle filled in too. It also refuses a gatehouse.dev/fault
// annotation that does not parse (see package webhooks), so that a fault
// that would silently not apply is never stored.
package cabundle
