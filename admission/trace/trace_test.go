package trace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/warning"
)

type fakePlugin struct {
	*admission.Handler
	warn string
	err  error
}

func (p *fakePlugin) Admit(ctx context.Context, _ admission.Attributes, _ admission.ObjectInterfaces) error {
	if p.warn != "" {
		warning.AddWarning(ctx, "", p.warn)
	}
	return p.err
}

type fakeValidator struct {
	*admission.Handler
	err error
}

func (p *fakeValidator) Validate(context.Context, admission.Attributes, admission.ObjectInterfaces) error {
	return p.err
}

type warningSink struct{ got []string }

func (w *warningSink) AddWarning(_, text string) { w.got = append(w.got, text) }

func TestDecoratorRecordsStepsInOrder(t *testing.T) {
	handles := admission.NewHandler(admission.Create)
	mut := decorate(&fakePlugin{Handler: handles, warn: "careful"}, "Mutator", nil, nil)
	val := decorate(&fakeValidator{Handler: handles, err: apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", errors.New("no"))}, "Validator", nil, nil)
	if _, ok := mut.(admission.ValidationInterface); ok {
		t.Error("a mutating-only plugin became a validating one")
	}
	if _, ok := val.(admission.MutationInterface); ok {
		t.Error("a validating-only plugin became a mutating one")
	}
	sink := &warningSink{}
	tr := &Trace{}
	ctx := warning.WithWarningRecorder(WithTrace(context.Background(), tr), sink)
	attrs := admission.NewAttributesRecord(nil, nil, schema.GroupVersionKind{Kind: "Pod"}, "ns", "p", schema.GroupVersionResource{Resource: "pods"}, "", admission.Create, nil, true, nil)
	if err := mut.(admission.MutationInterface).Admit(ctx, attrs, nil); err != nil {
		t.Fatal(err)
	}
	if err := val.(admission.ValidationInterface).Validate(ctx, attrs, nil); err == nil {
		t.Fatal("the validator's denial was lost")
	}
	if len(sink.got) != 1 || sink.got[0] != "careful" {
		t.Errorf("warnings reaching the request = %v, want the plugin's", sink.got)
	}
	steps := tr.Copy().Steps
	if len(steps) != 2 {
		t.Fatalf("steps = %+v, want 2", steps)
	}
	if s := steps[0]; s.Plugin != "Mutator" || s.Phase != "mutating" || s.Verdict != VerdictWarn || len(s.Warnings) != 1 {
		t.Errorf("step 1 = %+v", s)
	}
	if s := steps[1]; s.Plugin != "Validator" || s.Phase != "validating" || s.Verdict != VerdictDeny || !strings.Contains(s.Message, "no") {
		t.Errorf("step 2 = %+v", s)
	}
	if tr.Operation != "CREATE" || !tr.DryRun || !strings.Contains(tr.Message, "no") {
		t.Errorf("trace = %+v, want operation CREATE, dry run, the denial's message", tr)
	}
	// Without a trace in the context, plugins run as they are.
	if err := mut.(admission.MutationInterface).Admit(context.Background(), attrs, nil); err != nil {
		t.Fatal(err)
	}
}

// TestRecorderIsBounded: a burst of 20,000 requests keeps the ring at its
// capacity (10,000 by default) with the newest traces in it.
func TestRecorderIsBounded(t *testing.T) {
	rec := NewRecorder(0)
	for i := range 20000 {
		rec.Add(&Trace{Name: fmt.Sprintf("t%d", i), Outcome: OutcomeAllowed})
	}
	if rec.Len() != DefaultCapacity {
		t.Errorf("Len = %d, want the capacity, %d", rec.Len(), DefaultCapacity)
	}
	all := rec.List(Filter{}, 0)
	if len(all) != DefaultCapacity || all[0].Name != "t10000" || all[len(all)-1].Name != "t19999" {
		t.Errorf("kept %d traces from %s to %s, want the newest 10,000 (t10000..t19999)", len(all), all[0].Name, all[len(all)-1].Name)
	}
	if got := rec.List(Filter{}, 3); len(got) != 3 || got[2].Name != "t19999" {
		t.Errorf("limit 3 gave %d ending %s", len(got), got[len(got)-1].Name)
	}
	if got := rec.List(Filter{After: all[len(all)-2].ID}, 0); len(got) != 1 || got[0].Name != "t19999" {
		t.Errorf("after the second newest: %d traces", len(got))
	}
	if got := rec.List(Filter{NoSystem: true}, 0); len(got) != DefaultCapacity {
		t.Errorf("NoSystem left out traces of no user: %d", len(got))
	}
}

func TestFollow(t *testing.T) {
	rec := NewRecorder(10)
	ch, stop := rec.Follow(4)
	rec.Add(&Trace{Name: "a"})
	if got := <-ch; got.Name != "a" {
		t.Errorf("followed %s, want a", got.Name)
	}
	stop()
	rec.Add(&Trace{Name: "b"}) // no follower: must not block
}

func TestHandlerFilters(t *testing.T) {
	rec := NewRecorder(10)
	rec.Add(&Trace{Namespace: "a", Name: "x", User: "alice", Outcome: OutcomeAllowed, Steps: []Step{{Plugin: "P", Verdict: VerdictWarn}}})
	rec.Add(&Trace{Namespace: "b", Name: "y", User: "bob", Outcome: OutcomeDenied, Steps: []Step{{Plugin: "P", Verdict: VerdictDeny}}})
	for query, want := range map[string]string{
		"":                "x,y",
		"?namespace=b":    "y",
		"?user=alice":     "x",
		"?outcome=denied": "y",
		"?verdict=warn":   "x",
		"?limit=1":        "y",
	} {
		w := httptest.NewRecorder()
		Handler(rec).ServeHTTP(w, httptest.NewRequest(http.MethodGet, Path+query, nil))
		var body struct{ Traces []*Trace }
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: %v: %s", query, err, w.Body)
		}
		var names []string
		for _, tr := range body.Traces {
			names = append(names, tr.Name)
		}
		if got := strings.Join(names, ","); got != want {
			t.Errorf("%q gave %s, want %s", query, got, want)
		}
	}
	w := httptest.NewRecorder()
	Handler(rec).ServeHTTP(w, httptest.NewRequest(http.MethodGet, Path+"?limit=-1", nil))
	if w.Code != http.StatusBadRequest {
		t.Errorf("limit=-1: %d, want 400", w.Code)
	}
}

func TestFileSinkRotates(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/traces.jsonl"
	sink, err := NewFileSink(path, 2000)
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder(10)
	rec.WriteTo(sink)
	for i := range 50 {
		rec.Add(&Trace{Name: fmt.Sprintf("object-%d", i), Outcome: OutcomeAllowed, Steps: []Step{{Plugin: "P", Verdict: VerdictAllow}}})
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	current, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(current)), "\n")
	var last Trace
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Name != "object-49" {
		t.Errorf("last line %q (%v), want object-49's trace", lines[len(lines)-1], err)
	}
	if len(current) > 2000 {
		t.Errorf("file is %d bytes, over the 2000 it rotates at", len(current))
	}
	for i := 1; i <= FileBackups; i++ {
		if _, err := os.Stat(fmt.Sprintf("%s.%d", path, i)); err != nil {
			t.Errorf("backup %d: %v", i, err)
		}
	}
	if _, err := os.Stat(fmt.Sprintf("%s.%d", path, FileBackups+1)); err == nil {
		t.Errorf("more than %d backups kept", FileBackups)
	}
	if sink.Dropped() != 0 {
		t.Errorf("%d traces dropped", sink.Dropped())
	}
}

