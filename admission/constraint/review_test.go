package constraint

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

var (
	testPodGVK        = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	testPodGVR        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	testDeploymentGVK = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	testDeploymentGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	testScaleGVK      = schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}
	testNamespaceGVK  = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}
	testNamespaceGVR  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

	testUser = &user.DefaultInfo{
		Name:   "alice",
		UID:    "u-1",
		Groups: []string{"dev", "system:authenticated"},
		Extra:  map[string][]string{"scopes": {"a", "b"}},
	}
)

// testInternalPod stands in for the API server's internal Pod: no apiVersion
// or kind of its own, converted to v1 by the scheme, as kube-apiserver's
// admission attributes hold internal objects.
type testInternalPod struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	Image string
}

func (p *testInternalPod) DeepCopyObject() runtime.Object {
	c := *p
	p.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return &c
}

func testObjectInterfaces(t *testing.T) admission.ObjectInterfaces {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	scheme.AddKnownTypeWithName(schema.GroupVersionKind{Version: runtime.APIVersionInternal, Kind: "Pod"}, &testInternalPod{})
	err := scheme.AddConversionFunc((*testInternalPod)(nil), (*corev1.Pod)(nil), func(a, b any, _ conversion.Scope) error {
		in, out := a.(*testInternalPod), b.(*corev1.Pod)
		out.ObjectMeta = in.ObjectMeta
		out.Spec.Containers = []corev1.Container{{Name: "main", Image: in.Image}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return admission.NewObjectInterfacesFromScheme(scheme)
}

func testPod(image string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: image}}},
	}
}

func testDeployment(replicas int32, image string) *appsv1.Deployment {
	labels := map[string]string{"app": "api"}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "prod", ResourceVersion: "7"},
		Spec: appsv1.DeploymentSpec{
			Replicas: reviewPtr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: image}}},
			},
		},
	}
}

// reviewPtr returns a pointer to v.
func reviewPtr[T any](v T) *T { return &v }

func testCreateOptions() *metav1.CreateOptions {
	return &metav1.CreateOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "CreateOptions"}}
}

// The expected reviews are the JSON a Gatekeeper policy sees as
// input.review (uid left out: it is random and checked separately).
const (
	testUserJSON = `{"username": "alice", "uid": "u-1", "groups": ["dev", "system:authenticated"], "extra": {"scopes": ["a", "b"]}}`

	testPodJSON = `{
		"kind": "Pod", "apiVersion": "v1",
		"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
		"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "resources": {}}]},
		"status": {}
	}`

	testDeploymentJSON = `{
		"kind": "Deployment", "apiVersion": "apps/v1",
		"metadata": {"name": "api", "namespace": "prod", "resourceVersion": "7"},
		"spec": {
			"replicas": %d,
			"selector": {"matchLabels": {"app": "api"}},
			"template": {
				"metadata": {"labels": {"app": "api"}},
				"spec": {"containers": [{"name": "api", "image": "%s", "resources": {}}]}
			},
			"strategy": {}
		},
		"status": {}
	}`
)

