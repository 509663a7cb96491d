package constraint

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/storage"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func invObject(apiVersion, kind, namespace, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind}}
	u.SetName(name)
	if namespace != "" {
		u.SetNamespace(namespace)
	}
	return u
}

func invIngress(apiVersion, namespace, name, host string) *unstructured.Unstructured {
	u := invObject(apiVersion, "Ingress", namespace, name)
	u.Object["spec"] = map[string]any{"rules": []any{map[string]any{"host": host}}}
	return u
}

// readInventory is data.inventory as the store holds it.
func readInventory(t *testing.T, e *Engine) any {
	t.Helper()
	v, err := storage.ReadOne(context.Background(), e.store, inventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestInventoryKey(t *testing.T) {
	tests := []struct {
		name    string
		obj     *unstructured.Unstructured
		want    []string
		wantErr string
	}{
		{"cluster-scoped, core group", invObject("v1", "Namespace", "", "dev"), []string{"cluster", "v1", "Namespace", "dev"}, ""},
		{"cluster-scoped, other group", invObject("rbac.authorization.k8s.io/v1", "ClusterRole", "", "admin"), []string{"cluster", "rbac.authorization.k8s.io/v1", "ClusterRole", "admin"}, ""},
		{"namespaced, core group", invObject("v1", "Service", "dev", "web"), []string{"namespace", "dev", "v1", "Service", "web"}, ""},
		{"namespaced, other group", invObject("networking.k8s.io/v1", "Ingress", "dev", "web"), []string{"namespace", "dev", "networking.k8s.io/v1", "Ingress", "web"}, ""},
		{"no version", invObject("", "Pod", "dev", "p"), nil, "has no version"},
		{"no kind", invObject("v1", "", "dev", "p"), nil, "has no kind"},
		{"no name", invObject("v1", "Pod", "dev", ""), nil, "has no name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := InventoryKey(tt.obj)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("key %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSetAndRemoveInventory(t *testing.T) {
	ns := invObject("v1", "Namespace", "", "dev")
	role := invObject("rbac.authorization.k8s.io/v1", "ClusterRole", "", "admin")
	svc := invObject("v1", "Service", "dev", "web")
	svc2 := invObject("v1", "Service", "dev", "api")
	ing := invIngress("networking.k8s.io/v1", "dev", "web", "a.example.com")
	ingProd := invIngress("networking.k8s.io/v1", "prod", "web", "b.example.com")
	ingChanged := invIngress("networking.k8s.io/v1", "dev", "web", "c.example.com")

	// obj is what the store holds for u: the whole object.
	obj := func(u *unstructured.Unstructured) any { return u.DeepCopy().Object }

	tests := []struct {
		name   string
		set    []*unstructured.Unstructured
		remove []*unstructured.Unstructured
		kinds  []schema.GroupVersionKind // removed with RemoveInventoryKind
		want   map[string]any
	}{
		{
			name: "empty",
			want: map[string]any{},
		},
		{
			name: "cluster-scoped objects of the core and another group",
			set:  []*unstructured.Unstructured{ns, role},
			want: map[string]any{"cluster": map[string]any{
				"v1":                           map[string]any{"Namespace": map[string]any{"dev": obj(ns)}},
				"rbac.authorization.k8s.io/v1": map[string]any{"ClusterRole": map[string]any{"admin": obj(role)}},
			}},
		},
		{
			name: "namespaced objects next to each other",
			set:  []*unstructured.Unstructured{svc, svc2, ing, ingProd},
			want: map[string]any{"namespace": map[string]any{
				"dev": map[string]any{
					"v1":                   map[string]any{"Service": map[string]any{"web": obj(svc), "api": obj(svc2)}},
					"networking.k8s.io/v1": map[string]any{"Ingress": map[string]any{"web": obj(ing)}},
				},
				"prod": map[string]any{
					"networking.k8s.io/v1": map[string]any{"Ingress": map[string]any{"web": obj(ingProd)}},
				},
			}},
		},
		{
			name: "an update replaces the object",
			set:  []*unstructured.Unstructured{ing, ingChanged},
			want: map[string]any{"namespace": map[string]any{"dev": map[string]any{
				"networking.k8s.io/v1": map[string]any{"Ingress": map[string]any{"web": obj(ingChanged)}},
			}}},
		},
		{
			name:   "remove keeps the neighbours",
			set:    []*unstructured.Unstructured{svc, svc2, ing},
			remove: []*unstructured.Unstructured{svc2},
			want: map[string]any{"namespace": map[string]any{"dev": map[string]any{
				"v1":                   map[string]any{"Service": map[string]any{"web": obj(svc)}},
				"networking.k8s.io/v1": map[string]any{"Ingress": map[string]any{"web": obj(ing)}},
			}}},
		},
		{
			name:   "remove leaves no empty objects",
			set:    []*unstructured.Unstructured{ns, svc, ingProd},
			remove: []*unstructured.Unstructured{svc, ns},
			want: map[string]any{"namespace": map[string]any{
				"prod": map[string]any{"networking.k8s.io/v1": map[string]any{"Ingress": map[string]any{"web": obj(ingProd)}}},
			}},
		},
		{
			name:   "removing what is not there is no error",
			set:    []*unstructured.Unstructured{svc},
			remove: []*unstructured.Unstructured{svc2, ing, role},
			want: map[string]any{"namespace": map[string]any{"dev": map[string]any{
				"v1": map[string]any{"Service": map[string]any{"web": obj(svc)}},
			}}},
		},
		{
			name:  "remove a kind in every namespace",
			set:   []*unstructured.Unstructured{svc, ing, ingProd, ns},
			kinds: []schema.GroupVersionKind{{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}},
			want: map[string]any{
				"namespace": map[string]any{"dev": map[string]any{
					"v1": map[string]any{"Service": map[string]any{"web": obj(svc)}},
				}},
				"cluster": map[string]any{"v1": map[string]any{"Namespace": map[string]any{"dev": obj(ns)}}},
			},
		},
		{
			name:  "remove a cluster-scoped kind; other versions stay",
			set:   []*unstructured.Unstructured{ns, role, invObject("rbac.authorization.k8s.io/v1beta1", "ClusterRole", "", "old")},
			kinds: []schema.GroupVersionKind{{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}, {Version: "v1", Kind: "Pod"}},
			want: map[string]any{"cluster": map[string]any{
				"v1":                                map[string]any{"Namespace": map[string]any{"dev": obj(ns)}},
				"rbac.authorization.k8s.io/v1beta1": map[string]any{"ClusterRole": map[string]any{"old": obj(invObject("rbac.authorization.k8s.io/v1beta1", "ClusterRole", "", "old"))}},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e := NewEngine(0)
			for _, u := range tt.set {
				if err := e.SetInventory(ctx, u); err != nil {
					t.Fatalf("SetInventory %s: %v", u.GetName(), err)
				}
			}
			for _, u := range tt.remove {
				if err := e.RemoveInventory(ctx, u); err != nil {
					t.Fatalf("RemoveInventory %s: %v", u.GetName(), err)
				}
			}
			for _, gvk := range tt.kinds {
				if err := e.RemoveInventoryKind(ctx, gvk); err != nil {
					t.Fatalf("RemoveInventoryKind %s: %v", gvk, err)
				}
			}
			if diff := cmp.Diff(any(tt.want), readInventory(t, e)); diff != "" {
				t.Errorf("data.inventory (-want +got):\n%s", diff)
			}
		})
	}
}

// The stored object is a copy: changing the caller's object afterwards
// does not change data.inventory.
func TestSetInventoryCopies(t *testing.T) {
	e := NewEngine(0)
	u := invIngress("networking.k8s.io/v1", "dev", "web", "a.example.com")
	if err := e.SetInventory(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	u.Object["spec"] = "changed"
	got, err := storage.ReadOne(context.Background(), e.store, inventoryPath("namespace", "dev", "networking.k8s.io/v1", "Ingress", "web", "spec"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.(map[string]any); !ok {
		t.Errorf("stored spec = %#v, want the original object", got)
	}
}

// uniqueIngressHost is the Gatekeeper library's k8suniqueingresshost
// (library/general/uniqueingresshost/template.yaml), unchanged.
const uniqueIngressHost = `package k8suniqueingresshost

identical(obj, review) {
  obj.metadata.namespace == review.object.metadata.namespace
  obj.metadata.name == review.object.metadata.name
}

violation[{"msg": msg}] {
  input.review.kind.kind == "Ingress"
  re_match("^(extensions|networking.k8s.io)$", input.review.kind.group)
  host := input.review.object.spec.rules[_].host
  other := data.inventory.namespace[_][otherapiversion]["Ingress"][name]
  re_match("^(extensions|networking.k8s.io)/.+$", otherapiversion)
  other.spec.rules[_].host == host
  not identical(other, input.review)
  msg := sprintf("ingress host conflicts with an existing ingress <%v>", [host])
}
`

func TestReferentialTemplate(t *testing.T) {
	const host = "example-host.example.com"
	gvk := schema.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}
	incoming := invIngress("networking.k8s.io/v1", "default", "ingress-host-example", host)
	review := map[string]any{
		"kind":      map[string]any{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind},
		"namespace": "default",
		"name":      incoming.GetName(),
		"operation": "CREATE",
		"object":    incoming.Object,
	}
	target := &Target{GVK: gvk, Namespace: "default", Name: incoming.GetName(), Object: incoming.Object}
	conflict := "ingress host conflicts with an existing ingress <" + host + ">"

	tests := []struct {
		name   string
		set    []*unstructured.Unstructured
		remove []*unstructured.Unstructured
		want   []string
	}{
		{name: "empty inventory"},
		{
			name: "the ingress itself is in the inventory",
			set:  []*unstructured.Unstructured{invIngress("networking.k8s.io/v1", "default", "ingress-host-example", host)},
		},
		{
			name: "another ingress in another namespace has the host",
			set:  []*unstructured.Unstructured{invIngress("networking.k8s.io/v1", "other", "taken", host)},
			want: []string{conflict},
		},
		{
			name: "another ingress in the same namespace has the host",
			set:  []*unstructured.Unstructured{invIngress("networking.k8s.io/v1", "default", "taken", host)},
			want: []string{conflict},
		},
		{
			name: "an extensions/v1beta1 ingress has the host",
			set:  []*unstructured.Unstructured{invIngress("extensions/v1beta1", "other", "taken", host)},
			want: []string{conflict},
		},
		{
			name: "another ingress has another host",
			set:  []*unstructured.Unstructured{invIngress("networking.k8s.io/v1", "other", "elsewhere", "other.example.com")},
		},
		{
			name: "an object of another kind has the host",
			set: []*unstructured.Unstructured{func() *unstructured.Unstructured {
				u := invIngress("networking.k8s.io/v1", "other", "taken", host)
				u.SetKind("NotIngress")
				return u
			}()},
		},
		{
			name:   "the other ingress was removed",
			set:    []*unstructured.Unstructured{invIngress("networking.k8s.io/v1", "other", "taken", host)},
			remove: []*unstructured.Unstructured{invIngress("networking.k8s.io/v1", "other", "taken", host)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e := NewEngine(0)
			mustAddTemplate(t, e, TemplateSource{Name: "k8suniqueingresshost", Kind: "K8sUniqueIngressHost", Rego: uniqueIngressHost})
			mustAddConstraint(t, e, &Constraint{Kind: "K8sUniqueIngressHost", Name: "unique-ingress-host"})
			for _, u := range tt.set {
				if err := e.SetInventory(ctx, u); err != nil {
					t.Fatal(err)
				}
			}
			for _, u := range tt.remove {
				if err := e.RemoveInventory(ctx, u); err != nil {
					t.Fatal(err)
				}
			}
			got, err := e.Review(ctx, review, target)
			if err != nil {
				t.Fatal(err)
			}
			var msgs []string
			for _, v := range got {
				msgs = append(msgs, v.Msg)
			}
			if !slices.Equal(msgs, tt.want) {
				t.Errorf("violations %q, want %q", msgs, tt.want)
			}
		})
	}
}

func TestSyncedGVKs(t *testing.T) {
	config := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"sync": map[string]any{"syncOnly": []any{
		map[string]any{"group": "", "version": "v1", "kind": "Namespace"},
		map[string]any{"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
		map[string]any{"group": "apps", "kind": "Deployment"},
	}}}}}
	syncSet := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"gvks": []any{
		map[string]any{"version": "v1", "kind": "Service"},
	}}}}
	tests := []struct {
		name  string
		obj   *unstructured.Unstructured
		field []string
		want  []schema.GroupVersionKind
		errs  []string
	}{
		{"Config", config, []string{"spec", "sync", "syncOnly"},
			[]schema.GroupVersionKind{{Version: "v1", Kind: "Namespace"}, {Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}},
			[]string{"spec.sync.syncOnly[2]: version and kind are required"}},
		{"SyncSet", syncSet, []string{"spec", "gvks"}, []schema.GroupVersionKind{{Version: "v1", Kind: "Service"}}, nil},
		{"nothing listed", &unstructured.Unstructured{Object: map[string]any{}}, []string{"spec", "gvks"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := SyncedGVKs(tt.obj, tt.field...)
			if !slices.Equal(got, tt.want) {
				t.Errorf("GVKs %v, want %v", got, tt.want)
			}
			var msgs []string
			for _, err := range errs {
				msgs = append(msgs, err.Error())
			}
			if !slices.Equal(msgs, tt.errs) {
				t.Errorf("errors %q, want %q", msgs, tt.errs)
			}
		})
	}
}

func TestInventoryCRDs(t *testing.T) {
	config, syncSet := ConfigCRD(), SyncSetCRD()
	if config.Name != "configs.config.gatekeeper.sh" || config.Spec.Scope != "Namespaced" || config.Spec.Names.Kind != "Config" {
		t.Errorf("Config CRD %s: scope %s, kind %s", config.Name, config.Spec.Scope, config.Spec.Names.Kind)
	}
	if syncSet.Name != "syncsets.syncset.gatekeeper.sh" || syncSet.Spec.Scope != "Cluster" || syncSet.Spec.Names.Kind != "SyncSet" {
		t.Errorf("SyncSet CRD %s: scope %s, kind %s", syncSet.Name, syncSet.Spec.Scope, syncSet.Spec.Names.Kind)
	}
	entry := config.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["sync"].Properties["syncOnly"].Items.Schema
	if entry == nil || entry.Properties["kind"].Type != "string" {
		t.Errorf("Config spec.sync.syncOnly items: %+v", entry)
	}
	entry = syncSet.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["gvks"].Items.Schema
	if entry == nil || entry.Properties["version"].Type != "string" {
		t.Errorf("SyncSet spec.gvks items: %+v", entry)
	}
}
