package mutation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// digests answers image keys with a digest, "oops" keys with a per-key
// error, and fails whole for the provider "down"; it records each call.
type digests struct {
	mu    sync.Mutex
	calls []string // "provider: key key ..."
}

func (d *digests) Resolve(_ context.Context, provider string, keys []string) (map[string]string, map[string]error, error) {
	d.mu.Lock()
	sorted := slices.Sorted(slices.Values(keys))
	d.calls = append(d.calls, provider+": "+strings.Join(sorted, " "))
	d.mu.Unlock()
	if provider == "down" {
		return nil, nil, errors.New("failed to send external data request to provider down: connection refused")
	}
	values, errs := map[string]string{}, map[string]error{}
	for _, k := range keys {
		switch {
		case strings.Contains(k, "oops"):
			errs[k] = fmt.Errorf("failed to retrieve external data item from provider %s: no digest for %s", provider, k)
		case strings.HasPrefix(k, "user:"):
		default:
			values[k] = k + "@sha256:0123"
		}
	}
	if provider == "users" {
		for _, k := range keys {
			values[k] = "team-of-" + k
		}
	}
	return values, errs, nil
}

func externalAssign(name, location, externalData string) string {
	return assignYAML(name, location, "assign: {externalData: "+externalData+"}")
}

func TestAssignExternalData(t *testing.T) {
	const pod = `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev}
spec:
  containers:
  - {name: main, image: nginx}
  - {name: log, image: nginx}
  - {name: side, image: oops}
  initContainers:
  - {name: init, image: busybox}
`
	image := func(u *unstructured.Unstructured, list string, i int) string {
		l, _, _ := unstructured.NestedSlice(u.Object, "spec", list)
		s, _, _ := unstructured.NestedString(l[i].(map[string]any), "image")
		return s
	}
	for _, tc := range []struct {
		name     string
		mutators []string
		wantErr  string
		want     []string // images of main, log, side, init
		calls    []string
	}{
		{
			name:     "values replace the keys; one call per provider with distinct keys",
			mutators: []string{externalAssign("digest", "spec.containers[name: main].image", "{provider: registry}"), externalAssign("digest-log", "spec.containers[name: log].image", "{provider: registry}"), externalAssign("init", "spec.initContainers[name: *].image", "{provider: registry}")},
			want:     []string{"nginx@sha256:0123", "nginx@sha256:0123", "oops", "busybox@sha256:0123"},
			calls:    []string{"registry: busybox nginx"},
		},
		{
			name:     "Fail refuses with Gatekeeper's words",
			mutators: []string{externalAssign("all", "spec.containers[name: *].image", "{provider: registry}")},
			wantErr:  "failed to resolve external data placeholders: failed to retrieve external data item from provider registry: no digest for oops",
			calls:    []string{"registry: nginx oops"},
		},
		{
			name:     "Ignore keeps the key",
			mutators: []string{externalAssign("all", "spec.containers[name: *].image", "{provider: registry, failurePolicy: Ignore}")},
			want:     []string{"nginx@sha256:0123", "nginx@sha256:0123", "oops", "busybox"},
			calls:    []string{"registry: nginx oops"},
		},
		{
			name:     "UseDefault writes the default",
			mutators: []string{externalAssign("all", "spec.containers[name: *].image", "{provider: down, failurePolicy: UseDefault, default: 'registry.example/fallback:1'}")},
			want:     []string{"registry.example/fallback:1", "registry.example/fallback:1", "registry.example/fallback:1", "busybox"},
			calls:    []string{"down: nginx oops"},
		},
		{
			name:     "a provider that cannot answer fails every key",
			mutators: []string{externalAssign("main", "spec.containers[name: main].image", "{provider: down}")},
			wantErr:  "failed to resolve external data placeholders: failed to send external data request to provider down: connection refused",
			calls:    []string{"down: nginx"},
		},
		{
			name:     "two errors are listed together",
			mutators: []string{externalAssign("main", "spec.containers[name: main].image", "{provider: down}"), externalAssign("side", "spec.containers[name: side].image", "{provider: registry}")},
			wantErr:  "failed to resolve external data placeholders: [",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newSystem(t, tc.mutators...)
			x := &digests{}
			sys.SetExternalData(x)
			obj := fromYAML(t, pod)
			changed, _, err := sys.MutateContext(context.Background(), createIn(podGVK, "dev"), obj)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if image(obj, "containers", 0) != "nginx" {
					t.Errorf("the object changed although mutation failed: %v", obj.Object)
				}
			} else {
				if err != nil || !changed {
					t.Fatalf("changed %v, err %v", changed, err)
				}
				got := []string{image(obj, "containers", 0), image(obj, "containers", 1), image(obj, "containers", 2), image(obj, "initContainers", 0)}
				if !slices.Equal(got, tc.want) {
					t.Errorf("images = %v, want %v", got, tc.want)
				}
			}
			if tc.calls != nil && !slices.Equal(x.calls, tc.calls) {
				t.Errorf("calls = %v, want %v", x.calls, tc.calls)
			}
		})
	}
}

func TestExternalDataUsernameAndNoProviders(t *testing.T) {
	owner := `
apiVersion: mutations.gatekeeper.sh/v1
kind: AssignMetadata
metadata: {name: team, generation: 1}
spec:
  location: metadata.labels.team
  parameters:
    assign: {externalData: {provider: users, dataSource: Username}}
`
	sys := newSystem(t, owner)
	sys.SetExternalData(&digests{})
	obj := fromYAML(t, testPod)
	req := createIn(podGVK, "dev")
	req.Username = "alice"
	if _, _, err := sys.MutateContext(context.Background(), req, obj); err != nil {
		t.Fatal(err)
	}
	if got := obj.GetLabels()["team"]; got != "team-of-alice" {
		t.Errorf("label team = %q, want the provider's answer for the user", got)
	}
	// AssignMetadata never changes an existing label.
	again := obj.DeepCopy()
	if changed, _, err := sys.MutateContext(context.Background(), req, again); err != nil || changed {
		t.Errorf("an existing label: changed %v, err %v", changed, err)
	}

	// Without providers (gatehouse test), the mutation says why it fails.
	plain := newSystem(t, owner)
	_, _, err := plain.Mutate(req, fromYAML(t, testPod))
	if err == nil || !strings.Contains(err.Error(), "external data providers are not available here") {
		t.Errorf("no providers: %v", err)
	}
}

func TestExternalDataValueNotAString(t *testing.T) {
	sys := newSystem(t, externalAssign("replicas", "spec.priority", "{provider: registry}"))
	sys.SetExternalData(&digests{})
	obj := fromYAML(t, testPod)
	unstructured.SetNestedField(obj.Object, int64(3), "spec", "priority")
	_, _, err := sys.Mutate(createIn(podGVK, "dev"), obj)
	if err == nil || !strings.Contains(err.Error(), "value assigned to external data placeholder is not a string, got 3 (int64)") {
		t.Errorf("a number at the location: %v", err)
	}
}
