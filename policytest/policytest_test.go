package policytest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

var updateGolden = os.Getenv("GATEHOUSE_UPDATE_GOLDEN") != ""

// durations are the timings in the output, which vary.
var durations = regexp.MustCompile(`\(\d+\.\d+s\)|\t\d+\.\d+s|time="[0-9.]+"`)

func golden(t *testing.T, name, got string) {
	t.Helper()
	got = durations.ReplaceAllString(got, "X")
	path := filepath.Join("testdata", "golden", name)
	if updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (GATEHOUSE_UPDATE_GOLDEN=1 creates it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func run(t *testing.T, filter *regexp.Regexp, paths ...string) []SuiteResult {
	t.Helper()
	fsys := os.DirFS(".")
	found, err := Find(fsys, paths)
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{FS: fsys, Filter: filter}
	var out []SuiteResult
	for _, s := range found.Suites {
		out = append(out, r.Run(context.Background(), s))
	}
	return out
}

// TestGatorSuites runs suites written for every engine (Rego v0, CEL with
// a Rego twin, referential Rego with inventory) and every assertion form
// (yes, no, a count, a message pattern, with and without a count), an
// AdmissionReview object, an invalid constraint, a skipped case.
func TestGatorSuites(t *testing.T) {
	results := run(t, nil, "testdata/gator")
	if len(results) != 3 {
		t.Fatalf("found %d suites, want 3", len(results))
	}
	for _, s := range results {
		for _, c := range s.Cases {
			if len(c.Failures) > 0 {
				t.Errorf("%s %s: %v (violations %v)", s.Path, c.Name(), c.Failures, c.Violations)
			}
		}
	}
	if got, want := Count(results).String(), "11 passed, 0 failed, 1 skipped"; got != want {
		t.Errorf("totals %q, want %q", got, want)
	}
	var out bytes.Buffer
	if err := Write(&out, results, true); err != nil {
		t.Fatal(err)
	}
	golden(t, "gator-verbose.txt", out.String())
}

func TestFailingSuite(t *testing.T) {
	results := run(t, nil, "testdata/failing/suite.yaml")
	var out bytes.Buffer
	if err := Write(&out, results, false); err != nil {
		t.Fatal(err)
	}
	golden(t, "failing.txt", out.String())
	out.Reset()
	if err := WriteJUnit(&out, results); err != nil {
		t.Fatal(err)
	}
	golden(t, "failing.junit.xml", out.String())
	if got, want := Count(results).String(), "1 passed, 6 failed"; got != want {
		t.Errorf("totals %q, want %q", got, want)
	}
	out.Reset()
	if err := WriteCoverage(&out, results); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "coverage: 1 of 1 policies and constraints") {
		t.Errorf("coverage:\n%s", out.String())
	}
}

func TestFilter(t *testing.T) {
	results := run(t, regexp.MustCompile(`required-labels/bare`), "testdata/gator/requiredlabels")
	var names []string
	for _, c := range results[0].Cases {
		names = append(names, c.Name())
	}
	if got := strings.Join(names, ","); got != "required-labels/bare-namespace" {
		t.Errorf("-run required-labels/bare ran %s", got)
	}
}

func TestCoverage(t *testing.T) {
	results := run(t, regexp.MustCompile(`labelled`), "testdata/gator/requiredlabels")
	un := Uncovered(results)
	if len(un) != 1 || !strings.Contains(un[0], "required-labels: K8sRequiredLabels must-have-owner-and-team") {
		t.Errorf("uncovered = %v, want the required-labels constraint (only an allowed case ran)", un)
	}
}

func TestFindErrors(t *testing.T) {
	fsys := fstest.MapFS{
		"bad/suite.yaml":    {Data: []byte("kind: Suite\napiVersion: test.gatekeeper.sh/v1alpha1\ntests:\n- name: x\n  templat: t.yaml\n")},
		"broken/suite.yaml": {Data: []byte("kind: Suite\napiVersion: test.gatekeeper.sh/v1alpha1\ntests: [\n")},
		"other/notes.yaml":  {Data: []byte("this: [is not: valid\n")},
		"count/suite.yaml":  {Data: []byte("kind: Suite\napiVersion: test.gatekeeper.sh/v1alpha1\ntests:\n- name: x\n  cases:\n  - name: c\n    object: o.yaml\n    assertions:\n    - violations: maybe\n")},
	}
	_, err := Find(fsys, []string{"."})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`bad/suite.yaml:1: Suite : strict decoding error: unknown field "tests[0].templat"`,
		"broken/suite.yaml: yaml: line 3: did not find expected node content",
		`count/suite.yaml:1: Suite : tests[0].cases[0].assertions[0]: violations: "maybe": must be a nonnegative integer, yes or no`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "notes.yaml") {
		t.Errorf("a YAML file that is no suite was reported:\n%v", err)
	}
	if _, err := Find(fsys, []string{"other/notes.yaml"}); err == nil {
		t.Error("a named file that is no suite was accepted")
	}
}
