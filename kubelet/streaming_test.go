package kubelet

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/gatehouse-dev/gatehouse/kubelet/simulated"
)

// streamingServer is a kubelet API server (without its authn/authz
// filter) over the simulated runtime, with pod default/web (UID uid-web)
// whose container "app" runs and whose container "later" was not created.
func streamingServer(t *testing.T) http.Handler {
	t.Helper()
	ctx := context.Background()
	rt := simulated.New(simulated.Options{Images: []string{"busybox"}})
	t.Cleanup(func() { _ = rt.Close(ctx) })
	labels := map[string]string{labelPodUID: "uid-web", labelManaged: "true"}
	sbCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid-web"}, Labels: labels, LogDirectory: t.TempDir()}
	sb, err := rt.RunPodSandbox(ctx, sbCfg, "")
	if err != nil {
		t.Fatal(err)
	}
	id, err := rt.CreateContainer(ctx, sb, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}, Labels: labels, LogPath: "app.log"}, sbCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = indexer.Add(&v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: "uid-web"},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app"}, {Name: "later"}}},
	})
	a := &Agent{cfg: Config{NodeName: "n1"}, runtime: rt, logger: slog.New(slog.DiscardHandler), pods: corelisters.NewPodLister(indexer)}
	mux := http.NewServeMux()
	(&server{agent: a}).routeStreaming(mux)
	return mux
}

func TestStreamingErrors(t *testing.T) {
	h := streamingServer(t)
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
	}{
		{"no stream asked for", "POST", "/exec/default/web/app?command=true", http.StatusBadRequest, "you must specify at least 1 of stdin, stdout, stderr"},
		{"pod not on this node", "POST", "/exec/default/nope/app?command=true&output=1", http.StatusNotFound, "pod default/nope not found on node n1"},
		{"another pod's UID", "POST", "/exec/default/web/uid-old/app?command=true&output=1", http.StatusNotFound, "pod default/web with UID uid-old not found on node n1"},
		{"container not in the pod", "POST", "/attach/default/web/nope?output=1", http.StatusNotFound, `container "nope" not found in pod default/web`},
		{"container not running", "POST", "/exec/default/web/later?command=true&output=1", http.StatusNotFound, `container "later" in pod default/web is not running on node n1`},
		{"the runtime refuses exec", "POST", "/exec/default/web/uid-web/app?command=true&output=1", http.StatusInternalServerError, "Exec is not supported by the simulated runtime"},
		{"the runtime refuses attach", "GET", "/attach/default/web/app?output=1", http.StatusInternalServerError, "Attach is not supported by the simulated runtime"},
		{"the runtime refuses port-forward", "POST", "/portForward/default/web", http.StatusInternalServerError, "PortForward is not supported by the simulated runtime"},
		{"port-forward to a pod not on this node", "POST", "/portForward/default/nope/uid-x", http.StatusNotFound, "pod default/nope not found on node n1"},
		// The simulated runtime answers ExecSync (exit 0, no output).
		{"run through the runtime's ExecSync", "POST", "/run/default/web/app?cmd=ls+/", http.StatusOK, ""},
		{"run is POST only", "GET", "/run/default/web/app?cmd=ls", http.StatusMethodNotAllowed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.path, rec.Code, rec.Body.String(), tc.status, tc.body)
			}
		})
	}
}
