// Package admission owns the order of Gatehouse's admission chain: upstream
// kube-apiserver's plugins in upstream's order, with Gatehouse's own plugins
// (Rego constraints, Gatekeeper mutators) inserted at fixed points, and the
// set of plugins that is on by default.
//
// There is exactly one ordered list (Chain); everything that registers a
// plugin goes through it, and Configure refuses to start an API server whose
// registered plugins and ordered list disagree.
//
//	s := options.NewServerRunOptions() // kube-apiserver's
//	if err := admission.Configure(s.Admission); err != nil { ... }
package admission
