package policytest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/junit"
)

// Totals counts cases over suites.
type Totals struct{ Passed, Failed, Skipped int }

// Count adds up the cases of results.
func Count(results []SuiteResult) Totals {
	var t Totals
	for _, s := range results {
		for _, c := range s.Cases {
			switch {
			case c.Skipped:
				t.Skipped++
			case len(c.Failures) > 0:
				t.Failed++
			default:
				t.Passed++
			}
		}
	}
	return t
}

func (t Totals) String() string {
	s := fmt.Sprintf("%d passed, %d failed", t.Passed, t.Failed)
	if t.Skipped > 0 {
		s += fmt.Sprintf(", %d skipped", t.Skipped)
	}
	return s
}

// Write prints results as go test does: with verbose a line as each case
// runs and ends; always the failures with what was expected and what
// came; a line per suite (ok or FAIL); and last "N passed, N failed".
func Write(w io.Writer, results []SuiteResult, verbose bool) error {
	var b strings.Builder
	for _, s := range results {
		for _, c := range s.Cases {
			switch {
			case c.Skipped:
				if verbose {
					fmt.Fprintf(&b, "=== RUN   %s\n--- SKIP: %s (0.00s)\n", c.Name(), c.Name())
				}
			case len(c.Failures) == 0:
				if verbose {
					fmt.Fprintf(&b, "=== RUN   %s\n--- PASS: %s (%.2fs)\n", c.Name(), c.Name(), c.Duration.Seconds())
				}
			default:
				if verbose {
					fmt.Fprintf(&b, "=== RUN   %s\n", c.Name())
				}
				fmt.Fprintf(&b, "--- FAIL: %s (%.2fs)\n", c.Name(), c.Duration.Seconds())
				for _, f := range c.Failures {
					// Continuation lines (OPA's messages span several)
					// stay under the failure they belong to.
					f = strings.ReplaceAll(strings.TrimRight(f, "\n"), "\n", "\n        ")
					fmt.Fprintf(&b, "    %s: %s\n", s.Path, f)
				}
				if c.Case != "" {
					if len(c.Violations) == 0 {
						b.WriteString("    violations: none\n")
					} else {
						b.WriteString("    violations:\n")
						for _, v := range c.Violations {
							fmt.Fprintf(&b, "      %s\n", v)
						}
					}
				}
			}
		}
		status := "ok  "
		if s.Failed() {
			status = "FAIL"
		}
		fmt.Fprintf(&b, "%s\t%s\t%.3fs\n", status, s.Path, s.Duration.Seconds())
	}
	fmt.Fprintf(&b, "%s\n", Count(results))
	_, err := io.WriteString(w, b.String())
	return err
}

// Uncovered lists, by suite, the policies and constraints no case made
// speak (report a violation, deny or warn).
func Uncovered(results []SuiteResult) []string {
	var out []string
	for _, s := range results {
		for _, p := range slices.Sorted(maps.Keys(s.Policies)) {
			if !s.Policies[p] {
				out = append(out, s.Path+": "+p)
			}
		}
	}
	return out
}

// WriteCoverage prints how many constraints the cases exercised and which
// they did not.
func WriteCoverage(w io.Writer, results []SuiteResult) error {
	total := 0
	for _, s := range results {
		total += len(s.Policies)
	}
	un := Uncovered(results)
	var b strings.Builder
	fmt.Fprintf(&b, "coverage: %d of %d policies and constraints made to speak by some case\n", total-len(un), total)
	for _, u := range un {
		fmt.Fprintf(&b, "  not exercised: %s\n", u)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJUnit writes results as JUnit XML: a testsuite per suite file, a
// testcase per case.
func WriteJUnit(w io.Writer, results []SuiteResult) error {
	var report junit.Report
	for _, s := range results {
		js := junit.Suite{Name: s.Path, Time: fmt.Sprintf("%.3f", s.Duration.Seconds())}
		for _, c := range s.Cases {
			jc := junit.Case{Name: c.Name(), Classname: s.Path, Time: fmt.Sprintf("%.3f", c.Duration.Seconds())}
			switch {
			case c.Skipped:
				jc.Skipped = &struct{}{}
			case len(c.Failures) > 0:
				text := strings.Join(c.Failures, "\n")
				if len(c.Violations) > 0 {
					text += "\nviolations:\n" + strings.Join(c.Violations, "\n")
				}
				jc.Failure = &junit.Message{Message: c.Failures[0], Text: text}
			}
			js.Cases = append(js.Cases, jc)
		}
		report.Suites = append(report.Suites, js)
	}
	return junit.Write(w, report)
}
