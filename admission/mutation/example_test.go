package mutation_test

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"

	"github.com/gatehouse-dev/gatehouse/admission/mutation"
)

func decode(s string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON([]byte(s)); err != nil {
		panic(err)
	}
	return u
}

func ExampleSystem_Mutate() {
	m, err := mutation.Parse(decode(`{
		"apiVersion": "mutations.gatekeeper.sh/v1", "kind": "Assign",
		"metadata": {"name": "pull-always", "generation": 1},
		"spec": {
			"applyTo": [{"groups": [""], "versions": ["v1"], "kinds": ["Pod"]}],
			"match": {"namespaces": ["dev"]},
			"location": "spec.containers[name: *].imagePullPolicy",
			"parameters": {"assign": {"value": "Always"}}
		}}`))
	if err != nil {
		panic(err)
	}
	sys := mutation.NewSystem()
	if err := sys.Upsert(m); err != nil {
		panic(err)
	}

	pod := decode(`{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
		"spec": {"containers": [{"name": "main", "image": "nginx"}]}}`)
	changed, applied, err := sys.Mutate(&mutation.Request{
		Operation: admission.Create,
		GVK:       schema.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: "dev",
	}, pod)
	policy, _, _ := unstructured.NestedString(pod.Object["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any), "imagePullPolicy")
	fmt.Println(changed, applied, err, policy)
	// Output: true [Assign//pull-always:1] <nil> Always
}
