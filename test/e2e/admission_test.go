package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// policyEnforcedTimeout bounds how long an admission policy takes from
// creation to enforcement: the plugins learn of policies from informers.
const policyEnforcedTimeout = 20 * time.Second

const noLatestMessage = "images must not use the :latest tag"

// noLatestPolicy forbids :latest images. Its bindings are namespace-scoped so
// that the Deny and Warn subtests do not see each other's binding.
const noLatestPolicy = `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: e2e-no-latest
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["pods"]
  validations:
  - expression: "object.spec.containers.all(c, !c.image.endsWith(':latest'))"
    message: "` + noLatestMessage + `"
`

// noLatestBinding binds noLatestPolicy in namespace ns with action.
func noLatestBinding(ns, action string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: e2e-no-latest-%[3]s
spec:
  policyName: e2e-no-latest
  validationActions: [%[2]s]
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: %[1]s
`, ns, action, strings.ToLower(action))
}

const mutatedLabel = "gatehouse.dev/mutated"

const addLabelPolicy = `
apiVersion: v1
kind: Namespace
metadata:
  name: e2e-mutate
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata:
  name: e2e-add-label
spec:
  failurePolicy: Fail
  reinvocationPolicy: Never
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["pods"]
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >-
        Object{metadata: Object.metadata{labels: {"gatehouse.dev/mutated": "true"}}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata:
  name: e2e-add-label
spec:
  policyName: e2e-add-label
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: e2e-mutate
`

// podManifest is a one-container pod.
func podManifest(name, image string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  containers:
  - name: app
    image: %s
`, name, image)
}

// TestAdmissionPolicies drives ValidatingAdmissionPolicy and
// MutatingAdmissionPolicy through kubectl. The subtests share an instance;
// every binding is limited to the subtest's own namespace.
func TestAdmissionPolicies(t *testing.T) {
	inst := startGatehouse(t)
	inst.mustKubectlIn(t, noLatestPolicy, "apply", "-f", "-")

	t.Run("validating policy denies", func(t *testing.T) {
		const ns = "e2e-deny"
		inst.mustKubectlIn(t, noLatestBinding(ns, "Deny"), "apply", "-f", "-")
		poll(t, policyEnforcedTimeout, func() error {
			stdout, stderr, err := inst.kubectl(t, "run", "myapp", "-n", ns, "--image", "nginx:latest", "--dry-run=server")
			if err == nil {
				return fmt.Errorf("kubectl run --image nginx:latest succeeded, want it denied with %q; stdout: %s", noLatestMessage, stdout)
			}
			if !strings.Contains(stderr, noLatestMessage) {
				return fmt.Errorf("kubectl run --image nginx:latest failed (%v) but its stderr does not contain %q:\n%s", err, noLatestMessage, stderr)
			}
			return nil
		})
		// Now that the policy is known to be enforced, a compliant pod
		// must still get through.
		if stdout, stderr, err := inst.kubectl(t, "run", "myapp", "-n", ns, "--image", "nginx:1.27", "--dry-run=server"); err != nil {
			t.Errorf("kubectl run --image nginx:1.27 failed (%v), want success; stdout: %s\nstderr: %s", err, stdout, stderr)
		}
	})

	t.Run("validating policy warns", func(t *testing.T) {
		const ns = "e2e-warn"
		inst.mustKubectlIn(t, noLatestBinding(ns, "Warn"), "apply", "-f", "-")
		pod := writeFile(t, "pod.yaml", podManifest("myapp", "nginx:latest"))
		poll(t, policyEnforcedTimeout, func() error {
			stdout, stderr, err := inst.kubectl(t, "create", "-n", ns, "-f", pod, "--dry-run=server")
			if err != nil {
				return fmt.Errorf("kubectl create of a :latest pod under a Warn binding failed (%v), want success with a warning:\n%s", err, stderr)
			}
			if !strings.Contains(stderr, "Warning:") || !strings.Contains(stderr, noLatestMessage) {
				return fmt.Errorf("kubectl create succeeded (%s) but stderr has no \"Warning:\" with %q:\n%s", strings.TrimSpace(stdout), noLatestMessage, stderr)
			}
			return nil
		})
	})

	t.Run("mutating policy adds a label", func(t *testing.T) {
		inst.mustKubectlIn(t, addLabelPolicy, "apply", "-f", "-")
		pod := writeFile(t, "pod.yaml", podManifest("myapp", "nginx:1.27"))
		createDryRun := func(ns string) (map[string]string, error) {
			stdout, stderr, err := inst.kubectl(t, "create", "-n", ns, "-f", pod, "--dry-run=server", "-o", "yaml")
			if err != nil {
				return nil, fmt.Errorf("kubectl create --dry-run=server in %s: %v\n%s", ns, err, stderr)
			}
			var p corev1.Pod
			if err := yaml.Unmarshal([]byte(stdout), &p); err != nil {
				return nil, fmt.Errorf("kubectl create -o yaml printed no pod (%v):\n%s", err, stdout)
			}
			return p.Labels, nil
		}
		poll(t, policyEnforcedTimeout, func() error {
			labels, err := createDryRun("e2e-mutate")
			if err != nil {
				return err
			}
			if labels[mutatedLabel] != "true" {
				return fmt.Errorf("dry-run pod in e2e-mutate has labels %v, want %s=true", labels, mutatedLabel)
			}
			return nil
		})
		// The binding selects e2e-mutate only.
		labels, err := createDryRun("default")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := labels[mutatedLabel]; ok {
			t.Errorf("dry-run pod in default has labels %v, want no %s: the binding selects only e2e-mutate", labels, mutatedLabel)
		}
	})
}

// writeFile writes content to name in a fresh temporary directory and
// returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
