package webhooks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const reviewRequest = `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","userInfo":{}}}`

func answer(uid string, allowed bool, extra string) string {
	return fmt.Sprintf(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":%q,"allowed":%v%s}}`, uid, allowed, extra)
}

// hook is a webhook server that answers with body and counts its calls.
func hook(t *testing.T, body func() string) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body())
	}))
	t.Cleanup(s.Close)
	return s, &calls
}

func call(t *testing.T, kit *Kit, url string, ctx context.Context, id Identity) (*http.Response, []byte, error) {
	t.Helper()
	ctx = context.WithValue(ctx, identityKey{}, id)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(reviewRequest))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := kit.Wrap(http.DefaultTransport).RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

var validating = Identity{Kind: KindValidating, Configuration: "cfg", Webhook: "pods.example.com", UID: "u-1"}

func onlyExchange(t *testing.T, kit *Kit) *Exchange {
	t.Helper()
	list := kit.Log.List(Filter{}, 0)
	if len(list) != 1 {
		t.Fatalf("%d exchanges recorded, want 1", len(list))
	}
	return list[0]
}

func TestTransportRecords(t *testing.T) {
	s, calls := hook(t, func() string { return answer("u-1", false, `,"status":{"code":403,"message":"no team label"}`) })
	kit, _ := New(Options{})
	resp, body, err := call(t, kit, s.URL, context.Background(), validating)
	if err != nil || resp.StatusCode != 200 || calls.Load() != 1 {
		t.Fatalf("call: %v, %v, %d calls", err, resp, calls.Load())
	}
	e := onlyExchange(t, kit)
	if e.Webhook != "pods.example.com" || e.Configuration != "cfg" || e.UID != "u-1" || e.Kind != KindValidating || e.URL != s.URL {
		t.Errorf("identity of the exchange: %+v", e)
	}
	if string(e.Request) != reviewRequest || string(e.Response) != string(body) || e.StatusCode != 200 || e.ResponseBytes != len(body) {
		t.Errorf("exchange request %s response %s status %d", e.Request, e.Response, e.StatusCode)
	}
	d, err := Judge(e.Request, e.Response, false)
	if err != nil || d.Allowed || d.Result.Message != "no team label" {
		t.Errorf("judged %+v, %v", d, err)
	}
	// Calls without an identity pass through unrecorded.
	req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader(reviewRequest))
	if _, err := kit.Wrap(http.DefaultTransport).RoundTrip(req); err != nil || len(kit.Log.List(Filter{}, 0)) != 1 {
		t.Errorf("a call without identity: %v, %d exchanges", err, len(kit.Log.List(Filter{}, 0)))
	}
}

