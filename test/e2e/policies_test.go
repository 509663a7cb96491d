package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// policyFiles is the --policies directory of TestPoliciesDir. The files are
// applied in lexical order except that Namespaces go first: the ConfigMap in
// a-settings.yaml lives in the namespace z-namespace.yaml creates.
var policyFiles = map[string]string{
	"a-settings.yaml": settingsConfigMap("blue"),
	"b-broken.yaml": `
apiVersion: v1
kind: ConfigMap
metadata:
  name: e2e-before-broken
  namespace: default
data:
  fine: "yes"
---
# broken: data must be a map of strings, not a list
apiVersion: v1
kind: ConfigMap
metadata:
  name: e2e-broken
  namespace: default
data:
- not
- a map
`,
	"c-vap.yaml": `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: e2e-dir-policy
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["pods"]
  validations:
  - expression: "object.spec.containers.all(c, !c.image.endsWith(':latest'))"
    message: "images must not use the :latest tag"
`,
	"z-namespace.yaml": `
apiVersion: v1
kind: Namespace
metadata:
  name: e2e-policies
`,
}

func settingsConfigMap(color string) string {
	return `
apiVersion: v1
kind: ConfigMap
metadata:
  name: e2e-settings
  namespace: e2e-policies
data:
  color: ` + color + `
`
}

// TestPoliciesDir runs gatehouse with --policies: the directory is applied
// before the ready line, a broken document is reported and skipped, and an
// edited file is applied again.
func TestPoliciesDir(t *testing.T) {
	dir := t.TempDir()
	for name, content := range policyFiles {
		replaceFile(t, filepath.Join(dir, name), content)
	}
	inst := startGatehouse(t, "--policies", dir)
	core := inst.client.CoreV1()

	// No polling: the ready line promises the directory was applied.
	t.Run("good documents are applied before ready", func(t *testing.T) {
		if _, err := inst.client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(t.Context(), "e2e-dir-policy", metav1.GetOptions{}); err != nil {
			t.Errorf("ValidatingAdmissionPolicy e2e-dir-policy from c-vap.yaml: %v", err)
		}
		if _, err := core.Namespaces().Get(t.Context(), "e2e-policies", metav1.GetOptions{}); err != nil {
			t.Errorf("Namespace e2e-policies from z-namespace.yaml: %v", err)
		}
		if cm, err := core.ConfigMaps("e2e-policies").Get(t.Context(), "e2e-settings", metav1.GetOptions{}); err != nil {
			t.Errorf("ConfigMap e2e-policies/e2e-settings from a-settings.yaml (its namespace comes from a later file, so Namespaces must be applied first): %v", err)
		} else if cm.Data["color"] != "blue" {
			t.Errorf("ConfigMap e2e-policies/e2e-settings has data %v, want color=blue", cm.Data)
		}
		if _, err := core.ConfigMaps("default").Get(t.Context(), "e2e-before-broken", metav1.GetOptions{}); err != nil {
			t.Errorf("ConfigMap default/e2e-before-broken, document 1 of b-broken.yaml: %v", err)
		}
	})

	t.Run("broken document is reported and skipped", func(t *testing.T) {
		_, err := core.ConfigMaps("default").Get(t.Context(), "e2e-broken", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("ConfigMap default/e2e-broken (data is a list): got err %v, want NotFound", err)
		}
		stderr := inst.stderr()
		var found bool
		for line := range strings.SplitSeq(stderr, "\n") {
			if strings.Contains(line, "b-broken.yaml") && strings.Contains(line, "document 2") {
				found = true
				t.Logf("reported: %s", line)
			}
		}
		if !found {
			t.Errorf("stderr has no line naming b-broken.yaml and \"document 2\" (like \"b-broken.yaml: document 2: <error>\"); stderr:\n%s", stderr)
		}
	})

	t.Run("edited file is applied again", func(t *testing.T) {
		replaceFile(t, filepath.Join(dir, "a-settings.yaml"), settingsConfigMap("green"))
		poll(t, 15*time.Second, func() error {
			cm, err := core.ConfigMaps("e2e-policies").Get(t.Context(), "e2e-settings", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cm.Data["color"] != "green" {
				return fmt.Errorf("ConfigMap e2e-policies/e2e-settings has data %v after a-settings.yaml was edited, want color=green", cm.Data)
			}
			return nil
		})
	})
}

// replaceFile writes path atomically, so a rescan never reads half a file.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