func TestByTag(t *testing.T) {
	rec := NewRecorder(2)
	rec.Add(&Trace{Name: "a", Tag: "t1"})
	rec.Add(&Trace{Name: "b", Tag: "t2"})
	if got := rec.ByTag("t1"); got == nil || got.Name != "a" {
		t.Errorf("ByTag(t1) = %+v", got)
	}
	rec.Add(&Trace{Name: "c"}) // pushes a out of the ring
	if got := rec.ByTag("t1"); got != nil {
		t.Errorf("a trace gone from the ring is still found by its tag: %+v", got)
	}
	if got := rec.ByTag("t2"); got == nil || got.Name != "b" {
		t.Errorf("ByTag(t2) = %+v", got)
	}
}

// TestRecordKeepsHijacker: exec, attach and port-forward upgrade the
// connection; the filter must not hide the writer's Hijacker.
func TestRecordKeepsHijacker(t *testing.T) {
	rec := NewRecorder(10)
	var hijackable bool
	h := Record(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, hijackable = w.(http.Hijacker)
	}), rec)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := &genericapirequest.RequestInfo{IsResourceRequest: true, Verb: "create", Resource: "pods", Subresource: "exec"}
		h.ServeHTTP(w, r.WithContext(genericapirequest.WithRequestInfo(r.Context(), info)))
	}))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !hijackable {
		t.Error("the writer behind the trace filter is not a Hijacker (HTTP/1.1)")
	}
}

