package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/policytest"
)

func newTestCommand() *cobra.Command {
	var (
		run       string
		verbose   bool
		junitPath string
		coverage  bool
	)
	cmd := &cobra.Command{
		Use:   "test [PATH...]",
		Short: "Run policy test suites (Gatekeeper gator Suites)",
		Long: `Find the test suites under PATH (files, or directories walked recursively;
default: the current directory) and run them.

Gatekeeper gator verify Suites (apiVersion test.gatekeeper.sh/v1alpha1,
kind Suite) run with gator's semantics, so an existing Gatekeeper policy
repository tests unchanged: each test compiles its template and validates its
constraint against the template's schema, each case reviews its object (or
AdmissionReview) with its inventory and checks its assertions (violations:
yes, no or a count, optionally of the violations whose message matches a
pattern). Templates and constraints run on Gatehouse's own Gatekeeper engine,
the one its admission chain uses.

Output is like go test: failures with what was expected and what came (each
violation with the constraint that reported it), a line per suite, and last
"N passed, N failed". -v shows every case.

Exit status: 0 when every case passed, 1 when any failed, 2 for usage errors
or suites that cannot be read.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var filter *regexp.Regexp
			if run != "" {
				re, err := regexp.Compile(run)
				if err != nil {
					return usageErrorf("-run %q: %v", run, err)
				}
				filter = re
			}
			if len(args) == 0 {
				args = []string{"."}
			}
			// Suites name their files relative to themselves; the FS
			// is rooted at / so that absolute and relative paths work.
			var roots []string
			for _, a := range args {
				abs, err := filepath.Abs(a)
				if err != nil {
					return usageErrorf("%s: %v", a, err)
				}
				roots = append(roots, strings.TrimPrefix(filepath.ToSlash(abs), "/"))
			}
			fsys := os.DirFS("/")
			suites, err := policytest.Find(fsys, roots)
			if err != nil {
				return usageError{relativeTo(err)}
			}
			if len(suites) == 0 {
				return usageErrorf("no test suites under %s", strings.Join(args, ", "))
			}
			runner := &policytest.Runner{FS: fsys, Filter: filter}
			var results []policytest.SuiteResult
			for _, s := range suites {
				res := runner.Run(cmd.Context(), s)
				res.Path = displayPath(res.Path)
				for i := range res.Cases {
					for j, f := range res.Cases[i].Failures {
						res.Cases[i].Failures[j] = relativeTo(errors.New(f)).Error()
					}
				}
				results = append(results, res)
			}
			out := cmd.OutOrStdout()
			if err := policytest.Write(out, results, verbose); err != nil {
				return err
			}
			if coverage {
				if err := policytest.WriteCoverage(out, results); err != nil {
					return err
				}
			}
			if junitPath != "" {
				f, err := os.Create(junitPath)
				if err != nil {
					return fmt.Errorf("--junit: %w", err)
				}
				werr := policytest.WriteJUnit(f, results)
				if cerr := f.Close(); werr == nil {
					werr = cerr
				}
				if werr != nil {
					return fmt.Errorf("--junit %s: %w", junitPath, werr)
				}
			}
			if policytest.Count(results).Failed > 0 {
				return failedError{}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&run, "run", "", "run only the cases whose test/case name matches this regular expression")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every case, not only failures")
	cmd.Flags().StringVar(&junitPath, "junit", "", "also write the results as JUnit XML to this file")
	cmd.Flags().BoolVar(&coverage, "coverage", false, "list the constraints that no case made report a violation")
	return cmd
}

// displayPath shows a path of the / FS relative to the working directory
// when it is under it.
func displayPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return "/" + p
	}
	rel, err := filepath.Rel(wd, "/"+p)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "/" + p
	}
	return rel
}

// goTestFlags are the flags go test users type with one dash.
var goTestFlags = []string{"run", "v", "junit", "coverage"}

// goTestStyle lets `gatehouse test` take go test's single-dash flags
// (-run X, -junit=f) as well as the double-dash ones.
func goTestStyle(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && len(name) > 1 && slices.Contains(goTestFlags, name) {
			out[i] = "-" + a
		}
	}
	return out
}

// relativeTo rewrites the absolute paths of Find's errors for display.
func relativeTo(err error) error {
	wd, werr := os.Getwd()
	if werr != nil {
		return err
	}
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), strings.TrimPrefix(wd, "/")+"/", ""))
}