func TestTransportFaults(t *testing.T) {
	allow := func() string { return answer("u-1", true, "") }
	t.Run("status", func(t *testing.T) {
		s, calls := hook(t, allow)
		kit, _ := New(Options{})
		kit.SetFault(validating.Webhook, Fault{Status: 503})
		resp, _, err := call(t, kit, s.URL, context.Background(), validating)
		if err != nil || resp.StatusCode != 503 || calls.Load() != 0 {
			t.Fatalf("%v, %v, %d calls", err, resp, calls.Load())
		}
		if e := onlyExchange(t, kit); e.Fault != "status=503" || e.StatusCode != 503 {
			t.Errorf("exchange %+v", e)
		}
	})
	t.Run("refuse", func(t *testing.T) {
		s, calls := hook(t, allow)
		kit, _ := New(Options{})
		kit.SetFault(validating.Webhook, Fault{Refuse: true})
		_, _, err := call(t, kit, s.URL, context.Background(), validating)
		if !errors.Is(err, syscall.ECONNREFUSED) || calls.Load() != 0 {
			t.Fatalf("%v, %d calls; want connection refused", err, calls.Load())
		}
		if e := onlyExchange(t, kit); e.Error == "" || e.TimedOut {
			t.Errorf("exchange %+v", e)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		s, calls := hook(t, allow)
		kit, _ := New(Options{})
		kit.SetFault(validating.Webhook, Fault{Timeout: true})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, _, err := call(t, kit, s.URL, ctx, validating)
		if !errors.Is(err, context.DeadlineExceeded) || calls.Load() != 0 {
			t.Fatalf("%v, %d calls", err, calls.Load())
		}
		if e := onlyExchange(t, kit); !e.TimedOut || e.Fault != "timeout" {
			t.Errorf("exchange %+v", e)
		}
	})
	t.Run("latency within the timeout", func(t *testing.T) {
		s, calls := hook(t, allow)
		kit, _ := New(Options{})
		kit.SetFault(validating.Webhook, Fault{Latency: 20 * time.Millisecond})
		resp, _, err := call(t, kit, s.URL, context.Background(), validating)
		if err != nil || resp.StatusCode != 200 || calls.Load() != 1 {
			t.Fatalf("%v, %v, %d calls", err, resp, calls.Load())
		}
		if e := onlyExchange(t, kit); e.Duration < 20*time.Millisecond || e.Fault != "latency=20ms" {
			t.Errorf("exchange took %s with fault %q", e.Duration, e.Fault)
		}
	})
	t.Run("latency past the timeout", func(t *testing.T) {
		s, calls := hook(t, allow)
		kit, _ := New(Options{})
		kit.SetFault(validating.Webhook, Fault{Latency: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, _, err := call(t, kit, s.URL, ctx, validating); !errors.Is(err, context.DeadlineExceeded) || calls.Load() != 0 {
			t.Fatalf("%v, %d calls", err, calls.Load())
		}
		if e := onlyExchange(t, kit); !e.TimedOut {
			t.Errorf("exchange %+v", e)
		}
	})
	t.Run("bad patch", func(t *testing.T) {
		s, calls := hook(t, allow)
		kit, _ := New(Options{})
		kit.SetFault("m", Fault{BadPatch: true})
		_, body, err := call(t, kit, s.URL, context.Background(), Identity{Kind: KindMutating, Configuration: "cfg", Webhook: "m"})
		if err != nil || calls.Load() != 1 {
			t.Fatalf("%v, %d calls", err, calls.Load())
		}
		d, err := Judge([]byte(reviewRequest), body, true)
		if err != nil || string(d.Patch) != string(badPatch) || d.PatchType != "JSONPatch" {
			t.Errorf("answer %s judged %+v, %v; want the bad patch", body, d, err)
		}
	})
	t.Run("annotation", func(t *testing.T) {
		s, calls := hook(t, allow)
		kit, _ := New(Options{})
		kit.ReadAnnotations(func(kind, cfg string) string {
			if kind == KindValidating && cfg == "cfg" {
				return "status=500"
			}
			return ""
		})
		resp, _, err := call(t, kit, s.URL, context.Background(), validating)
		if err != nil || resp.StatusCode != 500 || calls.Load() != 0 {
			t.Fatalf("%v, %v, %d calls", err, resp, calls.Load())
		}
		// A fault set by name wins over the annotation.
		kit.SetFault(validating.Webhook, Fault{Status: 502})
		if resp, _, _ := call(t, kit, s.URL, context.Background(), validating); resp == nil || resp.StatusCode != 502 {
			t.Errorf("by name: %v, want 502", resp)
		}
	})
}

func TestTransportHugeAndMalformedAnswers(t *testing.T) {
	huge := answer("u-1", true, `,"warnings":["`+strings.Repeat("x", 2<<20)+`"]`)
	s, _ := hook(t, func() string { return huge })
	kit, _ := New(Options{})
	_, body, err := call(t, kit, s.URL, context.Background(), validating)
	if err != nil || len(body) != len(huge) {
		t.Fatalf("%v; passed on %d of %d bytes", err, len(body), len(huge))
	}
	e := onlyExchange(t, kit)
	if !e.Truncated || e.ResponseBytes != len(huge) || len(e.ResponseText) != MaxRecordedAnswer || e.Response != nil {
		t.Errorf("truncated %v, %d bytes, %d kept", e.Truncated, e.ResponseBytes, len(e.ResponseText))
	}

	s2, _ := hook(t, func() string { return "not json" })
	kit2, _ := New(Options{})
	if _, _, err := call(t, kit2, s2.URL, context.Background(), validating); err != nil {
		t.Fatal(err)
	}
	if e := onlyExchange(t, kit2); e.ResponseText != "not json" || e.Response != nil {
		t.Errorf("non-JSON answer kept as %q / %s", e.ResponseText, e.Response)
	}
}

func TestJudgeMalformed(t *testing.T) {
	for _, tc := range []struct{ answer, want string }{
		{`{"kind":"AdmissionReview",`, "failed to call webhook"},
		{strings.Replace(answer("u-1", true, ""), "admission.k8s.io/v1", "admission.k8s.io/v2", 1), "failed to call webhook"},
		{answer("other", true, ""), "expected response.uid"},
		{`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}`, "webhook response was absent"},
	} {
		if _, err := Judge([]byte(reviewRequest), []byte(tc.answer), false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.answer, err, tc.want)
		}
	}
}

func TestStubs(t *testing.T) {
	recorded := &Exchange{Kind: KindValidating, Configuration: "cfg", Webhook: "pods.example.com", StatusCode: 200,
		Request: json.RawMessage(reviewRequest), Response: json.RawMessage(answer("old-uid", false, `,"status":{"message":"denied before"}`))}
	faulted := &Exchange{Configuration: "cfg", Webhook: "pods.example.com", Fault: "status=500", StatusCode: 200, Response: json.RawMessage(answer("x", true, ""))}
	var file bytes.Buffer
	for _, e := range []*Exchange{recorded, faulted} {
		json.NewEncoder(&file).Encode(e)
	}
	exchanges, err := ReadExchanges(&file)
	if err != nil || len(exchanges) != 2 {
		t.Fatalf("%d exchanges, %v", len(exchanges), err)
	}
	s, calls := hook(t, func() string { return answer("u-1", true, "") })
	kit, _ := New(Options{Stubs: NewStubs(exchanges)})
	_, body, err := call(t, kit, s.URL, context.Background(), validating)
	if err != nil || calls.Load() != 0 {
		t.Fatalf("%v, %d calls; want the stub to answer", err, calls.Load())
	}
	d, err := Judge([]byte(reviewRequest), body, false)
	if err != nil || d.Allowed || d.Result.Message != "denied before" {
		t.Errorf("stubbed answer %s: %+v, %v", body, d, err)
	}
	if e := onlyExchange(t, kit); !e.Stubbed {
		t.Error("exchange not marked stubbed")
	}
	// A webhook without a recorded answer is called.
	if _, _, err := call(t, kit, s.URL, context.Background(), Identity{Kind: KindValidating, Configuration: "other", Webhook: "other"}); err != nil || calls.Load() != 1 {
		t.Errorf("unstubbed webhook: %v, %d calls", err, calls.Load())
	}
}

func TestLogRingAndFollow(t *testing.T) {
	l := NewLog(2)
	for i := range 5 {
		l.Add(&Exchange{Configuration: "c", Webhook: "a", UID: fmt.Sprint(i)})
	}
	l.Add(&Exchange{Configuration: "c", Webhook: "b"})
	if got := l.List(Filter{Webhook: "a"}, 0); len(got) != 2 || got[0].UID != "3" || got[1].UID != "4" {
		t.Errorf("ring of a: %d items", len(got))
	}
	if got := l.List(Filter{Webhook: "c/b"}, 0); len(got) != 1 {
		t.Errorf("by configuration/name: %d", len(got))
	}

	kit, _ := New(Options{})
	srv := httptest.NewServer(kit.ExchangesHandler())
	defer srv.Close()
	kit.Log.Add(&Exchange{Configuration: "c", Webhook: "a", UID: "before"})
	resp, err := http.Get(srv.URL + ExchangesPath + "?follow=true&webhook=a")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() || !strings.Contains(lines.Text(), `"uid":"before"`) {
		t.Fatalf("first line %q", lines.Text())
	}
	kit.Log.Add(&Exchange{Configuration: "c", Webhook: "other", UID: "not-selected"})
	kit.Log.Add(&Exchange{Configuration: "c", Webhook: "a", UID: "after"})
	if !lines.Scan() || !strings.Contains(lines.Text(), `"uid":"after"`) {
		t.Fatalf("followed line %q", lines.Text())
	}
}

func TestReplay(t *testing.T) {
	recorded := func(ans string) *Exchange {
		return &Exchange{ID: 1, Kind: KindMutating, Configuration: "cfg", Webhook: "m", StatusCode: 200, Request: json.RawMessage(reviewRequest), Response: json.RawMessage(ans)}
	}
	patch := base64.StdEncoding.EncodeToString([]byte(`[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`))
	// The same patch written differently is the same decision.
	samePatch := base64.StdEncoding.EncodeToString([]byte(`[ {"path":"/metadata/labels","op":"add","value":{"a":"b"}} ]`))
	old := answer("u-1", true, `,"patchType":"JSONPatch","patch":"`+patch+`"`)
	same, _ := hook(t, func() string { return answer("u-1", true, `,"patchType":"JSONPatch","patch":"`+samePatch+`"`) })
	changed, _ := hook(t, func() string { return answer("u-1", false, `,"status":{"code":403,"message":"no"}`) })

	r := Replay(context.Background(), http.DefaultClient, same.URL, []*Exchange{recorded(old)})
	if len(r) != 1 || len(r[0].Diffs) != 0 || r[0].Skipped != "" {
		t.Errorf("same decision: %+v", r)
	}
	r = Replay(context.Background(), http.DefaultClient, changed.URL, []*Exchange{recorded(old)})
	if len(r) != 1 || len(r[0].Diffs) == 0 {
		t.Fatalf("changed decision: %+v", r)
	}
	diffs := strings.Join(r[0].Diffs, "\n")
	for _, want := range []string{"allowed: true → false", "code: 0 → 403", `message: (none) → "no"`, "patch:", "patchType"} {
		if !strings.Contains(diffs, want) {
			t.Errorf("diffs %q lack %q", diffs, want)
		}
	}
	faulted := recorded(old)
	faulted.Fault = "timeout"
	stubbed := recorded(old)
	stubbed.Stubbed = true
	for _, r := range Replay(context.Background(), http.DefaultClient, changed.URL, []*Exchange{faulted, stubbed}) {
		if r.Skipped == "" {
			t.Errorf("replayed a faulted or stubbed call: %+v", r)
		}
	}
}
