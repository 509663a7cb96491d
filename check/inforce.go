package check

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// SentinelName names the objects WaitInForce makes and removes; each
// matches only its own probe, a ConfigMap named after it, which nothing
// else is.
const SentinelName = "gatehouse-check-sentinel"

// sentinel is one kind of policy object the API server loads through an
// informer, and how to see that it has loaded a new one.
type sentinel struct {
	// kinds are the policy kinds (admissionregistration.k8s.io) it
	// vouches for.
	kinds []string
	// probe names the ConfigMap whose dry-run shows it: one per
	// sentinel, so that one sentinel's denial does not hide another.
	probe string
	// objects are created in order, after the user's.
	objects string
	// loaded reports whether the dry-run of the sentinel ConfigMap shows
	// the sentinel in force.
	loaded func(out *unstructured.Unstructured, err error) bool
}

func sentinelMatch(probe string) string {
	return `
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["configmaps"]
  matchConditions:
  - name: sentinel
    expression: object.metadata.name == "` + probe + `"`
}

func webhookRules(probe string) string {
	return `
  rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE"]
    resources: ["configmaps"]
  matchConditions:
  - name: sentinel
    expression: object.metadata.name == "` + probe + `"
  # Nothing listens on port 1: the call fails, which shows it was made.
  clientConfig:
    url: https://127.0.0.1:1/sentinel
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 1
  admissionReviewVersions: ["v1"]`
}

var sentinels = []sentinel{{
	kinds: []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"},
	probe: SentinelName + "-vap",
	objects: `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: ` + SentinelName + `
spec:
  failurePolicy: Fail` + sentinelMatch(SentinelName+"-vap") + `
  validations:
  - expression: "false"
    message: sentinel
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: ` + SentinelName + `
spec:
  policyName: ` + SentinelName + `
  validationActions: [Deny]
`,
	loaded: func(_ *unstructured.Unstructured, err error) bool {
		return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+SentinelName+"'")
	},
}, {
	kinds: []string{"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"},
	probe: SentinelName + "-map",
	objects: `apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata:
  name: ` + SentinelName + `
spec:
  failurePolicy: Fail
  reinvocationPolicy: Never` + sentinelMatch(SentinelName+"-map") + `
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: 'Object{metadata: Object.metadata{labels: {"` + SentinelName + `": "seen"}}}'
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata:
  name: ` + SentinelName + `
spec:
  policyName: ` + SentinelName + `
`,
	loaded: func(out *unstructured.Unstructured, err error) bool {
		return err == nil && out.GetLabels()[SentinelName] == "seen"
	},
}, webhookSentinel("ValidatingWebhookConfiguration", "validating", "-vwc"),
	webhookSentinel("MutatingWebhookConfiguration", "mutating", "-mwc")}

// webhookSentinel is the sentinel of a kind of webhook configuration: one
// webhook, named prefix.<SentinelName>.gatehouse.dev, that nothing serves;
// its call failing on the probe shows the configuration in force.
func webhookSentinel(kind, prefix, probeSuffix string) sentinel {
	hook := prefix + "." + SentinelName + ".gatehouse.dev"
	return sentinel{
		kinds: []string{kind},
		probe: SentinelName + probeSuffix,
		objects: `apiVersion: admissionregistration.k8s.io/v1
kind: ` + kind + `
metadata:
  name: ` + SentinelName + `
webhooks:
- name: ` + hook + webhookRules(SentinelName+probeSuffix) + `
`,
		loaded: func(_ *unstructured.Unstructured, err error) bool {
			return err != nil && strings.Contains(err.Error(), hook)
		},
	}
}

const inForceTimeout = 30 * time.Second

// WaitInForce returns once the API server enforces the policies of kinds
// (the kinds of the objects just applied): the admission plugins load
// policies and webhook configurations through informers, a moment after
// they are stored. For each plugin concerned it stores a sentinel of the
// same kinds after the user's and waits until a dry-run shows the sentinel
// in force: informers deliver a resource's events in order, so the user's
// objects are in force too. The sentinels are removed afterwards.
func (c *Checker) WaitInForce(ctx context.Context, kinds []string) error {
	ctx, cancel := context.WithTimeout(ctx, inForceTimeout)
	defer cancel()
	var pending []sentinel
	for _, s := range sentinels {
		if slices.ContainsFunc(s.kinds, func(k string) bool { return slices.Contains(kinds, k) }) {
			pending = append(pending, s)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	var made []*unstructured.Unstructured
	defer func() {
		for _, obj := range made {
			c.deleteObject(context.WithoutCancel(ctx), obj)
		}
	}()
	for _, s := range pending {
		for doc := range strings.SplitSeq(s.objects, "\n---\n") {
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
				return fmt.Errorf("sentinel: %w", err)
			}
			m, err := c.mapping(obj)
			if err != nil {
				return fmt.Errorf("sentinel %s: %w", obj.GetKind(), err)
			}
			if _, err := c.dyn.Resource(m.Resource).Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("sentinel %s: %w", obj.GetKind(), err)
			}
			made = append(made, obj)
		}
	}
	cm := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	for len(pending) > 0 {
		pending = slices.DeleteFunc(pending, func(s sentinel) bool {
			probe := &unstructured.Unstructured{}
			probe.SetAPIVersion("v1")
			probe.SetKind("ConfigMap")
			probe.SetName(s.probe)
			out, err := c.dyn.Resource(cm).Namespace(metav1.NamespaceDefault).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return s.loaded(out, err)
		})
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the API server did not put the policies in force within %s (waiting for %s)", inForceTimeout, strings.Join(pending[0].kinds, ", "))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (c *Checker) deleteObject(ctx context.Context, obj *unstructured.Unstructured) {
	m, err := c.mapping(obj)
	if err != nil {
		return
	}
	_ = c.dyn.Resource(m.Resource).Delete(ctx, obj.GetName(), metav1.DeleteOptions{})
}

// WaitConstraints returns once inForce reports every constraint of
// constraints (kind → names) loaded, as Gatehouse's Gatekeeper syncer
// loads them a moment after they are stored.
func WaitConstraints(ctx context.Context, constraints map[string][]string, inForce func(kind string) []string) error {
	deadline := time.Now().Add(inForceTimeout)
	for kind, names := range constraints {
		for {
			loaded := inForce(kind)
			missing := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return slices.Contains(loaded, n) })
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("constraints %s %s were not loaded within %s", kind, strings.Join(missing, ", "), inForceTimeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}
