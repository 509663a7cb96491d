// Package check runs objects through a real admission chain with
// server-side dry-run and says, for each, whether it was allowed, denied
// or warned about, and by which policy, binding, constraint or webhook.
// It is the library behind `gatehouse check`; the chain it talks to is
// usually an ephemeral control plane (controlplane.StartEphemeral) loaded
// with the user's policies, so a verdict here is admission's verdict.
//
// Usage:
//
//	inputs, errs := check.ReadPaths([]string{"manifests/"}, os.Stdin)
//	checker, _ := check.NewChecker(restConfig)
//	_ = checker.Prepare(ctx, inputs, check.Options{NamespaceLabels: labels}) // namespaces, existing objects
//	// ... apply the policies ...
//	results := checker.Run(ctx, inputs)
//	_ = check.Write(os.Stdout, "table", results)
package check
