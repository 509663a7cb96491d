package webhooks

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/admission/trace"
)

// badPatch is the patch the bad-patch fault answers with: it removes a
// path no object has, so it never applies.
var badPatch = []byte(`[{"op":"remove","path":"/metadata/annotations/gatehouse.dev~1no-such-annotation"}]`)

// Wrap returns a transport that records every webhook call made through
// rt and applies faults and stubs; calls without a webhook identity in
// their context pass through untouched.
func (k *Kit) Wrap(rt http.RoundTripper) http.RoundTripper {
	return &transport{kit: k, next: rt}
}

type transport struct {
	kit  *Kit
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	id, ok := IdentityFrom(req.Context())
	if !ok {
		return t.next.RoundTrip(req)
	}
	var body []byte
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("reading the admission review: %w", err)
		}
	}
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))

	e := &Exchange{Time: time.Now(), Kind: id.Kind, Configuration: id.Configuration, Webhook: id.Webhook, UID: id.UID, URL: req.URL.String(), Request: json.RawMessage(body)}
	if !json.Valid(body) {
		e.Request = nil
	}
	resp, answer, err := t.call(out, id, body, e)
	e.Duration = time.Since(e.Time)
	if err != nil {
		e.Error = err.Error()
		e.TimedOut = errors.Is(err, context.DeadlineExceeded) || req.Context().Err() != nil
	} else {
		e.StatusCode = resp.StatusCode
		recordAnswer(e, answer)
	}
	t.kit.Log.Add(e)
	// A provider's call is traced by package externaldata, in its words.
	if id.Kind != KindProvider && trace.Tracing(req.Context()) {
		call := trace.WebhookCall{
			Kind: id.Kind, Configuration: id.Configuration, Webhook: id.Webhook, Exchange: e.ID,
			Fault: e.Fault, Duration: e.Duration, Stubbed: e.Stubbed, TimedOut: e.TimedOut,
			Failed: err != nil || resp.StatusCode >= 300,
		}
		if !call.Failed {
			// Upstream's reason for refusing the answer, if it does: the
			// API server logs it but tells the request only under
			// failurePolicy Fail.
			if _, jerr := Judge(body, answer, id.Kind == KindMutating); jerr != nil {
				call.Problem = jerr.Error()
			}
		}
		trace.AddWebhookCall(req.Context(), call)
	}
	return resp, err
}

// call answers the request: from a stub, through a fault, or from the
// webhook; it returns the response with its body read into answer.
func (t *transport) call(req *http.Request, id Identity, body []byte, e *Exchange) (*http.Response, []byte, error) {
	ctx := req.Context()
	if t.kit.stubs != nil && id.Kind != KindProvider {
		if answer, ok := t.kit.stubs.Answer(id, body); ok {
			e.Stubbed = true
			return respond(req, http.StatusOK, answer), answer, nil
		}
	}
	f := t.kit.faultFor(id)
	e.Fault = f.String()
	if f.Latency > 0 {
		timer := time.NewTimer(f.Latency)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, nil, ctx.Err()
		case <-timer.C:
		}
	}
	switch {
	case f.Refuse:
		return nil, nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	case f.Timeout:
		<-ctx.Done()
		return nil, nil, ctx.Err()
	case f.Status != 0:
		answer := []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"gatehouse fault: status ` + strconv.Itoa(f.Status) + `","code":` + strconv.Itoa(f.Status) + `}`)
		return respond(req, f.Status, answer), answer, nil
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the webhook's answer: %w", err)
	}
	if f.BadPatch && resp.StatusCode == http.StatusOK {
		answer = withPatch(answer, badPatch)
	}
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	resp.ContentLength = int64(len(answer))
	return resp, answer, nil
}

// respond is an answer made here.
func respond(req *http.Request, code int, body []byte) *http.Response {
	return &http.Response{
		Status: strconv.Itoa(code) + " " + http.StatusText(code), StatusCode: code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// withPatch puts patch into an AdmissionReview answer; an answer that is
// no AdmissionReview stays as it is (upstream refuses it anyway).
func withPatch(answer, patch []byte) []byte {
	var review map[string]any
	if json.Unmarshal(answer, &review) != nil {
		return answer
	}
	r, ok := review["response"].(map[string]any)
	if !ok {
		return answer
	}
	r["patch"] = base64.StdEncoding.EncodeToString(patch)
	r["patchType"] = "JSONPatch"
	out, err := json.Marshal(review)
	if err != nil {
		return answer
	}
	return out
}

// recordAnswer keeps answer in e: as JSON when it is, as text otherwise,
// cut to MaxRecordedAnswer.
func recordAnswer(e *Exchange, answer []byte) {
	e.ResponseBytes = len(answer)
	switch {
	case len(answer) > MaxRecordedAnswer:
		e.ResponseText, e.Truncated = string(answer[:MaxRecordedAnswer]), true
	case json.Valid(answer):
		e.Response = json.RawMessage(answer)
	default:
		e.ResponseText = string(answer)
	}
}
