package constraint

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
)

// benchTemplates are library-like templates a Pod is checked against.
var benchTemplates = []TemplateSource{
	{Name: "k8srequiredlabels", Kind: "K8sRequiredLabels", Rego: requiredLabelsV0},
	{Name: "k8sallowedrepos", Kind: "K8sAllowedRepos", Rego: `package k8sallowedrepos
violation[{"msg": msg}] {
	container := input.review.object.spec.containers[_]
	not any_prefix(container.image)
	msg := sprintf("container <%v> has an invalid image repo <%v>", [container.name, container.image])
}
any_prefix(image) { startswith(image, input.parameters.repos[_]) }`},
	{Name: "k8scontainerlimits", Kind: "K8sContainerLimits", Rego: `package k8scontainerlimits
violation[{"msg": msg}] {
	container := input.review.object.spec.containers[_]
	not container.resources.limits.memory
	msg := sprintf("container <%v> has no memory limit", [container.name])
}`},
	{Name: "k8sdisallowedtags", Kind: "K8sDisallowedTags", Rego: `package k8sdisallowedtags
violation[{"msg": msg}] {
	container := input.review.object.spec.containers[_]
	endswith(container.image, concat("", [":", input.parameters.tags[_]]))
	msg := sprintf("container <%v> uses a disallowed tag", [container.name])
}`},
}

func benchParams(kind string) map[string]any {
	switch kind {
	case "K8sRequiredLabels":
		return map[string]any{"labels": []any{"app"}}
	case "K8sAllowedRepos":
		return map[string]any{"repos": []any{"registry.example/"}}
	case "K8sDisallowedTags":
		return map[string]any{"tags": []any{"latest"}}
	}
	return nil
}

func benchPodReview() (map[string]any, *Target) {
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "p", "namespace": "bench", "labels": map[string]any{"app": "bench"}},
		"spec": map[string]any{"containers": []any{map[string]any{
			"name": "app", "image": "registry.example/app:1.0",
			"resources": map[string]any{"limits": map[string]any{"cpu": "100m", "memory": "64Mi"}},
		}}},
	}
	review := map[string]any{
		"kind": map[string]any{"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
		"name": "p", "namespace": "bench", "object": pod,
		"userInfo": map[string]any{"username": "bench"},
	}
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "bench"}}
	return review, &Target{GVK: schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "bench", Name: "p", Object: pod, NamespaceObject: ns}
}

// BenchmarkReview measures one Pod review against n constraints spread over
// four templates, none of which is violated (the common, admitted case).
func BenchmarkReview(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("constraints=%d", n), func(b *testing.B) {
			ctx := context.Background()
			e := NewEngine(0)
			for _, t := range benchTemplates {
				if err := e.AddTemplate(ctx, t); err != nil {
					b.Fatal(err)
				}
			}
			for i := range n {
				t := benchTemplates[i%len(benchTemplates)]
				c := &Constraint{Kind: t.Kind, Name: fmt.Sprintf("c%d", i), Parameters: benchParams(t.Kind),
					Match: Match{Kinds: []KindSelector{{APIGroups: []string{""}, Kinds: []string{"Pod"}}}}}
				if err := e.AddConstraint(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			review, target := benchPodReview()
			if v, err := e.Review(ctx, review, target); err != nil || len(v) != 0 {
				b.Fatalf("Review = %v, %v; want no violation", v, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := e.Review(ctx, review, target); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompile measures compiling one template (parse, checks, compile,
// prepare), which happens once per template change.
func BenchmarkCompile(b *testing.B) {
	ctx := context.Background()
	e := NewEngine(0)
	b.ReportAllocs()
	for range b.N {
		if err := e.AddTemplate(ctx, benchTemplates[1]); err != nil {
			b.Fatal(err)
		}
	}
}

// benchCELTemplates are benchTemplates written for the K8sNativeValidation
// engine, with the same parameters.
var benchCELTemplates = []TemplateSource{
	{Name: "k8srequiredlabels", Kind: "K8sRequiredLabels", CEL: &CELSource{Validations: []CELValidation{{
		Expression: "variables.params.labels.all(l, has(variables.anyObject.metadata.labels) && l in variables.anyObject.metadata.labels)",
		Message:    "missing labels"}}}},
	{Name: "k8sallowedrepos", Kind: "K8sAllowedRepos", CEL: &CELSource{Validations: []CELValidation{{
		Expression:        "variables.anyObject.spec.containers.all(c, variables.params.repos.exists(r, c.image.startsWith(r)))",
		MessageExpression: `"container <" + variables.anyObject.spec.containers.filter(c, !variables.params.repos.exists(r, c.image.startsWith(r)))[0].name + "> has an invalid image repo"`}}}},
	{Name: "k8scontainerlimits", Kind: "K8sContainerLimits", CEL: &CELSource{Validations: []CELValidation{{
		Expression: "variables.anyObject.spec.containers.all(c, has(c.resources.limits) && 'memory' in c.resources.limits)",
		Message:    "a container has no memory limit"}}}},
	{Name: "k8sdisallowedtags", Kind: "K8sDisallowedTags", CEL: &CELSource{Validations: []CELValidation{{
		Expression: "variables.anyObject.spec.containers.all(c, !variables.params.tags.exists(t, c.image.endsWith(':' + t)))",
		Message:    "a container uses a disallowed tag"}}}},
}

// BenchmarkReviewCEL is BenchmarkReview with the templates' CEL code.
// Each iteration gets fresh attributes, so the object's conversion to a
// CEL value is paid once per review, as once per request in the API server.
func BenchmarkReviewCEL(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("constraints=%d", n), func(b *testing.B) {
			ctx := context.Background()
			e := NewEngine(0)
			for _, t := range benchCELTemplates {
				if err := e.AddTemplate(ctx, t); err != nil {
					b.Fatal(err)
				}
			}
			for i := range n {
				t := benchCELTemplates[i%len(benchCELTemplates)]
				c := &Constraint{Kind: t.Kind, Name: fmt.Sprintf("c%d", i), Parameters: benchParams(t.Kind),
					Match: Match{Kinds: []KindSelector{{APIGroups: []string{""}, Kinds: []string{"Pod"}}}}}
				if err := e.AddConstraint(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			review, target := benchPodReview()
			pod := &unstructured.Unstructured{Object: target.Object}
			gvr := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
			attrs := admission.NewAttributesRecord(pod, nil, target.GVK, "bench", "p", gvr, "", admission.Create, nil, false, &user.DefaultInfo{Name: "bench"})
			fresh := func() *admission.VersionedAttributes {
				return &admission.VersionedAttributes{Attributes: attrs, VersionedKind: target.GVK, VersionedObject: admission.NewLazyObject(pod)}
			}
			target.Attributes = fresh()
			if v, err := e.Review(ctx, review, target); err != nil || len(v) != 0 {
				b.Fatalf("Review = %v, %v; want no violation", v, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				target.Attributes = fresh()
				if _, err := e.Review(ctx, review, target); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompileCEL measures compiling one CEL template.
func BenchmarkCompileCEL(b *testing.B) {
	ctx := context.Background()
	e := NewEngine(0)
	b.ReportAllocs()
	for range b.N {
		if err := e.AddTemplate(ctx, benchCELTemplates[1]); err != nil {
			b.Fatal(err)
		}
	}
}
