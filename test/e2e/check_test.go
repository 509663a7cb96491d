package e2e

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// updateGolden rewrites the golden files instead of comparing with them:
// GATEHOUSE_UPDATE_GOLDEN=1 go test ./test/e2e -run TestCheck
var updateGolden = os.Getenv("GATEHOUSE_UPDATE_GOLDEN") != ""

// junitTimes are the durations in JUnit output, which vary.
var junitTimes = regexp.MustCompile(`time="[0-9.]+"`)

// golden compares got with testdata/check/golden/name.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "check", "golden", name)
	if updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with GATEHOUSE_UPDATE_GOLDEN=1 to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestCheck runs gatehouse check on a set of policies of every engine
// (ValidatingAdmissionPolicy, MutatingAdmissionPolicy, Gatekeeper deny and
// warn constraints) and objects that each meet a different one.
func TestCheck(t *testing.T) {
	args := []string{"check", "-f", "testdata/check/objects.yaml", "--policies", "testdata/check/policies",
		"--existing", "testdata/check/existing.yaml", "--namespace-labels", "prod=env=prod", "--show-mutations"}

	for _, format := range []string{"table", "json", "yaml", "junit"} {
		t.Run("output "+format, func(t *testing.T) {
			stdout, stderr, code := runGatehouse(t, 2*time.Minute, append(args, "-o", format)...)
			if code != 1 {
				t.Fatalf("exit %d, want 1 (objects are denied); stderr:\n%s", code, stderr)
			}
			if stderr != "" {
				t.Errorf("stderr is not empty:\n%s", stderr)
			}
			switch format {
			case "json":
				var doc struct {
					Results []struct{ Verdict string }
					Summary struct{ Total, Denied int }
				}
				if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
					t.Fatalf("-o json is not JSON: %v\n%s", err, stdout)
				}
				if doc.Summary.Total != 7 || doc.Summary.Denied != 4 {
					t.Errorf("summary %+v, want 7 objects, 4 denied", doc.Summary)
				}
			case "junit":
				var doc struct {
					Suites []struct {
						Tests    int `xml:"tests,attr"`
						Failures int `xml:"failures,attr"`
					} `xml:"testsuite"`
				}
				if err := xml.Unmarshal([]byte(stdout), &doc); err != nil {
					t.Fatalf("-o junit is not XML: %v\n%s", err, stdout)
				}
				if len(doc.Suites) != 1 || doc.Suites[0].Tests != 7 || doc.Suites[0].Failures != 4 {
					t.Errorf("junit suites %+v, want one with 7 tests, 4 failures", doc.Suites)
				}
				stdout = junitTimes.ReplaceAllString(stdout, `time="X"`)
			}
			golden(t, "objects."+format, stdout)
		})
	}

	t.Run("everything allowed exits 0, from stdin", func(t *testing.T) {
		cmd := []string{"check", "-f", "-", "--policies", "testdata/check/policies"}
		stdout, stderr, code := runGatehouseIn(t, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n", cmd...)
		if code != 0 || !strings.Contains(stdout, "ALLOWED   ConfigMap default/settings   CREATE      -:1") {
			t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})

	t.Run("webhook configurations are awaited and called", func(t *testing.T) {
		dir := t.TempDir()
		hooks := `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: unreachable
webhooks:
- name: fails.example.com
  rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE"]
    resources: ["configmaps"]
  objectSelector:
    matchLabels: {hooked: "yes"}
  clientConfig:
    url: https://127.0.0.1:1/validate
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 1
  admissionReviewVersions: ["v1"]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: ignored
webhooks:
- name: ignored.example.com
  rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE"]
    resources: ["configmaps"]
  clientConfig:
    url: https://127.0.0.1:1/mutate
  sideEffects: None
  failurePolicy: Ignore
  timeoutSeconds: 1
  admissionReviewVersions: ["v1"]
`
		if err := os.WriteFile(filepath.Join(dir, "hooks.yaml"), []byte(hooks), 0o644); err != nil {
			t.Fatal(err)
		}
		objects := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hooked\n  labels: {hooked: \"yes\"}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n"
		stdout, stderr, code := runGatehouseIn(t, objects, "check", "-f", "-", "--policies", dir)
		if code != 1 || !strings.Contains(stdout, "DENIED    ConfigMap default/hooked") || !strings.Contains(stdout, `error  Webhook fails.example.com:`) || !strings.Contains(stdout, "ALLOWED   ConfigMap default/plain") {
			t.Errorf("exit %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})

	t.Run("external data providers stubbed", func(t *testing.T) {
		stubs := filepath.Join(t.TempDir(), "stubs.yaml")
		if err := os.WriteFile(stubs, []byte(`- provider: digests
  items:
  - {key: "registry.example/web:1", value: "registry.example/web@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
- provider: signatures
  items:
  - {key: "registry.example/web@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", error: "image is not signed"}
`), 0o644); err != nil {
			t.Fatal(err)
		}
		pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec:\n  containers: [{name: web, image: \"registry.example/web:1\"}]\n"
		stdout, stderr, code := runGatehouseIn(t, pod, "check", "-f", "-", "--policies", "../../policytest/testdata/externaldata/policies", "--stub-providers", stubs)
		if code != 1 || !strings.Contains(stdout, "DENIED   Pod shop/web") || !strings.Contains(stdout, "patch  Assign image-digests") || !strings.Contains(stdout, "image registry.example/web@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08: image is not signed") {
			t.Errorf("exit %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})

	t.Run("bad input exits 2 naming the fault", func(t *testing.T) {
		dir := t.TempDir()
		write := func(name, content string) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
		malformed := write("malformed.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b: c\n")
		unknown := write("unknown.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")
		brokenPolicies := filepath.Join(dir, "policies")
		if err := os.Mkdir(brokenPolicies, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(brokenPolicies, "t.yaml"), []byte(brokenTemplate), 0o644); err != nil {
			t.Fatal(err)
		}
		ok := write("ok.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n")
		for _, tc := range []struct {
			name string
			args []string
			want []string
		}{
			{"malformed YAML names file and line", []string{"-f", malformed}, []string{malformed + ": document 2: yaml: line 9: mapping values are not allowed"}},
			{"unknown kind names it", []string{"-f", unknown}, []string{unknown + ":1: unknown kind Widget (apiVersion example.com/v1)"}},
			{"missing file", []string{"-f", filepath.Join(dir, "nope.yaml")}, []string{"nope.yaml: no such file or directory"}},
			{"no -f", nil, []string{"-f: give at least one file"}},
			{"bad namespace labels", []string{"-f", ok, "--namespace-labels", "prod"}, []string{`--namespace-labels "prod": want NS=key=value`}},
			{"bad format", []string{"-f", ok, "-o", "xml"}, []string{`--output "xml"`}},
			{"template that does not compile", []string{"-f", ok, "--policies", brokenPolicies}, []string{"ConstraintTemplate k8sbroken", "k8sbroken.rego:5"}},
			{"provider stubs that do not parse", []string{"-f", ok, "--stub-providers", write("stubs.yaml", "- provider: p\n  items: [{key: a}]\n")}, []string{"--stub-providers " + dir + "/stubs.yaml: [0].items[0]: exactly one of value or error must be set"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, stderr, code := runGatehouse(t, 2*time.Minute, append([]string{"check"}, tc.args...)...)
				if code != 2 {
					t.Errorf("exit %d, want 2; stderr:\n%s", code, stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("stderr does not name %q:\n%s", w, stderr)
					}
				}
				if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
					t.Errorf("stderr has a stack trace:\n%s", stderr)
				}
			})
		}
	})
}
