// Package mutation implements Gatekeeper's mutators (mutations.gatekeeper.sh)
// with Gatekeeper's semantics, for the admission chain to apply in-process:
//
//   - Assign sets any field outside metadata, e.g. imagePullPolicy on every
//     container (spec.containers[name: *].imagePullPolicy) or a whole keyed
//     list element (spec.containers[name: sidecar]), which it adds when
//     missing.
//   - AssignMetadata adds a label or annotation; it never changes an
//     existing one.
//   - ModifySet merges values into a list, or prunes them from it, as a set.
//   - AssignImage replaces the domain, path and/or tag of an image.
//
// The pieces:
//   - Parse reads and validates a mutator object as Gatekeeper's webhook
//     does, naming the field at fault; ParsePath parses the location
//     language (spec.containers[name: foo].image, globs, quoted keys).
//   - System holds the mutators in force and applies those whose applyTo
//     and spec.match (constraint.Match, Gatekeeper's matcher) select an
//     object, in Gatekeeper's order, pass after pass until the object stops
//     changing, failing as Gatekeeper does when it never does. Mutators
//     whose locations disagree on a kind's schema are held back, as in
//     Gatekeeper.
//   - CRDs are the four CRDs with Gatekeeper's schema.
//
// assign.externalData (Assign, and AssignMetadata with dataSource
// Username) writes a provider's answer (see package externaldata): as in
// Gatekeeper, each such mutator leaves a placeholder, and once the mutators
// have converged every provider is called once with the distinct keys of
// its placeholders; failurePolicy says what a key without a value gets
// (Fail refuses the request, Ignore keeps the key, UseDefault writes
// default). Not supported: assignIf, which Gatekeeper itself removed.
//
// What is left to the admission plugin, as Gatekeeper's webhook does it:
// an error from Mutate (non-convergence, an external data failure) refuses
// the request in Gatekeeper's words ("admission webhook
// "mutation.gatekeeper.sh" denied the request: ..."), since that webhook
// answers with an error response rather than failing the call (a mutation
// that outlasts that webhook's 1 s timeout goes through unmutated, as its
// failurePolicy Ignore lets it); and it
// skips namespaces labelled admission.gatekeeper.sh/ignore,
// gatekeeper-system and the namespaces Gatekeeper's Config excludes from
// the mutation-webhook process (constraint.Exclusions).
//
// Usage:
//
//	sys := mutation.NewSystem()
//	m, err := mutation.Parse(assignObj) // e.g. from an informer
//	if err != nil { ... }               // "spec.location: ..."
//	if err := sys.Upsert(m); err != nil { ... } // a schema conflict: m is held back
//
//	changed, applied, err := sys.Mutate(&mutation.Request{
//		Operation:       admission.Create,
//		GVK:             schema.GroupVersionKind{Version: "v1", Kind: "Pod"},
//		Namespace:       "dev",
//		NamespaceObject: devNamespace, // for spec.match.namespaceSelector
//	}, pod) // pod is changed in place; applied = ["Assign//pull-always:1"]
package mutation
