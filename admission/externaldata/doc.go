// Package externaldata implements Gatekeeper's external data
// (externaldata.gatekeeper.sh Providers): policies that ask a service
// outside the cluster about the keys of a request, such as whether an
// image is signed or which digest a tag stands for.
//
// The pieces, with Gatekeeper's semantics:
//   - Parse reads and validates a Provider as Gatekeeper's webhook does
//     (https only, a caBundle that parses, a timeout that is not
//     negative), naming the field at fault; CRD is its CRD, v1beta1
//     stored and v1alpha1 deprecated.
//   - Client POSTs a ProviderRequest with the keys and reads the
//     ProviderResponse, over TLS 1.3, trusting only the provider's
//     caBundle and offering Gatehouse's client certificate when asked.
//   - System holds the Providers in force and answers the external_data
//     builtin of ConstraintTemplates' Rego (constraint.ExternalData), with
//     Gatekeeper's response cache (per provider and key, 3 minutes by
//     default, values and per-key errors), and the mutators'
//     assign.externalData (mutation.ExternalData: answers with a
//     systemError or not idempotent refused whole, string values only).
//     Each call is traced as a policy of kind Provider.
//   - NewSyncer fills a System from the cluster and writes each Provider's
//     status.byPod; the admission plugin (PluginName) refuses Providers
//     Gatekeeper would refuse.
//
// Usage:
//
//	sys := externaldata.NewSystem(&externaldata.Client{Certificate: cert}, externaldata.DefaultCacheTTL)
//	engine.SetExternalData(sys) // before templates are added
//	p, err := externaldata.Parse(providerObj)
//	if err != nil { ... } // "spec.url: only HTTPS scheme is supported for Providers ..."
//	sys.Upsert(p)
//
// A template then calls, as with Gatekeeper:
//
//	response := external_data({"provider": "my-provider", "keys": images})
//	count(response.system_error) > 0 # the provider could not answer
//	response.errors[_] = [key, msg]   # one key could not be answered
//	response.responses[_] = [key, value]
package externaldata
