package constraint

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
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
