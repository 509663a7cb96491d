// Command offline measures gatehouse check and gatehouse test on generated
// inputs: check on N manifests against 20 policies (10
// ValidatingAdmissionPolicies, 10 Gatekeeper constraints of 2 templates),
// and test on 50 gator suites of 4 cases each. It runs the built binary, as
// a user would, and prints wall times; and the ephemeral control plane's
// start-up, in-process through the same package the binary uses.
//
//	go run ./bench/offline --bin bin/gatehouse
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/offline"
)

func main() {
	bin := flag.String("bin", "bin/gatehouse", "gatehouse binary")
	objects := flag.Int("objects", 1000, "manifests for gatehouse check")
	runs := flag.Int("runs", 3, "runs of each measurement; the median is printed")
	keep := flag.Bool("keep", false, "keep the generated inputs and say where")
	startupOnce := flag.Bool("startup-once", false, "start the ephemeral control plane once, print how long it took, and exit")
	flag.Parse()
	if *startupOnce {
		start := time.Now()
		s, err := offline.Start(context.Background(), offline.Options{})
		if err != nil {
			fail(err)
		}
		fmt.Println(time.Since(start))
		s.Close()
		return
	}
	dir, err := os.MkdirTemp("", "gatehouse-bench-offline-")
	if err != nil {
		fail(err)
	}
	if *keep {
		fmt.Println("inputs in", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	policies := filepath.Join(dir, "policies")
	must(os.MkdirAll(policies, 0o755))
	must(os.WriteFile(filepath.Join(policies, "policies.yaml"), []byte(checkPolicies()), 0o644))
	one := filepath.Join(dir, "one.yaml")
	must(os.WriteFile(one, []byte(pod("default", 0)), 0o644))
	many := filepath.Join(dir, "many.yaml")
	var b strings.Builder
	for i := range *objects {
		b.WriteString(pod(fmt.Sprintf("team-%d", i%10), i))
		b.WriteString("---\n")
	}
	must(os.WriteFile(many, []byte(b.String()), 0o644))

	// Upstream's API server registers process-wide names: one start per
	// process, so each measurement runs in a child of this program.
	startup := median(*runs, func() time.Duration {
		out, err := exec.Command(os.Args[0], "--startup-once").Output()
		if err != nil {
			fail(fmt.Errorf("start-up: %v", err))
		}
		d, err := time.ParseDuration(strings.TrimSpace(string(out)))
		if err != nil {
			fail(fmt.Errorf("start-up: %q: %v", out, err))
		}
		return d
	})
	fmt.Printf("ephemeral control plane start-up (offline.Start, in-process): %.2fs\n", startup.Seconds())
	bare := median(*runs, func() time.Duration { return timed(*bin, "check", "-f", one) })
	fmt.Printf("check, 1 object, no policies (startup + check + exit): %.2fs\n", bare.Seconds())
	withPolicies := median(*runs, func() time.Duration { return timed(*bin, "check", "-f", one, "--policies", policies) })
	fmt.Printf("check, 1 object, 20 policies: %.2fs\n", withPolicies.Seconds())
	all := median(*runs, func() time.Duration {
		return timed(*bin, "check", "-f", many, "--policies", policies, "-o", "json")
	})
	rate := float64(*objects-1) / (all - withPolicies).Seconds()
	fmt.Printf("check, %d objects, 20 policies: %.2fs (%.0f objects/s after start-up and policies)\n", *objects, all.Seconds(), rate)

	suites := filepath.Join(dir, "suites")
	writeSuites(suites, 50)
	test := median(*runs, func() time.Duration { return timed(*bin, "test", suites) })
	fmt.Printf("test, 50 templates x 4 cases: %.2fs (%.0f cases/s)\n", test.Seconds(), 200/test.Seconds())
}

// timed runs the binary and returns its wall time; exit status 1 (a
// denial) is expected, anything else is fatal.
func timed(bin string, args ...string) time.Duration {
	start := time.Now()
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil && cmd.ProcessState.ExitCode() != 1 {
		fail(fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out))
	}
	return d
}

func median(n int, f func() time.Duration) time.Duration {
	var ds []time.Duration
	for range n {
		ds = append(ds, f())
	}
	for i := range ds {
		for j := i + 1; j < len(ds); j++ {
			if ds[j] < ds[i] {
				ds[i], ds[j] = ds[j], ds[i]
			}
		}
	}
	return ds[len(ds)/2]
}

func pod(ns string, i int) string {
	image := "registry.example/app:1"
	if i%10 == 9 {
		image = "docker.io/nginx:latest" // some are denied
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: pod-%d
  namespace: %s
  labels: {app: bench, team: t%d}
spec:
  containers:
  - name: app
    image: %s
    resources:
      limits: {cpu: 100m, memory: 64Mi}
`, i, ns, i%10, image)
}

// checkPolicies are 10 ValidatingAdmissionPolicies with bindings and 10
// constraints of two library-style templates, all matching Pods.
func checkPolicies() string {
	var b strings.Builder
	checks := []string{
		"object.spec.containers.all(c, has(c.resources.limits))",
		"object.spec.containers.all(c, !c.image.endsWith(':latest'))",
		"has(object.metadata.labels) && 'app' in object.metadata.labels",
		"object.spec.containers.size() < 20",
		"!has(object.spec.hostNetwork) || !object.spec.hostNetwork",
		"!has(object.spec.hostPID) || !object.spec.hostPID",
		"object.metadata.name.size() < 64",
		"object.spec.containers.all(c, c.name.size() < 64)",
		"!has(object.spec.hostIPC) || !object.spec.hostIPC",
		"object.spec.containers.all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || !c.securityContext.privileged)",
	}
	for i, expr := range checks {
		fmt.Fprintf(&b, `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: vap-%d
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["pods"]
  validations:
  - expression: %q
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: vap-%d
spec:
  policyName: vap-%d
  validationActions: [Deny]
---
`, i, expr, i, i)
	}
	b.WriteString(`apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8srequiredlabels
spec:
  crd:
    spec:
      names:
        kind: K8sRequiredLabels
      validation:
        openAPIV3Schema:
          type: object
          properties:
            labels: {type: array, items: {type: string}}
  targets:
  - target: admission.k8s.gatekeeper.sh
    rego: |
      package k8srequiredlabels
      violation[{"msg": msg}] {
        provided := {label | input.review.object.metadata.labels[label]}
        required := {label | label := input.parameters.labels[_]}
        missing := required - provided
        count(missing) > 0
        msg := sprintf("you must provide labels: %v", [missing])
      }
---
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8sallowedrepos
spec:
  crd:
    spec:
      names:
        kind: K8sAllowedRepos
      validation:
        openAPIV3Schema:
          type: object
          properties:
            repos: {type: array, items: {type: string}}
  targets:
  - target: admission.k8s.gatekeeper.sh
    rego: |
      package k8sallowedrepos
      violation[{"msg": msg}] {
        container := input.review.object.spec.containers[_]
        not startswith_any(container.image)
        msg := sprintf("container <%v> has an invalid image repo <%v>", [container.name, container.image])
      }
      startswith_any(image) { startswith(image, input.parameters.repos[_]) }
---
`)
	for i := range 5 {
		fmt.Fprintf(&b, `apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sRequiredLabels
metadata:
  name: labels-%d
spec:
  match:
    kinds: [{apiGroups: [""], kinds: ["Pod"]}]
  parameters:
    labels: ["app"]
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sAllowedRepos
metadata:
  name: repos-%d
spec:
  match:
    kinds: [{apiGroups: [""], kinds: ["Pod"]}]
  parameters:
    repos: ["registry.example/", "docker.io/"]
---
`, i, i)
	}
	return b.String()
}

// writeSuites writes n gator suites, each a template, a constraint and
// four cases.
func writeSuites(dir string, n int) {
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("policy-%02d", i))
		must(os.MkdirAll(d, 0o755))
		kind := fmt.Sprintf("K8sRequiredLabels%d", i)
		must(os.WriteFile(filepath.Join(d, "template.yaml"), []byte(fmt.Sprintf(`apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: %s
spec:
  crd:
    spec:
      names:
        kind: %s
      validation:
        openAPIV3Schema:
          type: object
          properties:
            labels: {type: array, items: {type: string}}
  targets:
  - target: admission.k8s.gatekeeper.sh
    rego: |
      package k8srequiredlabels%d
      violation[{"msg": msg}] {
        provided := {label | input.review.object.metadata.labels[label]}
        required := {label | label := input.parameters.labels[_]}
        missing := required - provided
        count(missing) > 0
        msg := sprintf("you must provide labels: %%v", [missing])
      }
`, strings.ToLower(kind), kind, i)), 0o644))
		must(os.WriteFile(filepath.Join(d, "constraint.yaml"), []byte(fmt.Sprintf(`apiVersion: constraints.gatekeeper.sh/v1beta1
kind: %s
metadata:
  name: needs-owner
spec:
  parameters:
    labels: ["owner"]
`, kind)), 0o644))
		for j, labels := range []string{"{owner: a}", "{}", "{owner: b, x: y}", "{team: t}"} {
			must(os.WriteFile(filepath.Join(d, fmt.Sprintf("object-%d.yaml", j)), []byte(fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-%d\n  labels: %s\n", j, labels)), 0o644))
		}
		must(os.WriteFile(filepath.Join(d, "suite.yaml"), []byte(`kind: Suite
apiVersion: test.gatekeeper.sh/v1alpha1
tests:
- name: required-labels
  template: template.yaml
  constraint: constraint.yaml
  cases:
  - {name: owner, object: object-0.yaml, assertions: [{violations: no}]}
  - {name: none, object: object-1.yaml, assertions: [{violations: 1, message: owner}]}
  - {name: owner-and-more, object: object-2.yaml, assertions: [{violations: no}]}
  - {name: team-only, object: object-3.yaml, assertions: [{violations: yes}]}
`), 0o644))
	}
}

func must(err error) {
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/offline:", err)
	os.Exit(1)
}