func TestReview(t *testing.T) {
	o := testObjectInterfaces(t)

	tests := []struct {
		name  string
		attrs admission.Attributes
		want  string // JSON
	}{
		{
			name: "pod create",
			attrs: admission.NewAttributesRecord(testPod("nginx:1.27"), nil, testPodGVK, "default", "web", testPodGVR, "",
				admission.Create, testCreateOptions(), false, testUser),
			want: `{
				"kind": {"group": "", "version": "v1", "kind": "Pod"},
				"resource": {"group": "", "version": "v1", "resource": "pods"},
				"requestKind": {"group": "", "version": "v1", "kind": "Pod"},
				"requestResource": {"group": "", "version": "v1", "resource": "pods"},
				"name": "web",
				"namespace": "default",
				"operation": "CREATE",
				"userInfo": ` + testUserJSON + `,
				"object": ` + testPodJSON + `,
				"oldObject": null,
				"dryRun": false,
				"options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
			}`,
		},
		{
			name: "deployment update",
			attrs: admission.NewAttributesRecord(testDeployment(5, "api:2"), testDeployment(3, "api:1"), testDeploymentGVK, "prod", "api", testDeploymentGVR, "",
				admission.Update, &metav1.UpdateOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "UpdateOptions"}, FieldManager: "kubectl"}, false,
				&user.DefaultInfo{Name: "system:serviceaccount:ci:deployer", Groups: []string{"system:serviceaccounts"}}),
			want: `{
				"kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
				"resource": {"group": "apps", "version": "v1", "resource": "deployments"},
				"requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
				"requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
				"name": "api",
				"namespace": "prod",
				"operation": "UPDATE",
				"userInfo": {"username": "system:serviceaccount:ci:deployer", "groups": ["system:serviceaccounts"]},
				"object": ` + fmt.Sprintf(testDeploymentJSON, 5, "api:2") + `,
				"oldObject": ` + fmt.Sprintf(testDeploymentJSON, 3, "api:1") + `,
				"dryRun": false,
				"options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl"}
			}`,
		},
		{
			// Gatekeeper copies oldObject into object for DELETE.
			name: "pod delete",
			attrs: admission.NewAttributesRecord(nil, testPod("nginx:1.27"), testPodGVK, "default", "web", testPodGVR, "",
				admission.Delete, &metav1.DeleteOptions{PropagationPolicy: reviewPtr(metav1.DeletePropagationForeground)}, false, testUser),
			want: `{
				"kind": {"group": "", "version": "v1", "kind": "Pod"},
				"resource": {"group": "", "version": "v1", "resource": "pods"},
				"requestKind": {"group": "", "version": "v1", "kind": "Pod"},
				"requestResource": {"group": "", "version": "v1", "resource": "pods"},
				"name": "web",
				"namespace": "default",
				"operation": "DELETE",
				"userInfo": ` + testUserJSON + `,
				"object": ` + testPodJSON + `,
				"oldObject": ` + testPodJSON + `,
				"dryRun": false,
				"options": {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Foreground"}
			}`,
		},
		{
			name: "dry run",
			attrs: admission.NewAttributesRecord(testPod("nginx:1.27"), nil, testPodGVK, "default", "web", testPodGVR, "",
				admission.Create, &metav1.CreateOptions{DryRun: []string{"All"}}, true, testUser),
			want: `{
				"kind": {"group": "", "version": "v1", "kind": "Pod"},
				"resource": {"group": "", "version": "v1", "resource": "pods"},
				"requestKind": {"group": "", "version": "v1", "kind": "Pod"},
				"requestResource": {"group": "", "version": "v1", "resource": "pods"},
				"name": "web",
				"namespace": "default",
				"operation": "CREATE",
				"userInfo": ` + testUserJSON + `,
				"object": ` + testPodJSON + `,
				"oldObject": null,
				"dryRun": true,
				"options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"]}
			}`,
		},
		{
			name: "subresource",
			attrs: admission.NewAttributesRecord(
				&autoscalingv1.Scale{
					TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v1", Kind: "Scale"},
					ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "prod"},
					Spec:       autoscalingv1.ScaleSpec{Replicas: 10},
				},
				&autoscalingv1.Scale{
					TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v1", Kind: "Scale"},
					ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "prod"},
					Spec:       autoscalingv1.ScaleSpec{Replicas: 3},
					Status:     autoscalingv1.ScaleStatus{Replicas: 3, Selector: "app=api"},
				},
				testScaleGVK, "prod", "api", testDeploymentGVR, "scale",
				admission.Update, &metav1.UpdateOptions{}, false, testUser),
			want: `{
				"kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
				"resource": {"group": "apps", "version": "v1", "resource": "deployments"},
				"subResource": "scale",
				"requestKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
				"requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
				"requestSubResource": "scale",
				"name": "api",
				"namespace": "prod",
				"operation": "UPDATE",
				"userInfo": ` + testUserJSON + `,
				"object": {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "api", "namespace": "prod"}, "spec": {"replicas": 10}, "status": {"replicas": 0}},
				"oldObject": {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "api", "namespace": "prod"}, "spec": {"replicas": 3}, "status": {"replicas": 3, "selector": "app=api"}},
				"dryRun": false,
				"options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
			}`,
		},
		{
			// The API server's attributes hold internal objects; the
			// webhook gets them converted to the request's version.
			name: "internal object converted to the request version",
			attrs: admission.NewAttributesRecord(&testInternalPod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Image: "busybox"}, nil,
				testPodGVK, "default", "web", testPodGVR, "", admission.Create, testCreateOptions(), false, testUser),
			want: `{
				"kind": {"group": "", "version": "v1", "kind": "Pod"},
				"resource": {"group": "", "version": "v1", "resource": "pods"},
				"requestKind": {"group": "", "version": "v1", "kind": "Pod"},
				"requestResource": {"group": "", "version": "v1", "resource": "pods"},
				"name": "web",
				"namespace": "default",
				"operation": "CREATE",
				"userInfo": ` + testUserJSON + `,
				"object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web", "namespace": "default"}, "spec": {"containers": [{"name": "main", "image": "busybox", "resources": {}}]}, "status": {}},
				"oldObject": null,
				"dryRun": false,
				"options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
			}`,
		},
		{
			// Gatekeeper clears the namespace of a Namespace request; a
			// generateName request has no name.
			name: "namespace create",
			attrs: admission.NewAttributesRecord(
				&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{GenerateName: "team-"}},
				nil, testNamespaceGVK, "team-", "", testNamespaceGVR, "", admission.Create, testCreateOptions(), false, testUser),
			want: `{
				"kind": {"group": "", "version": "v1", "kind": "Namespace"},
				"resource": {"group": "", "version": "v1", "resource": "namespaces"},
				"requestKind": {"group": "", "version": "v1", "kind": "Namespace"},
				"requestResource": {"group": "", "version": "v1", "resource": "namespaces"},
				"operation": "CREATE",
				"userInfo": ` + testUserJSON + `,
				"object": {"kind": "Namespace", "apiVersion": "v1", "metadata": {"generateName": "team-"}, "spec": {}, "status": {}},
				"oldObject": null,
				"dryRun": false,
				"options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
			}`,
		},
	}

	uidPattern := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Review(tt.attrs, o)
			if err != nil {
				t.Fatalf("Review: %v", err)
			}
			uid, _ := got["uid"].(string)
			if !uidPattern.MatchString(uid) {
				t.Errorf("uid = %#v, want a UUID", got["uid"])
			}
			delete(got, "uid")
			var want map[string]any
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatalf("bad expectation: %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("review (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReviewValueTypes(t *testing.T) {
	attrs := admission.NewAttributesRecord(testDeployment(3, "api:1"), nil, testDeploymentGVK, "prod", "api", testDeploymentGVR, "",
		admission.Create, testCreateOptions(), false, testUser)
	got, err := Review(attrs, testObjectInterfaces(t))
	if err != nil {
		t.Fatal(err)
	}
	// Numbers are float64, as Gatekeeper's encoding/json round trip makes them.
	spec := got["object"].(map[string]any)["spec"].(map[string]any)
	if r, ok := spec["replicas"].(float64); !ok || r != 3 {
		t.Errorf("spec.replicas = %#v (%T), want float64 3", spec["replicas"], spec["replicas"])
	}
	if _, ok := got["dryRun"].(bool); !ok {
		t.Errorf("dryRun = %#v, want a bool", got["dryRun"])
	}
	if _, ok := got["userInfo"].(map[string]any)["groups"].([]any); !ok {
		t.Errorf("userInfo.groups = %T, want []any", got["userInfo"].(map[string]any)["groups"])
	}
	if v, ok := got["oldObject"]; !ok || v != nil {
		t.Errorf("oldObject = %#v (present %v), want null", v, ok)
	}
}

func TestReviewUIDsDiffer(t *testing.T) {
	o := testObjectInterfaces(t)
	attrs := admission.NewAttributesRecord(testPod("nginx"), nil, testPodGVK, "default", "web", testPodGVR, "", admission.Create, testCreateOptions(), false, testUser)
	a, err := Review(attrs, o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Review(attrs, o)
	if err != nil {
		t.Fatal(err)
	}
	if a["uid"] == b["uid"] {
		t.Errorf("two reviews share uid %v", a["uid"])
	}
}

func TestReviewErrors(t *testing.T) {
	o := testObjectInterfaces(t)
	tests := []struct {
		name  string
		attrs admission.Attributes
		is    error
	}{
		{
			name:  "delete without oldObject",
			attrs: admission.NewAttributesRecord(nil, nil, testPodGVK, "default", "web", testPodGVR, "", admission.Delete, &metav1.DeleteOptions{}, false, testUser),
			is:    errDeleteWithoutOldObject,
		},
		{
			// A Pod's kind with a Deployment object: no conversion exists.
			name: "object not convertible to the request kind",
			attrs: admission.NewAttributesRecord(testDeployment(1, "x"), nil, testPodGVK, "default", "web", testPodGVR, "",
				admission.Create, testCreateOptions(), false, testUser),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Review(tt.attrs, o)
			if err == nil {
				t.Fatalf("Review = %v, want an error", got)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error = %v, want %v", err, tt.is)
			}
		})
	}
}

func TestWithNamespace(t *testing.T) {
	o := testObjectInterfaces(t)
	ns := map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": "default", "labels": map[string]any{"team": "web"}},
	}
	review, err := Review(admission.NewAttributesRecord(testPod("nginx"), nil, testPodGVK, "default", "web", testPodGVR, "",
		admission.Create, testCreateOptions(), false, testUser), o)
	if err != nil {
		t.Fatal(err)
	}
	before := len(review)

	WithNamespace(review, nil)
	if _, ok := review["namespaceObject"]; ok || len(review) != before {
		t.Fatalf("WithNamespace(nil) changed the review: %v", review)
	}

	WithNamespace(review, ns)
	if diff := cmp.Diff(ns, review["namespaceObject"]); diff != "" {
		t.Errorf("input.review.namespaceObject (-want +got):\n%s", diff)
	}
	if len(review) != before+1 {
		t.Errorf("WithNamespace added %d keys, want 1", len(review)-before)
	}
	if _, ok := review["_unstable"]; ok {
		t.Errorf("review has _unstable, which current Gatekeeper does not set")
	}
}