// TestPackedStepsReadBack: steps kept packed in the ring read back as they
// were recorded, whether they only allowed or said more.
func TestPackedStepsReadBack(t *testing.T) {
	want := []Step{
		{Plugin: "NamespaceLifecycle", Phase: "mutating", Verdict: VerdictAllow, Duration: 3},
		{Plugin: "MutatingAdmissionWebhook", Phase: "mutating", Reinvocation: true, Verdict: VerdictAllow, Duration: 5},
		{Plugin: "PodSecurity", Phase: "validating", Verdict: VerdictWarn, Warnings: []string{"w"}, Duration: 7},
		{Plugin: "GatekeeperConstraints", Phase: "validating", Verdict: VerdictAllow, Policies: []Policy{{Kind: "K", Name: "c", Verdict: VerdictSkip, Reason: "r"}}},
		{Plugin: "Odd", Phase: "elsewhere", Verdict: "unheard-of"},
		{Plugin: "ValidatingAdmissionPolicy", Phase: "validating", Verdict: VerdictDeny, Message: "no", Duration: 11},
	}
	rec := NewRecorder(4)
	rec.Add(&Trace{Name: "x", Steps: slices.Clone(want)})
	got := rec.List(Filter{}, 0)[0]
	if got.Steps != nil || len(got.packed) != len(want) || len(got.rich) != 4 {
		t.Errorf("kept %d steps whole and %d packed (Steps %v), want the 4 that say more whole", len(got.rich), len(got.packed), got.Steps)
	}
	if read := got.Copy().Steps; !reflect.DeepEqual(read, want) {
		t.Errorf("read back\n%+v\nwant\n%+v", read, want)
	}
	for verdict, match := range map[string]bool{VerdictDeny: true, VerdictWarn: true, "unheard-of": true, VerdictError: false} {
		if rec.List(Filter{Verdict: verdict}, 0) == nil == match {
			t.Errorf("filter verdict %s matched: %v, want %v", verdict, !match, match)
		}
	}
}

// TestScratchNotSharedAcrossTraces: a plugin goroutine that reports after
// its request was answered reaches neither its trace nor the next one that
// reuses the pooled scratch.
func TestScratchNotSharedAcrossTraces(t *testing.T) {
	first := &Trace{}
	_, stale := first.scratch(WithTrace(context.Background(), first))
	first.releaseScratch()
	second := &Trace{}
	sc, ctx := second.scratch(WithTrace(context.Background(), second))
	AddPolicy(stale, Policy{Name: "late"})
	AddPolicy(ctx, Policy{Name: "on time"})
	if got := sc.policies.take(); len(got) != 1 || got[0].Name != "on time" {
		t.Errorf("second trace's call got %+v, want only its own policy", got)
	}
}

// TestPackablePolicy: a policy with any field beyond kind, name, verdict
// and reason is kept whole. It fails when Policy gains a field packable
// does not check.
func TestPackablePolicy(t *testing.T) {
	base := Policy{Kind: "K", Name: "n", Verdict: VerdictSkip, Reason: "r"}
	if !base.packable() {
		t.Fatal("a policy with only kind, name, verdict and reason is not packable")
	}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		f := typ.Field(i)
		switch f.Name {
		case "Kind", "Name", "Verdict", "Reason":
			continue
		}
		p := base
		v := reflect.ValueOf(&p).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString("x")
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Int64, reflect.Int:
			v.SetInt(1)
		case reflect.Uint64:
			v.SetUint(1)
		case reflect.Pointer:
			v.Set(reflect.New(f.Type.Elem()))
		case reflect.Slice:
			v.Set(reflect.MakeSlice(f.Type, 1, 1))
		default:
			t.Fatalf("field %s of kind %s: teach this test and packable about it", f.Name, v.Kind())
		}
		if p.packable() {
			t.Errorf("a policy with %s set is packed, losing it", f.Name)
		}
	}
	if p := (Policy{Verdict: "unheard-of"}); p.packable() {
		t.Error("a policy with an unknown verdict is packed")
	}
}

