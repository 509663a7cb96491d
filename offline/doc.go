// Package offline runs Gatehouse's admission chain without a cluster, for
// `gatehouse check` and `gatehouse test`: a Session is an ephemeral control
// plane (controlplane.StartEphemeral) loaded with a set of policies and
// waited on until they are all in force, so that what a dry-run against it
// answers is what admission in a cluster with those policies answers.
//
// Usage:
//
//	s, err := offline.Start(ctx, offline.Options{LogDir: dir, Logger: logger})
//	defer s.Close()
//	checker, _ := check.NewChecker(s.Admin(), check.Options{})
//	_ = checker.Prepare(ctx, inputs, nil)
//	_ = s.ApplyPolicies(ctx, checker, "policies/")
//	results := checker.Run(ctx, inputs)
package offline
