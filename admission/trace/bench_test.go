package trace

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

// constraintsPlugin reports n constraints per request as the Gatekeeper
// plugin does: some skipped with a reason, the rest allowed.
// The names and reasons are made once: the real plugin has them (its
// matcher says why a constraint did not match, traced or not), so only
// reporting them is the trace's cost.
type constraintsPlugin struct {
	*admission.Handler
	names []string
}

const skipReason = `kinds: ""/Pod not in ["apps"/Deployment]`

func newConstraintsPlugin(h *admission.Handler, n int) *constraintsPlugin {
	p := &constraintsPlugin{Handler: h}
	for i := range n {
		p.names = append(p.names, fmt.Sprintf("c%d", i))
	}
	return p
}

func (p *constraintsPlugin) Validate(ctx context.Context, _ admission.Attributes, _ admission.ObjectInterfaces) error {
	if !Tracing(ctx) {
		return nil
	}
	for i, name := range p.names {
		if i%2 == 0 {
			AddPolicy(ctx, Policy{Kind: "K8sRequiredLabels", Name: name, Verdict: VerdictSkip, Reason: skipReason})
			continue
		}
		AddPolicy(ctx, Policy{Kind: "K8sRequiredLabels", Name: name, Verdict: VerdictAllow})
	}
	return nil
}

// chainHandler runs a chain shaped like the API server's for a Pod
// create: plugins mutating and validating plugins that allow, one of which
// reports constraints.
func chainHandler(constraints int) http.Handler {
	handles := admission.NewHandler(admission.Create)
	var mutating []admission.MutationInterface
	var validating []admission.ValidationInterface
	for i := range 12 {
		mutating = append(mutating, decorate(&fakePlugin{Handler: handles}, fmt.Sprintf("Mutating%d", i), nil, nil).(admission.MutationInterface))
	}
	for i := range 12 {
		validating = append(validating, decorate(&fakeValidator{Handler: handles}, fmt.Sprintf("Validating%d", i), nil, nil).(admission.ValidationInterface))
	}
	validating = append(validating, decorate(newConstraintsPlugin(handles, constraints), "GatekeeperConstraints", nil, nil).(admission.ValidationInterface))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attrs := admission.NewAttributesRecord(nil, nil, schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, "default", "p", schema.GroupVersionResource{Version: "v1", Resource: "pods"}, "", admission.Create, nil, false, nil)
		for _, m := range mutating {
			_ = m.Admit(r.Context(), attrs, nil)
		}
		for _, v := range validating {
			_ = v.Validate(r.Context(), attrs, nil)
		}
		w.WriteHeader(http.StatusCreated)
	})
}

// BenchmarkTracedRequest is the trace's own cost per write request: the
// filter, 25 decorated plugins (one reporting 16 constraints), closing the
// trace, the ring of 10,000 and the per-policy metrics — against the same
// chain with tracing off (the decorator then only looks up the context).
// The server's CPU per Pod create is a few milliseconds (bench/README.md),
// so the difference here is the trace's share of it.
func BenchmarkTracedRequest(b *testing.B) {
	for _, traced := range []bool{false, true} {
		b.Run(fmt.Sprintf("traced=%v", traced), func(b *testing.B) {
			rec := NewRecorder(DefaultCapacity)
			h := chainHandler(16)
			if traced {
				h = Record(h, rec)
			}
			info := &genericapirequest.RequestInfo{IsResourceRequest: true, Verb: "create", APIVersion: "v1", Resource: "pods", Namespace: "default"}
			ctx := genericapirequest.WithUser(genericapirequest.WithRequestInfo(context.Background(), info),
				&user.DefaultInfo{Name: "alice", Groups: []string{"system:authenticated"}})
			req := httptest.NewRequest(http.MethodPost, "/api/v1/namespaces/default/pods", nil).WithContext(ctx)
			w := &discardWriter{header: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			start := cpuTime()
			for range b.N {
				h.ServeHTTP(w, req)
			}
			// The process's CPU (the GC's workers too), which other
			// processes on the machine disturb less than the wall clock.
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkRetained is what the ring keeps per trace of that shape once
// full (bytes of live heap per trace).
func BenchmarkRetained(b *testing.B) {
	for range b.N {
		rec := NewRecorder(DefaultCapacity)
		h := Record(chainHandler(16), rec)
		info := &genericapirequest.RequestInfo{IsResourceRequest: true, Verb: "create", APIVersion: "v1", Resource: "pods", Namespace: "default"}
		ctx := genericapirequest.WithUser(genericapirequest.WithRequestInfo(context.Background(), info), &user.DefaultInfo{Name: "alice"})
		req := httptest.NewRequest(http.MethodPost, "/api/v1/namespaces/default/pods", nil).WithContext(ctx)
		w := &discardWriter{header: http.Header{}}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range DefaultCapacity {
			h.ServeHTTP(w, req)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/DefaultCapacity, "bytes/trace")
		runtime.KeepAlive(rec)
	}
}

// cpuTime is the CPU time the process used so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type discardWriter struct{ header http.Header }

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