// TestPackedPoliciesReadBack: packed and whole policies read back in
// their order.
func TestPackedPoliciesReadBack(t *testing.T) {
	idx := 2
	want := []Policy{
		{Kind: "K8sRequiredLabels", Name: "a", Verdict: VerdictSkip, Reason: `kinds: ""/Pod not in [""/Namespace]`},
		{Kind: KindValidatingPolicy, Name: "p", Binding: "b", Verdict: VerdictAudit, Message: "m", ExpressionIndex: &idx},
		{Kind: "K8sRequiredLabels", Name: "c", Verdict: VerdictDeny},
		{Kind: KindWebhook, Name: "w", Configuration: "cfg", Verdict: VerdictFailedOpen, Exchange: 7, Fault: "timeout"},
	}
	rec := NewRecorder(2)
	rec.Add(&Trace{Steps: []Step{{Plugin: "P", Phase: "validating", Verdict: VerdictDeny, Policies: slices.Clone(want)}}})
	kept := rec.List(Filter{}, 0)[0]
	if s := kept.rich[0]; len(s.packedPolicies) != 4 || len(s.Policies) != 2 {
		t.Errorf("kept %d packed and %d whole, want 4 and the 2 that say more", len(s.packedPolicies), len(s.Policies))
	}
	if got := kept.Copy().Steps[0].Policies; !reflect.DeepEqual(got, want) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, want)
	}
}

// lateReporter reports a policy once released, as a mutating webhook whose
// timeout falls on the request's deadline reports after the answer.
type lateReporter struct {
	*admission.Handler
	release chan struct{}
}

func (p *lateReporter) Admit(ctx context.Context, _ admission.Attributes, _ admission.ObjectInterfaces) error {
	<-p.release
	AddPolicy(ctx, Policy{Kind: KindWebhook, Name: "late.example.com", Verdict: VerdictFailedOpen, Reason: "timed out"})
	return apierrors.NewTimeoutError("request did not complete within requested timeout", 0)
}

// TestPluginCallOutlivingTheAnswer: upstream's handlers run admission in a
// goroutine of their own (finisher.FinishRequest) and answer 504 at the
// deadline without waiting for it. The step under way then goes into the
// trace, with what it reported, before the trace is kept; a plugin called
// after that is not traced.
func TestPluginCallOutlivingTheAnswer(t *testing.T) {
	handles := admission.NewHandler(admission.Create)
	late := &lateReporter{Handler: handles, release: make(chan struct{})}
	mut := decorate(late, "MutatingAdmissionWebhook", nil, nil).(admission.MutationInterface)
	after := decorate(&fakeValidator{Handler: handles}, "Validator", nil, nil).(admission.ValidationInterface)
	rec := NewRecorder(0)
	admissionDone := make(chan struct{})
	h := Record(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attrs := admission.NewAttributesRecord(nil, nil, schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, "ns", "late", schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, "", admission.Create, nil, false, nil)
		started := make(chan struct{})
		go func() {
			defer close(admissionDone)
			close(started)
			_ = mut.Admit(r.Context(), attrs, nil)
			_ = after.Validate(r.Context(), attrs, nil)
		}()
		<-started
		w.WriteHeader(http.StatusGatewayTimeout)
	}), rec)
	info := &genericapirequest.RequestInfo{IsResourceRequest: true, Verb: "create", APIVersion: "v1", Resource: "configmaps", Namespace: "ns"}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/namespaces/ns/configmaps", nil).WithContext(genericapirequest.WithRequestInfo(context.Background(), info))
	h.ServeHTTP(httptest.NewRecorder(), req)
	if got := rec.List(Filter{}, 0); len(got) != 0 {
		t.Fatalf("the trace was kept while a plugin call was under way: %+v", got[0].Steps)
	}
	close(late.release)
	<-admissionDone
	got := rec.List(Filter{}, 0)
	if len(got) != 1 {
		t.Fatalf("traces kept = %d, want 1", len(got))
	}
	tr := got[0].Copy()
	if len(tr.Steps) != 1 || tr.Steps[0].Plugin != "MutatingAdmissionWebhook" {
		t.Fatalf("steps = %+v, want only the step under way at the answer", tr.Steps)
	}
	if s := tr.Steps[0]; !slices.ContainsFunc(s.Policies, func(p Policy) bool { return p.Name == "late.example.com" }) {
		t.Errorf("the late step's policies = %+v, want what it reported after the answer", s.Policies)
	}
	if tr.Code != http.StatusGatewayTimeout || tr.Outcome != OutcomeDenied || !strings.Contains(tr.Message, "did not complete") {
		t.Errorf("trace = code %d, outcome %s, message %q", tr.Code, tr.Outcome, tr.Message)
	}
}
