package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
		// internalSuite is set in the child process that runs one
		// PolicyTest suite.
		internalSuite string
	)
	cmd := &cobra.Command{
		Use:   "test [PATH...]",
		Short: "Run policy test suites (Gatekeeper gator Suites, Gatehouse PolicyTests)",
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

PolicyTest suites (apiVersion gatehouse.dev/v1alpha1, kind PolicyTest; see
docs/policytest.md) test policies of every engine together: each suite runs
in its own ephemeral control plane, its cases sent through the whole
admission chain with server-side dry-run, as their user, asserting allowed or
denied, the message, warnings and the object admission produced.

Output is like go test: failures with what was expected and what came (each
violation with the constraint that reported it), a line per suite, and last
"N passed, N failed". -v shows every case.

Exit status: 0 when every case passed, 1 when any failed, 2 for usage errors
or suites that cannot be read.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if internalSuite != "" {
				return runPolicyTestChild(cmd, internalSuite, run)
			}
			filter, err := compileRun(run)
			if err != nil {
				return err
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
			found, err := policytest.Find(fsys, roots)
			if err != nil {
				return usageError{relativeTo(err)}
			}
			if found.Empty() {
				return usageErrorf("no test suites under %s", strings.Join(args, ", "))
			}
			runner := &policytest.Runner{FS: fsys, Filter: filter}
			var results []policytest.SuiteResult
			for _, s := range found.Suites {
				res := runner.Run(cmd.Context(), s)
				res.Path = displayPath(res.Path)
				results = append(results, res)
			}
			// PolicyTest suites run through a whole admission chain: each
			// in its own ephemeral control plane, in a child process (the
			// upstream API server starts once per process).
			for _, t := range found.PolicyTests {
				res := runPolicyTestInChild(cmd, "/"+t.Path, run)
				res.Path = displayPath(t.Path)
				results = append(results, res)
			}
			for _, res := range results {
				for i := range res.Cases {
					for j, f := range res.Cases[i].Failures {
						res.Cases[i].Failures[j] = relativeTo(errors.New(f)).Error()
					}
				}
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
	cmd.Flags().BoolVar(&coverage, "coverage", false, "list the policies and constraints that no case made speak")
	cmd.Flags().StringVar(&internalSuite, "internal-policytest", "", "run one PolicyTest suite and print its result as JSON (used by gatehouse test itself)")
	_ = cmd.Flags().MarkHidden("internal-policytest")
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

// runPolicyTestInChild runs one PolicyTest suite in a child gatehouse
// process and reads its result.
func runPolicyTestInChild(cmd *cobra.Command, suite, run string) policytest.SuiteResult {
	failed := func(err error) policytest.SuiteResult {
		return policytest.SuiteResult{Path: suite, Cases: []policytest.CaseResult{{Test: filepath.Base(suite), Failures: []string{err.Error()}}}}
	}
	self, err := os.Executable()
	if err != nil {
		return failed(err)
	}
	child := exec.CommandContext(cmd.Context(), self, "test", "--internal-policytest", suite, "--run", run)
	var stdout, stderr strings.Builder
	child.Stdout, child.Stderr = &stdout, &stderr
	if err := child.Run(); err != nil {
		return failed(fmt.Errorf("running the suite: %v: %s", err, strings.TrimSpace(stderr.String())))
	}
	var res policytest.SuiteResult
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		return failed(fmt.Errorf("reading the suite's result: %v", err))
	}
	return res
}

// runPolicyTestChild is the child's side: one suite, its result as JSON.
func runPolicyTestChild(cmd *cobra.Command, suite, run string) error {
	filter, err := compileRun(run)
	if err != nil {
		return err
	}
	fsys := os.DirFS("/")
	name := strings.TrimPrefix(filepath.ToSlash(suite), "/")
	found, err := policytest.Find(fsys, []string{name})
	if err != nil {
		return usageError{err}
	}
	if len(found.PolicyTests) != 1 {
		return usageErrorf("%s: want one PolicyTest, found %d", suite, len(found.PolicyTests))
	}
	session, _, err := startOffline(cmd.Context(), cmd.ErrOrStderr(), 0, nil, "")
	if err != nil {
		return err
	}
	res := session.RunPolicyTest(cmd.Context(), fsys, found.PolicyTests[0], filter)
	session.Close()
	return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
}

// compileRun compiles -run; "" selects everything (nil).
func compileRun(run string) (*regexp.Regexp, error) {
	if run == "" {
		return nil, nil
	}
	re, err := regexp.Compile(run)
	if err != nil {
		return nil, usageErrorf("-run %q: %v", run, err)
	}
	return re, nil
}
