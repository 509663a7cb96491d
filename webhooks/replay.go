package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
)

// Outcome is one side of a replayed call: the decision upstream reads
// from the answer, or why it would refuse the answer (Error).
type Outcome struct {
	Decision *Decision
	Error    string
}

// Replayed is one recorded call sent again.
type Replayed struct {
	Exchange *Exchange
	// Skipped says why the call was not replayed (faulted, stubbed, no
	// request recorded).
	Skipped string
	// Recorded and Now are the decisions of the recorded answer and of
	// the new endpoint's; Diffs what differs between them.
	Recorded, Now Outcome
	Diffs         []string
}

// Replay sends each exchange's recorded AdmissionReview to url and
// compares both answers' decisions as upstream reads them. Calls that a
// fault or a stub answered are skipped: their answers are not the
// webhook's.
func Replay(ctx context.Context, client *http.Client, url string, exchanges []*Exchange) []Replayed {
	var out []Replayed
	for _, e := range exchanges {
		r := Replayed{Exchange: e}
		switch {
		case e.Fault != "":
			r.Skipped = "faulted (" + e.Fault + ")"
		case e.Stubbed:
			r.Skipped = "stubbed"
		case len(e.Request) == 0:
			r.Skipped = "no request recorded"
		}
		if r.Skipped != "" {
			out = append(out, r)
			continue
		}
		mutating := e.Kind == KindMutating
		r.Recorded = recordedOutcome(e, mutating)
		r.Now = send(ctx, client, url, e.Request, mutating)
		r.Diffs = Compare(r.Recorded, r.Now)
		out = append(out, r)
	}
	return out
}

func recordedOutcome(e *Exchange, mutating bool) Outcome {
	switch {
	case e.Error != "":
		return Outcome{Error: "failed to call webhook: " + e.Error}
	case e.StatusCode != 0 && e.StatusCode != http.StatusOK:
		return Outcome{Error: fmt.Sprintf("failed to call webhook: HTTP %d", e.StatusCode)}
	case e.Truncated:
		return Outcome{Error: fmt.Sprintf("the recorded answer was cut at %d of its %d bytes", MaxRecordedAnswer, e.ResponseBytes)}
	}
	answer := []byte(e.Response)
	if answer == nil {
		answer = []byte(e.ResponseText)
	}
	d, err := Judge(e.Request, answer, mutating)
	if err != nil {
		return Outcome{Error: err.Error()}
	}
	return Outcome{Decision: d}
}

func send(ctx context.Context, client *http.Client, url string, request []byte, mutating bool) Outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(request))
	if err != nil {
		return Outcome{Error: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return Outcome{Error: "failed to call webhook: " + err.Error()}
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return Outcome{Error: "failed to call webhook: " + err.Error()}
	}
	if resp.StatusCode != http.StatusOK {
		return Outcome{Error: fmt.Sprintf("failed to call webhook: HTTP %d", resp.StatusCode)}
	}
	d, err := Judge(request, answer, mutating)
	if err != nil {
		return Outcome{Error: err.Error()}
	}
	return Outcome{Decision: d}
}

// Compare lists what differs between two outcomes: allowed, code,
// message, patch (as JSON), patchType, warnings, or the error.
func Compare(a, b Outcome) []string {
	var diffs []string
	add := func(what string, x, y any) {
		diffs = append(diffs, fmt.Sprintf("%s: %v → %v", what, x, y))
	}
	if a.Error != "" || b.Error != "" {
		if a.Error != b.Error {
			add("error", quoteOrNone(a.Error), quoteOrNone(b.Error))
		}
		return diffs
	}
	da, db := a.Decision, b.Decision
	if da.Allowed != db.Allowed {
		add("allowed", da.Allowed, db.Allowed)
	}
	code := func(d *Decision) int32 {
		if d.Result == nil {
			return 0
		}
		return d.Result.Code
	}
	message := func(d *Decision) string {
		if d.Result == nil {
			return ""
		}
		return d.Result.Message
	}
	if code(da) != code(db) {
		add("code", code(da), code(db))
	}
	if message(da) != message(db) {
		add("message", quoteOrNone(message(da)), quoteOrNone(message(db)))
	}
	if !jsonEqual(da.Patch, db.Patch) {
		add("patch", patchText(da.Patch), patchText(db.Patch))
	}
	if da.PatchType != db.PatchType {
		add("patchType", quoteOrNone(string(da.PatchType)), quoteOrNone(string(db.PatchType)))
	}
	if !slices.Equal(da.Warnings, db.Warnings) {
		add("warnings", fmt.Sprintf("%q", da.Warnings), fmt.Sprintf("%q", db.Warnings))
	}
	return diffs
}

func quoteOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return fmt.Sprintf("%q", s)
}

func patchText(p []byte) string {
	if len(p) == 0 {
		return "(none)"
	}
	return strings.TrimSpace(string(p))
}

// jsonEqual compares two JSON documents as values (empty equals empty).
func jsonEqual(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}
