package follow

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestParseQuery(t *testing.T) {
	for query, want := range map[string]string{
		"":                  "",
		"after=7&limit=3":   "",
		"after=x":           "after: not a trace ID: x",
		"limit=-1":          "limit: not a count: -1",
		"limit=many&after=": "limit: not a count: many",
	} {
		q, _ := url.ParseQuery(query)
		after, limit, err := ParseQuery(q, "trace")
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("%q: error %q, want %q", query, got, want)
		}
		if query == "after=7&limit=3" && (after != 7 || limit != 3) {
			t.Errorf("%q: after %d, limit %d", query, after, limit)
		}
	}
}

type record struct{ ID uint64 }

// TestStream: the listed records, then the followed ones that match and
// were not listed already, until the request ends.
func TestStream(t *testing.T) {
	ch := make(chan record, 4)
	ch <- record{2} // listed already
	ch <- record{3} // does not match
	ch <- record{4}
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Stream(w, req, []record{{1}, {2}}, ch, Options[record]{
			ID:      func(r record) uint64 { return r.ID },
			Matches: func(r record) bool { return r.ID != 3 },
		})
	}()
	for len(ch) > 0 {
		// until Stream has taken them
	}
	cancel()
	<-done
	var ids []uint64
	sc := bufio.NewScanner(w.Body)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	if len(ids) != 3 || ids[0] != 1 || ids[1] != 2 || ids[2] != 4 {
		t.Errorf("streamed %v, want [1 2 4]", ids)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/jsonl" {
		t.Errorf("Content-Type %q", ct)
	}
}
