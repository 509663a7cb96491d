package e2e

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPolicyTestCommand drives gatehouse test on the gator suites of
// policytest/testdata: passing and failing suites, -run, -v, --junit,
// --coverage and unreadable suites.
func TestPolicyTestCommand(t *testing.T) {
	suites := filepath.Join("..", "..", "policytest", "testdata")

	t.Run("passing suites exit 0 with the totals last", func(t *testing.T) {
		stdout, stderr, code := runGatehouse(t, time.Minute, "test", filepath.Join(suites, "gator"))
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if code != 0 || lines[len(lines)-1] != "11 passed, 0 failed, 1 skipped" {
			t.Errorf("exit %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})

	t.Run("failures exit 1 and say what was expected and what came", func(t *testing.T) {
		junit := filepath.Join(t.TempDir(), "report.xml")
		stdout, stderr, code := runGatehouse(t, time.Minute, "test", filepath.Join(suites, "failing"), "-junit", junit, "--coverage")
		for _, want := range []string{
			"--- FAIL: wrong-expectations/expects-two",
			"assertion 1 (violations: 2): got 1 violations, want exactly 2",
			`[K8sRequiredLabels must-have-owner-and-team] you must provide labels: {"owner", "team"}`,
			"template k8sbroken: 1 error occurred: k8sbroken.rego:5",
			"1 passed, 6 failed",
			"coverage: 1 of 1 policies and constraints",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, stdout)
			}
		}
		if code != 1 {
			t.Errorf("exit %d, want 1; stderr:\n%s", code, stderr)
		}
		data, err := os.ReadFile(junit)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Suites []struct {
				Failures int `xml:"failures,attr"`
			} `xml:"testsuite"`
		}
		if err := xml.Unmarshal(data, &doc); err != nil || len(doc.Suites) != 1 || doc.Suites[0].Failures != 6 {
			t.Errorf("--junit report %+v (%v):\n%s", doc, err, data)
		}
	})

	t.Run("-run selects cases and -v lists them", func(t *testing.T) {
		stdout, _, code := runGatehouse(t, time.Minute, "test", filepath.Join(suites, "gator"), "-run", "required-labels/bare", "-v")
		if code != 0 || !strings.Contains(stdout, "--- PASS: required-labels/bare-namespace") || strings.Contains(stdout, "labelled-namespace") {
			t.Errorf("exit %d; stdout:\n%s", code, stdout)
		}
	})

	t.Run("a PolicyTest runs through the admission chain", func(t *testing.T) {
		stdout, stderr, code := runGatehouse(t, 2*time.Minute, "test", filepath.Join(suites, "policytest"), "-v", "--coverage")
		for _, want := range []string{"--- PASS: shop/scale-down-by-sre", "--- PASS: shop/delete-protected", "7 passed, 0 failed", "coverage: 4 of 4 policies and constraints"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s\nstderr:\n%s", want, stdout, stderr)
			}
		}
		if code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
	})

	t.Run("a PolicyTest stubs external data providers", func(t *testing.T) {
		stdout, stderr, code := runGatehouse(t, 2*time.Minute, "test", filepath.Join(suites, "externaldata"), "-v")
		for _, want := range []string{"--- PASS: external-data/signed-image-pinned-to-its-digest", "--- PASS: external-data/image-the-digest-provider-does-not-know", "4 passed, 0 failed"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s\nstderr:\n%s", want, stdout, stderr)
			}
		}
		if code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
	})

	t.Run("a failing PolicyTest says what was expected and who spoke", func(t *testing.T) {
		dir := t.TempDir()
		policies, err := filepath.Abs(filepath.Join(suites, "policytest", "policies"))
		if err != nil {
			t.Fatal(err)
		}
		suite := `apiVersion: gatehouse.dev/v1alpha1
kind: PolicyTest
metadata:
  name: wrong
policies: [` + policies + `]
cases:
- name: wants-allowed
  object:
    apiVersion: v1
    kind: Namespace
    metadata: {name: no-owner}
  expect:
    allowed: true
- name: wants-a-label
  object:
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: c, namespace: default}
  expect:
    object:
      metadata:
        labels: {team: x}
`
		if err := os.WriteFile(filepath.Join(dir, "suite.yaml"), []byte(suite), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := runGatehouse(t, 2*time.Minute, "test", dir)
		for _, want := range []string{
			"--- FAIL: wrong/wants-allowed",
			`want allowed, got denied: admission webhook "validation.gatekeeper.sh" denied the request: [namespaces-need-owner] you must provide labels: {"owner"}`,
			`deny  Constraint namespaces-need-owner: you must provide labels: {"owner"}`,
			"--- FAIL: wrong/wants-a-label",
			"object: metadata.labels: missing",
			"0 passed, 2 failed",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s\nstderr:\n%s", want, stdout, stderr)
			}
		}
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
	})

	t.Run("a suite that cannot be read exits 2 naming it", func(t *testing.T) {
		dir := t.TempDir()
		bad := filepath.Join(dir, "suite.yaml")
		if err := os.WriteFile(bad, []byte("kind: Suite\napiVersion: test.gatekeeper.sh/v1alpha1\ntests:\n- name: x\n  tempalte: t.yaml\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := runGatehouse(t, time.Minute, "test", dir)
		if code != 2 || !strings.Contains(stderr, "suite.yaml:1: Suite") || !strings.Contains(stderr, `unknown field "tests[0].tempalte"`) {
			t.Errorf("exit %d; stderr:\n%s", code, stderr)
		}
		_, stderr, code = runGatehouse(t, time.Minute, "test", filepath.Join(dir, "nothing-here"))
		if code != 2 || !strings.Contains(stderr, "nothing-here: no such file or directory") {
			t.Errorf("missing path: exit %d; stderr:\n%s", code, stderr)
		}
	})
}
