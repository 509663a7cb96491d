// Package policytest finds and runs policy test suites, for `gatehouse
// test`:
//
//   - Gatekeeper's gator Suites (test.gatekeeper.sh/v1alpha1, kind Suite),
//     with gator verify's semantics: each test compiles a template and
//     validates a constraint against the template's schema; each case
//     reviews one object (or an AdmissionReview) the way gator does, as an
//     existing object with no operation, with its inventory, and counts the
//     violations that match each assertion. The template, constraint and
//     review go through Gatehouse's own Gatekeeper engine
//     (admission/constraint), the one its admission chain runs.
//
// Results print like `go test` (Write), as JUnit XML (WriteJUnit), and say
// which constraints no case made speak (Coverage).
//
// Usage:
//
//	suites, err := policytest.Find(os.DirFS("/"), []string{"/abs/path/policies"})
//	runner := &policytest.Runner{FS: fsys, Filter: regexp.MustCompile("allowed")}
//	var results []policytest.SuiteResult
//	for _, s := range suites {
//		results = append(results, runner.Run(ctx, s))
//	}
//	policytest.Write(os.Stdout, results, verbose)
package policytest
