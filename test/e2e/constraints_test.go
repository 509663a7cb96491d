package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGatekeeperConstraints loads Gatekeeper-format templates and
// constraints through --policies and checks each enforcement action
// through the real kubectl.
func TestGatekeeperConstraints(t *testing.T) {
	dir, err := filepath.Abs("testdata/gatekeeper")
	if err != nil {
		t.Fatal(err)
	}
	inst := startGatehouse(t, "--policies", dir, "--audit-interval", "2s", "--exempt-namespace", "repos-exempt")
	if s := inst.stderr(); strings.Contains(s, "not applied") || strings.Contains(s, "not in force") {
		t.Fatalf("policies did not all apply:\n%s", s)
	}

	t.Run("required labels deny with Gatekeeper's message", func(t *testing.T) {
		_, stderr, err := inst.kubectl(t, "create", "namespace", "no-owner", "--dry-run=server")
		want := `admission webhook "validation.gatekeeper.sh" denied the request: [ns-must-have-owner] you must provide labels: {"owner"}`
		if err == nil || !strings.Contains(stderr, want) {
			t.Fatalf("kubectl create namespace without owner: err %v, stderr:\n%s\nwant it to contain %s", err, stderr, want)
		}
		inst.mustKubectlIn(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: with-owner\n  labels:\n    owner: me\n", "create", "--dry-run=server", "-f", "-")
	})

	t.Run("constraints and mutators report enforced in status.byPod", func(t *testing.T) {
		// What Gatekeeper users wait on before relying on a policy.
		for _, obj := range []string{"k8srequiredlabels/ns-must-have-owner", "k8sallowedrepos/repo-is-registry-example", "assign/always-pull", "assignmetadata/owner-label"} {
			if _, stderr, err := inst.kubectl(t, "wait", "--for=jsonpath={.status.byPod[0].enforced}=true", "--timeout=20s", obj); err != nil {
				t.Errorf("kubectl wait for %s enforced: %v\n%s", obj, err, stderr)
			}
		}
		out := inst.mustKubectlIn(t, "", "get", "k8srequiredlabels", "ns-must-have-owner", "-o", "jsonpath={.status.byPod[0].id} {.status.byPod[0].observedGeneration} {.status.byPod[0].operations}")
		if want := `gatehouse 1 ["audit","webhook"]`; out != want {
			t.Errorf("status.byPod of ns-must-have-owner = %q, want %q", out, want)
		}
	})

	inst.mustKubectlIn(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: repos-a\n  labels:\n    owner: e2e\n", "apply", "-f", "-")

	t.Run("allowed repos cover containers and initContainers", func(t *testing.T) {
		for _, tc := range []struct{ name, manifest, want string }{
			{"container", podWith("c", "app", "docker.io/nginx:1.27", ""), "container <app> has an invalid image repo <docker.io/nginx:1.27>"},
			{"initContainer", podWith("i", "app", "registry.example/app:1", "docker.io/busybox:1"), "container <init> has an invalid image repo <docker.io/busybox:1>"},
		} {
			_, stderr, err := inst.kubectlIn(t, tc.manifest, "create", "--dry-run=server", "-f", "-")
			if err == nil || !strings.Contains(stderr, "[repo-is-registry-example] "+tc.want) {
				t.Errorf("%s: err %v, stderr:\n%s\nwant [repo-is-registry-example] %s", tc.name, err, stderr, tc.want)
			}
		}
	})

	t.Run("allowed repos cover ephemeral containers added by kubectl debug", func(t *testing.T) {
		inst.mustKubectlIn(t, podWith("debug-me", "app", "registry.example/app:1", ""), "create", "-f", "-")
		_, stderr, err := inst.kubectl(t, "debug", "-n", "repos-a", "debug-me", "--image=docker.io/busybox:1", "--container=dbg")
		if err == nil || !strings.Contains(stderr, "[repo-is-registry-example] container <dbg> has an invalid image repo <docker.io/busybox:1>") {
			t.Errorf("kubectl debug with a disallowed image: err %v, stderr:\n%s", err, stderr)
		}
		if _, stderr, err := inst.kubectl(t, "debug", "-n", "repos-a", "debug-me", "--image=registry.example/busybox:1", "--container=dbg-ok"); err != nil {
			t.Errorf("kubectl debug with an allowed image: %v\n%s", err, stderr)
		}
	})

	t.Run("a K8sNativeValidation (CEL) template enforces container limits", func(t *testing.T) {
		inst.mustKubectlIn(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: limits-a\n  labels:\n    owner: e2e\n", "apply", "-f", "-")
		for _, tc := range []struct{ name, resources, want string }{
			{"no limits", "", "[container-must-have-limits] container <app> has no resource limits for cpu and memory"},
			{"memory over", "limits: {cpu: 500m, memory: 2Gi}", "[container-must-have-limits] container <app> memory limit <2Gi> is higher than the maximum allowed of <1Gi>"},
			{"cpu over", "limits: {cpu: 1500m, memory: 512Mi}", "[container-must-have-limits] container <app> cpu limit <1500m> is higher than the maximum allowed of <1>"},
			{"within", "limits: {cpu: 500m, memory: 1024Mi}", ""},
		} {
			manifest := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: limited\n  namespace: limits-a\nspec:\n  containers:\n  - name: app\n    image: registry.example/app:1\n    resources: {" + tc.resources + "}\n"
			_, stderr, err := inst.kubectlIn(t, manifest, "create", "--dry-run=server", "-f", "-")
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%s: refused: %v\n%s", tc.name, err, stderr)
			case tc.want != "" && (err == nil || !strings.Contains(stderr, tc.want)):
				t.Errorf("%s: err %v, stderr:\n%s\nwant %s", tc.name, err, stderr, tc.want)
			}
			if strings.Contains(stderr, "Rego twin") {
				t.Errorf("%s: the template's Rego ran instead of its CEL code:\n%s", tc.name, stderr)
			}
		}
	})

	t.Run("Gatekeeper mutators mutate in the chain", func(t *testing.T) {
		inst.mustKubectlIn(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: mutate-a\n  labels:\n    owner: e2e\n", "apply", "-f", "-")
		manifest := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: m\n  namespace: mutate-a\nspec:\n  containers:\n  - name: app\n    image: nginx:1.27\n    args: [serve]\n"
		out := inst.mustKubectlIn(t, manifest, "create", "--dry-run=server", "-f", "-", "-o", "jsonpath={.spec.containers[0].imagePullPolicy} {.metadata.labels.owner} {.spec.containers[0].args} {.spec.containers[0].image}")
		if want := `Always platform ["serve","--verbose"] mirror.example/nginx:1.27`; out != want {
			t.Errorf("mutated pod = %q, want %q", out, want)
		}
		// The admission trace names each mutator that changed the pod.
		stdout, stderr, code := runGatehouse(t, time.Minute, "trace", "--data-dir", inst.dataDir, "--namespace", "mutate-a", "--name", "m", "--limit", "1", "-o", "json")
		if code != 0 {
			t.Fatalf("gatehouse trace: %s", stderr)
		}
		for _, want := range []string{`"kind": "Assign"`, `"name": "always-pull"`, `"kind": "AssignImage"`, `"kind": "ModifySet"`, `"kind": "AssignMetadata"`, `"verdict": "patch"`} {
			if !strings.Contains(stdout, want) {
				t.Errorf("trace of the mutated pod lacks %s:\n%s", want, stdout)
			}
		}
		// AssignMetadata never overwrites a label that is there.
		labelled := strings.Replace(manifest, "  namespace: mutate-a\n", "  namespace: mutate-a\n  labels:\n    owner: me\n", 1)
		if out := inst.mustKubectlIn(t, labelled, "create", "--dry-run=server", "-f", "-", "-o", "jsonpath={.metadata.labels.owner}"); out != "me" {
			t.Errorf("owner label = %q, want the pod's own (me)", out)
		}
		// Elsewhere nothing changes.
		other := strings.ReplaceAll(manifest, "mutate-a", "default")
		if out := inst.mustKubectlIn(t, other, "create", "--dry-run=server", "-f", "-", "-o", "jsonpath={.spec.containers[0].image}"); out != "nginx:1.27" {
			t.Errorf("image in default = %q, want it unchanged", out)
		}
		// A mutator Gatekeeper refuses is refused, naming the field.
		_, stderr, err := inst.kubectlIn(t, "apiVersion: mutations.gatekeeper.sh/v1\nkind: Assign\nmetadata:\n  name: bad\nspec:\n  applyTo:\n  - groups: [\"\"]\n    kinds: [Pod]\n    versions: [v1]\n  location: metadata.labels.x\n  parameters:\n    assign:\n      value: y\n", "apply", "-f", "-")
		if err == nil || !strings.Contains(stderr, "spec.location") {
			t.Errorf("Assign on metadata: err %v, stderr:\n%s", err, stderr)
		}
	})

	t.Run("warn and dryrun constraints allow", func(t *testing.T) {
		_, stderr, err := inst.kubectlIn(t, podWith("ok", "app", "registry.example/app:1", ""), "create", "--dry-run=server", "-f", "-")
		if err != nil {
			t.Fatalf("allowed pod refused: %v\n%s", err, stderr)
		}
		if !strings.Contains(stderr, `Warning: [pods-should-have-team] you must provide labels: {"team"}`) {
			t.Errorf("no warning from the warn constraint; stderr:\n%s", stderr)
		}
		if strings.Contains(stderr, "pods-would-need-cost-center") {
			t.Errorf("the dryrun constraint spoke to the client; stderr:\n%s", stderr)
		}
	})

	t.Run("a template that does not compile reports line numbers and breaks nothing", func(t *testing.T) {
		_, stderr, err := inst.kubectlIn(t, brokenTemplate, "apply", "-f", "-")
		if err != nil {
			t.Fatalf("applying a template that does not compile: %v\n%s", err, stderr)
		}
		if !strings.Contains(stderr, "Warning: ConstraintTemplate k8sbroken is not in force") || !strings.Contains(stderr, "k8sbroken.rego:5") {
			t.Errorf("kubectl apply showed no warning with the Rego error's line; stderr:\n%s", stderr)
		}
		poll(t, 15*time.Second, func() error {
			out, _, err := inst.kubectl(t, "get", "constrainttemplate", "k8sbroken", "-o", "jsonpath={.status.byPod[0].errors[0].message}")
			if err != nil || !strings.Contains(out, "k8sbroken.rego:5") {
				return fmt.Errorf("status error = %q (%v), want the Rego error at k8sbroken.rego:5", out, err)
			}
			return nil
		})
		// The other constraints still deny.
		if _, stderr, err := inst.kubectl(t, "create", "namespace", "no-owner-2", "--dry-run=server"); err == nil || !strings.Contains(stderr, "[ns-must-have-owner]") {
			t.Errorf("after a broken template, required labels no longer deny: %v\n%s", err, stderr)
		}
	})

	t.Run("parameters are validated by the template's schema", func(t *testing.T) {
		_, stderr, err := inst.kubectlIn(t, "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sRequiredLabels\nmetadata:\n  name: bad-params\nspec:\n  parameters:\n    labels: owner\n", "apply", "-f", "-")
		if err == nil || !strings.Contains(stderr, "spec.parameters.labels") {
			t.Errorf("constraint with labels: owner (not a list): err %v, stderr:\n%s", err, stderr)
		}
	})

	t.Run("a misspelled match field is refused, not ignored", func(t *testing.T) {
		_, stderr, err := inst.kubectlIn(t, "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sRequiredLabels\nmetadata:\n  name: typo\nspec:\n  match:\n    kindz:\n    - apiGroups: [\"\"]\n      kinds: [Pod]\n  parameters:\n    labels: [x]\n", "apply", "-f", "-")
		if err == nil || !strings.Contains(stderr, "kindz") {
			t.Errorf("constraint with spec.match.kindz: err %v, stderr:\n%s\nwant an error naming kindz", err, stderr)
		}
	})

	t.Run("an unknown enforcementAction is refused", func(t *testing.T) {
		_, stderr, err := inst.kubectlIn(t, "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sRequiredLabels\nmetadata:\n  name: typo-action\nspec:\n  enforcementAction: denny\n  parameters:\n    labels: [x]\n", "apply", "-f", "-")
		if err == nil || !strings.Contains(stderr, `spec.enforcementAction: Unsupported value "denny"`) {
			t.Errorf("constraint with enforcementAction denny: err %v, stderr:\n%s", err, stderr)
		}
	})

	t.Run("referential policy reads data.inventory synced by a Config", func(t *testing.T) {
		inventory, err := os.ReadFile("testdata/gatekeeper-inventory.yaml")
		if err != nil {
			t.Fatal(err)
		}
		inst.mustKubectlIn(t, string(inventory), "apply", "-f", "-")
		poll(t, 20*time.Second, func() error {
			_, stderr, err := inst.kubectlIn(t, "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sUniqueIngressHost\nmetadata:\n  name: unique-ingress-host\nspec:\n  match:\n    kinds:\n    - apiGroups: [networking.k8s.io]\n      kinds: [Ingress]\n", "apply", "-f", "-")
			if err != nil {
				return fmt.Errorf("constraint not accepted yet: %s", stderr)
			}
			return nil
		})
		inst.mustKubectlIn(t, ingress("repos-a", "first", "shop.example"), "apply", "-f", "-")
		want := "[unique-ingress-host] ingress host conflicts with an existing ingress <shop.example>"
		poll(t, 20*time.Second, func() error {
			_, stderr, err := inst.kubectlIn(t, ingress("default", "second", "shop.example"), "create", "--dry-run=server", "-f", "-")
			if err == nil || !strings.Contains(stderr, want) {
				return fmt.Errorf("second ingress with the same host: err %v, stderr %s; want %s", err, stderr, want)
			}
			return nil
		})
		// The first ingress does not conflict with itself on update.
		if _, stderr, err := inst.kubectlIn(t, ingress("repos-a", "first", "shop.example"), "apply", "--dry-run=server", "-f", "-"); err != nil {
			t.Errorf("re-applying the first ingress: %v\n%s", err, stderr)
		}
	})

	t.Run("audit records existing violations in status and gatehouse audit prints them", func(t *testing.T) {
		// The default namespace has no owner label: an existing violation.
		poll(t, 20*time.Second, func() error {
			out, _, err := inst.kubectl(t, "get", "k8srequiredlabels", "ns-must-have-owner", "-o", "jsonpath={.status.totalViolations} {.status.violations[*].name}")
			if err != nil || !strings.Contains(out, "default") || strings.HasPrefix(out, "0") {
				return fmt.Errorf("status = %q (%v), want violations naming default", out, err)
			}
			return nil
		})
		// The dryrun constraint denies nothing at admission; audit shows
		// what it would deny: the pod made for kubectl debug has no
		// cost-center label.
		poll(t, 20*time.Second, func() error {
			out, _, err := inst.kubectl(t, "get", "k8srequiredlabels", "pods-would-need-cost-center", "-o", "jsonpath={.status.totalViolations} {.status.violations[*].name} {.status.violations[*].enforcementAction}")
			if err != nil || !strings.Contains(out, "debug-me") || !strings.Contains(out, "dryrun") {
				return fmt.Errorf("dryrun constraint status = %q (%v), want a dryrun violation naming debug-me", out, err)
			}
			return nil
		})
		stdout, stderr, code := runGatehouse(t, 60*time.Second, "audit", "--data-dir", inst.dataDir)
		if !strings.Contains(stdout, "pods-would-need-cost-center") {
			t.Errorf("gatehouse audit does not list the dryrun constraint's violation:\n%s", stdout)
		}
		if code != 1 || !strings.Contains(stdout, "ns-must-have-owner") || !strings.Contains(stdout, `you must provide labels: {"owner"}`) {
			t.Errorf("gatehouse audit exited %d, want 1 with the deny violation; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})

	t.Run("the Config's spec.match and the ignore label keep namespaces out, per process", func(t *testing.T) {
		inst.mustKubectlIn(t, "", "patch", "config", "config", "-n", "gatekeeper-system", "--type", "merge", "-p",
			`{"spec":{"match":[{"excludedNamespaces":["excluded-*"],"processes":["webhook","audit","sync"]},{"excludedNamespaces":["mutate-quiet"],"processes":["mutation-webhook"]}]}}`)
		// What Gatekeeper would pass over in silence is a kubectl warning.
		_, stderr, err := inst.kubectlIn(t, "apiVersion: config.gatekeeper.sh/v1alpha1\nkind: Config\nmetadata:\n  name: config\n  namespace: gatekeeper-system\nspec:\n  match:\n  - excludedNamespaces: [a]\n    processes: [admission]\n", "apply", "--dry-run=server", "-f", "-")
		if want := `Warning: Config gatekeeper-system/config: spec.match[0].processes[0]: unknown process "admission"`; err != nil || !strings.Contains(stderr, want) {
			t.Errorf("Config with an unknown process: err %v, stderr:\n%s\nwant %s", err, stderr, want)
		}
		// A Namespace is matched by its own name: created although it
		// has no owner label.
		poll(t, 20*time.Second, func() error {
			if _, stderr, err := inst.kubectl(t, "create", "namespace", "excluded-both"); err != nil {
				return fmt.Errorf("namespace excluded-both without owner: %s", stderr)
			}
			return nil
		})
		disallowed := strings.ReplaceAll(podWith("x", "app", "docker.io/nginx:1.27", ""), "repos-a", "excluded-both")
		if _, stderr, err := inst.kubectlIn(t, disallowed, "create", "--dry-run=server", "-f", "-"); err != nil {
			t.Errorf("pod with a disallowed repo in an excluded namespace refused: %v\n%s", err, stderr)
		}
		if _, stderr, err := inst.kubectlIn(t, podWith("x", "app", "docker.io/nginx:1.27", ""), "create", "--dry-run=server", "-f", "-"); err == nil || !strings.Contains(stderr, "[repo-is-registry-example]") {
			t.Errorf("pod with a disallowed repo in repos-a: err %v, stderr:\n%s", err, stderr)
		}
		stdout, stderr, code := runGatehouse(t, time.Minute, "trace", "--data-dir", inst.dataDir, "--namespace", "excluded-both", "--name", "x", "--limit", "1", "-o", "json")
		if want := `excluded from process webhook by Config gatekeeper-system/config spec.match[0] (excludedNamespaces: \"excluded-both\" matches \"excluded-*\")`; code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("trace of the excluded pod (exit %d) lacks %s:\n%s%s", code, want, stdout, stderr)
		}

		// Audit leaves excluded-both out; default (no owner either) stays.
		stdout, _, _ = runGatehouse(t, time.Minute, "audit", "--data-dir", inst.dataDir, "-o", "json")
		if strings.Contains(stdout, "excluded-both") || !strings.Contains(stdout, `"default"`) {
			t.Errorf("gatehouse audit: want default and not excluded-both among the violations:\n%s", stdout)
		}

		// sync: an ingress in excluded-both is not in data.inventory, so
		// its host conflicts with nothing.
		inst.mustKubectlIn(t, ingress("excluded-both", "hidden", "hidden.example"), "apply", "-f", "-")
		inst.mustKubectlIn(t, ingress("repos-a", "seen", "seen.example"), "apply", "-f", "-")
		poll(t, 20*time.Second, func() error {
			if _, stderr, err := inst.kubectlIn(t, ingress("default", "same-as-seen", "seen.example"), "create", "--dry-run=server", "-f", "-"); err == nil {
				return fmt.Errorf("the ingress in repos-a is not in data.inventory yet: %s", stderr)
			}
			return nil
		})
		if _, stderr, err := inst.kubectlIn(t, ingress("default", "same-as-hidden", "hidden.example"), "create", "--dry-run=server", "-f", "-"); err != nil {
			t.Errorf("an ingress in a namespace excluded from sync was found in data.inventory: %v\n%s", err, stderr)
		}

		// mutation-webhook only: mutators skip mutate-quiet.
		inst.mustKubectlIn(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: mutate-quiet\n  labels:\n    owner: e2e\n", "apply", "-f", "-")
		quiet := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: m\n  namespace: mutate-quiet\nspec:\n  containers:\n  - name: app\n    image: nginx:1.27\n"
		if out := inst.mustKubectlIn(t, quiet, "create", "--dry-run=server", "-f", "-", "-o", "jsonpath={.spec.containers[0].image}"); out != "nginx:1.27" {
			t.Errorf("image in mutate-quiet = %q, want it unchanged (excluded from mutation-webhook)", out)
		}

		// The ignore label: only gatekeeper-system may carry it.
		_, stderr, err = inst.kubectlIn(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: sneaky\n  labels:\n    owner: e2e\n    admission.gatekeeper.sh/ignore: \"true\"\n", "create", "--dry-run=server", "-f", "-")
		if want := `admission webhook "check-ignore-label.gatekeeper.sh" denied the request: Only exempt namespace can have the admission.gatekeeper.sh/ignore label`; err == nil || !strings.Contains(stderr, want) {
			t.Errorf("namespace with the ignore label: err %v, stderr:\n%s\nwant %s", err, stderr, want)
		}
		if _, stderr, err := inst.kubectl(t, "label", "namespace", "gatekeeper-system", "admission.gatekeeper.sh/ignore=yes", "--overwrite", "--dry-run=server"); err != nil {
			t.Errorf("labelling gatekeeper-system: %v\n%s", err, stderr)
		}
		// --exempt-namespace: left alone, and may carry the label.
		inst.mustKubectlIn(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: repos-exempt\n  labels:\n    admission.gatekeeper.sh/ignore: \"yes\"\n", "apply", "-f", "-")
		exempt := strings.ReplaceAll(podWith("in-exempt", "app", "docker.io/nginx:1.27", ""), "repos-a", "repos-exempt")
		if _, stderr, err := inst.kubectlIn(t, exempt, "create", "--dry-run=server", "-f", "-"); err != nil {
			t.Errorf("pod in the --exempt-namespace refused: %v\n%s", err, stderr)
		}
		// gatekeeper-system, made by Gatehouse as a Gatekeeper install
		// has it, is left alone by the constraints (it has no owner).
		inPlace := strings.ReplaceAll(podWith("in-gk", "app", "docker.io/nginx:1.27", ""), "repos-a", "gatekeeper-system")
		if _, stderr, err := inst.kubectlIn(t, inPlace, "create", "--dry-run=server", "-f", "-"); err != nil {
			t.Errorf("pod in gatekeeper-system refused: %v\n%s", err, stderr)
		}
	})

	t.Run("an ExpansionTemplate makes a Deployment answer for the pods it would create", func(t *testing.T) {
		tmpl := "apiVersion: expansion.gatekeeper.sh/v1beta1\nkind: ExpansionTemplate\nmetadata:\n  name: expand-deployments\nspec:\n  applyTo:\n  - groups: [apps]\n    kinds: [Deployment]\n    versions: [v1]\n  templateSource: spec.template\n  generatedGVK: {group: \"\", version: v1, kind: Pod}\n"
		// One Gatekeeper refuses is refused, naming the field.
		_, stderr, err := inst.kubectlIn(t, strings.Replace(tmpl, "  templateSource: spec.template\n", "", 1), "apply", "-f", "-")
		if err == nil || !strings.Contains(stderr, "spec.templateSource: Required value") {
			t.Errorf("ExpansionTemplate without templateSource: err %v, stderr:\n%s", err, stderr)
		}
		inst.mustKubectlIn(t, tmpl, "apply", "-f", "-")
		if _, stderr, err := inst.kubectl(t, "wait", "--for=jsonpath={.status.byPod[0].enforced}=true", "--timeout=20s", "expansiontemplate/expand-deployments"); err != nil {
			t.Fatalf("expansion template not enforced: %v\n%s", err, stderr)
		}
		want := "[repo-is-registry-example] [Implied by expand-deployments] container <nginx> has an invalid image repo <docker.io/nginx:1.27>"
		poll(t, 20*time.Second, func() error {
			_, stderr, err := inst.kubectl(t, "create", "deployment", "web", "-n", "repos-a", "--image=docker.io/nginx:1.27", "--dry-run=server")
			if err == nil || !strings.Contains(stderr, want) {
				return fmt.Errorf("deployment with a disallowed image: err %v, stderr %s; want %s", err, stderr, want)
			}
			return nil
		})
		// An allowed image passes, with the warn constraint's warning about
		// the pods it would create.
		_, stderr, err = inst.kubectl(t, "create", "deployment", "web", "-n", "repos-a", "--image=registry.example/nginx:1.27", "--dry-run=server")
		if err != nil || !strings.Contains(stderr, `Warning: [pods-should-have-team] [Implied by expand-deployments] you must provide labels: {"team"}`) {
			t.Errorf("deployment with an allowed image: err %v, stderr:\n%s", err, stderr)
		}
		// The trace says which pod the denial was about.
		stdout, stderr, code := runGatehouse(t, time.Minute, "trace", "--data-dir", inst.dataDir, "--namespace", "repos-a", "--name", "web", "--verdict", "deny", "--limit", "1", "-o", "json")
		if wantTrace := "on the Pod implied by ExpansionTemplate expand-deployments"; code != 0 || !strings.Contains(stdout, wantTrace) {
			t.Errorf("trace of the denied deployment (exit %d) lacks %q:\n%s%s", code, wantTrace, stdout, stderr)
		}
	})

	t.Run("after a restart constraints are in force when ready is printed", func(t *testing.T) {
		inst.stop(t)
		inst.restart(t)
		// No polling: ready promises templates compiled and constraints
		// and the inventory loaded.
		if _, stderr, err := inst.kubectl(t, "create", "namespace", "no-owner-r", "--dry-run=server"); err == nil || !strings.Contains(stderr, "[ns-must-have-owner]") {
			t.Errorf("right after restart, namespace without owner: err %v, stderr:\n%s", err, stderr)
		}
		if _, stderr, err := inst.kubectlIn(t, ingress("default", "third", "shop.example"), "create", "--dry-run=server", "-f", "-"); err == nil || !strings.Contains(stderr, "[unique-ingress-host]") {
			t.Errorf("right after restart, duplicate ingress host: err %v, stderr:\n%s", err, stderr)
		}
	})

	t.Run("deleting a template with constraints warns and deletes them", func(t *testing.T) {
		_, stderr, err := inst.kubectl(t, "delete", "constrainttemplate", "k8sallowedrepos")
		if err != nil || !strings.Contains(stderr, "deleting ConstraintTemplate k8sallowedrepos also deletes its 1 K8sAllowedRepos constraint(s): repo-is-registry-example") {
			t.Fatalf("kubectl delete constrainttemplate: %v, stderr:\n%s", err, stderr)
		}
		poll(t, 15*time.Second, func() error {
			if _, stderr, err := inst.kubectlIn(t, podWith("gone", "app", "docker.io/nginx:1.27", ""), "create", "--dry-run=server", "-f", "-"); err != nil {
				return fmt.Errorf("allowed-repos still enforced after its template was deleted: %s", stderr)
			}
			return nil
		})
	})

	t.Run("mutators held back by a schema conflict say so in status.byPod", func(t *testing.T) {
		assign := func(name, location string) string {
			return "apiVersion: mutations.gatekeeper.sh/v1\nkind: Assign\nmetadata:\n  name: " + name + "\nspec:\n  applyTo:\n  - groups: [apps]\n    kinds: [Deployment]\n    versions: [v1]\n  location: \"" + location + "\"\n  parameters:\n    assign:\n      value: Always\n"
		}
		inst.mustKubectlIn(t, assign("keyed", "spec.template.spec.containers[name:*].imagePullPolicy"), "apply", "-f", "-")
		if _, stderr, err := inst.kubectl(t, "wait", "--for=jsonpath={.status.byPod[0].enforced}=true", "--timeout=20s", "assign/keyed"); err != nil {
			t.Fatalf("assign/keyed not enforced: %v\n%s", err, stderr)
		}
		inst.mustKubectlIn(t, assign("unkeyed", "spec.template.spec.containers.imagePullPolicy"), "apply", "-f", "-")
		for _, name := range []string{"keyed", "unkeyed"} {
			if _, stderr, err := inst.kubectl(t, "wait", "--for=jsonpath={.status.byPod[0].enforced}=false", "--timeout=20s", "assign/"+name); err != nil {
				t.Errorf("assign/%s still enforced beside a conflicting mutator: %v\n%s", name, err, stderr)
			}
		}
		out := inst.mustKubectlIn(t, "", "get", "assign", "keyed", "-o", "jsonpath={.status.byPod[0].errors[0].type}: {.status.byPod[0].errors[0].message}")
		if !strings.HasPrefix(out, "schema_conflict: conflicts with Assign//unkeyed") {
			t.Errorf("status.byPod error of assign/keyed = %q, want a schema_conflict naming Assign//unkeyed", out)
		}
		inst.mustKubectlIn(t, "", "delete", "assign", "unkeyed")
		if _, stderr, err := inst.kubectl(t, "wait", "--for=jsonpath={.status.byPod[0].enforced}=true", "--timeout=20s", "assign/keyed"); err != nil {
			t.Errorf("assign/keyed not enforced again once the conflict went: %v\n%s", err, stderr)
		}
	})

	t.Run("deleting a constraint stops it", func(t *testing.T) {
		inst.mustKubectlIn(t, "", "delete", "k8srequiredlabels", "ns-must-have-owner")
		poll(t, 15*time.Second, func() error {
			if _, stderr, err := inst.kubectl(t, "create", "namespace", "no-owner-3", "--dry-run=server"); err != nil {
				return fmt.Errorf("still denied: %s", stderr)
			}
			return nil
		})
	})
}

const brokenTemplate = `apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8sbroken
spec:
  crd:
    spec:
      names:
        kind: K8sBroken
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package k8sbroken

        violation[{"msg": msg}] {
          msg := 
        }
`

func ingress(ns, name, host string) string {
	return "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: " + name + "\n  namespace: " + ns +
		"\nspec:\n  rules:\n  - host: " + host + "\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: web\n            port:\n              number: 80\n"
}

func podWith(name, container, image, initImage string) string {
	m := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name + "\n  namespace: repos-a\nspec:\n  containers:\n  - name: " + container + "\n    image: " + image + "\n"
	if initImage != "" {
		m += "  initContainers:\n  - name: init\n    image: " + initImage + "\n"
	}
	return m
}
