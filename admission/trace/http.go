package trace

import (
	"encoding/json"
	"net/http"
	"time"

	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/endpoints/responsewriter"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/gatehouse-dev/gatehouse/internal/follow"
)

// Path is where the API server serves traces, under its own authentication
// and authorization (a non-resource URL: RBAC grants it with
// nonResourceURLs, system:masters has it).
const Path = "/gatehouse/v1/traces"

// TagHeader is a request header the trace keeps as Trace.Tag.
const TagHeader = "X-Gatehouse-Trace-Tag"

// writeVerbs are the request verbs that go through admission.
var writeVerbs = map[string]bool{"create": true, "update": true, "patch": true, "delete": true, "deletecollection": true}

// WrapHandlerChain returns a handler chain builder that puts Record
// innermost, after upstream's filters (authentication, authorization,
// request info), right before the API handler.
func WrapHandlerChain(build func(http.Handler, *genericapiserver.Config) http.Handler, rec *Recorder) func(http.Handler, *genericapiserver.Config) http.Handler {
	return func(apiHandler http.Handler, c *genericapiserver.Config) http.Handler {
		return build(Record(apiHandler, rec), c)
	}
}

// Record opens a trace for each write request to a resource and records
// it once answered, if admission ran.
func Record(next http.Handler, rec *Recorder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		info, ok := genericapirequest.RequestInfoFrom(req.Context())
		if !ok || !info.IsResourceRequest || !writeVerbs[info.Verb] {
			next.ServeHTTP(w, req)
			return
		}
		t := &Trace{
			Time: time.Now(), Verb: info.Verb, Group: info.APIGroup, Version: info.APIVersion,
			Resource: info.Resource, Subresource: info.Subresource, Namespace: info.Namespace, Name: info.Name,
			Tag: req.Header.Get(TagHeader),
		}
		if u, ok := genericapirequest.UserFrom(req.Context()); ok {
			t.User, t.Groups = u.GetName(), u.GetGroups()
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		// Upstream's wrapper keeps exactly the inner writer's Flusher,
		// CloseNotifier and Hijacker: exec, attach and port-forward (writes
		// to pods' subresources) upgrade the connection through it.
		next.ServeHTTP(responsewriter.WrapForHTTP1Or2(sw), req.WithContext(WithTrace(req.Context(), t)))
		t.mu.Lock()
		t.Code, t.Duration = sw.code, time.Since(t.Time)
		t.answered, t.recorder = true, rec
		done := t.closeIfIdle()
		t.mu.Unlock()
		if done {
			t.finish()
		}
	})
}

// finish closes t once its request is answered and no plugin call of it is
// under way. They can end in either order: upstream's handlers run
// admission and storage in a goroutine of their own (finisher.FinishRequest)
// and answer 504 at the request's deadline without waiting for it, so a
// plugin call (a mutating webhook timing out at that same deadline) may
// end after the answer. Its step, and what its webhook calls reported, go
// into the trace before the trace is kept; plugin calls that begin after
// that are not traced.
func (t *Trace) finish() {
	t.releaseScratch()
	t.mu.Lock()
	steps := len(t.packed)
	switch {
	case t.Code < 300:
		t.Outcome = OutcomeAllowed
	case t.Message != "":
		t.Outcome = OutcomeDenied
	default:
		t.Outcome = OutcomeFailed
	}
	rec := t.recorder
	t.mu.Unlock()
	if steps > 0 {
		rec.Add(t)
	}
}

// beginCall reports whether a plugin call is traced into t, and if so
// counts it under way until endCall.
func (t *Trace) beginCall() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		return false
	}
	t.inflight++
	return true
}

func (t *Trace) endCall() {
	t.mu.Lock()
	t.inflight--
	done := t.closeIfIdle()
	t.mu.Unlock()
	if done {
		t.finish()
	}
}

// closeIfIdle marks t finished, and reports so, when its request is
// answered, no plugin call of it is under way and it was not finished yet:
// the caller then finishes it. t.mu is held.
func (t *Trace) closeIfIdle() bool {
	if !t.answered || t.inflight > 0 || t.finished {
		return false
	}
	t.finished = true
	return true
}

// statusWriter remembers the response code.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap returns the inner writer (responsewriter.UserProvidedDecorator).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Handler serves the recorder's traces as JSON: GET Path with optional
// query parameters namespace, name, user, outcome, verdict, system=false
// (leave out system:... users), after (an ID) and limit; with follow=true it streams new traces as JSON lines until
// the client goes.
func Handler(rec *Recorder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet {
			http.Error(w, "only GET", http.StatusMethodNotAllowed)
			return
		}
		q := req.URL.Query()
		after, limit, err := follow.ParseQuery(q, "trace")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f := Filter{Namespace: q.Get("namespace"), Name: q.Get("name"), User: q.Get("user"), Outcome: q.Get("outcome"), Verdict: q.Get("verdict"), NoSystem: q.Get("system") == "false", After: after}
		if q.Get("follow") != "true" {
			w.Header().Set("Content-Type", "application/json")
			traces := rec.List(f, limit)
			out := make([]*Trace, len(traces))
			for i, t := range traces {
				out[i] = t.Copy()
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"traces": out})
			return
		}
		// Followed before listing, so that nothing falls between.
		ch, stop := rec.Follow(1000)
		defer stop()
		follow.Stream(w, req, rec.List(f, limit), ch, follow.Options[*Trace]{
			ID:      func(t *Trace) uint64 { return t.ID },
			Matches: f.Matches,
			View:    func(t *Trace) any { return t.Copy() },
		})
	})
}
