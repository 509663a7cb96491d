// Package follow serves records that can be listed and followed, as JSON
// lines over HTTP: the list-or-stream endpoints of the admission trace
// and of the webhook log, which share their query parameters (after,
// limit) and their streaming loop.
//
// Usage, in a handler:
//
//	after, limit, err := follow.ParseQuery(req.URL.Query(), "trace")
//	if err != nil { http.Error(w, err.Error(), http.StatusBadRequest); return }
//	ch, stop := recorder.Follow(1000) // before listing: nothing falls between
//	defer stop()
//	follow.Stream(w, req, recorder.List(filter, limit), ch, Options[*Trace]{...})
package follow

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// ParseQuery reads the after (an ID of what, exclusive) and limit (a
// count, 0 for all) query parameters.
func ParseQuery(q url.Values, what string) (after uint64, limit int, err error) {
	if a := q.Get("after"); a != "" {
		if after, err = strconv.ParseUint(a, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("after: not a %s ID: %s", what, a)
		}
	}
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 0 {
			return 0, 0, fmt.Errorf("limit: not a count: %s", l)
		}
	}
	return after, limit, nil
}

// Options say how Stream reads records of type T.
type Options[T any] struct {
	// ID orders records; one that comes on the channel with an ID not
	// above the last written was listed already.
	ID func(T) uint64
	// Matches selects the followed records (the listed ones are selected
	// already).
	Matches func(T) bool
	// View is what is written of a record (a copy that shares nothing
	// with the writer of the record, say); nil writes the record.
	View func(T) any
}

// Stream writes listed as JSON lines, then, while the request lasts, each
// record that comes on ch and matches (with ch nil it returns after the
// list). Lines are flushed after the list and after each followed record.
func Stream[T any](w http.ResponseWriter, req *http.Request, listed []T, ch <-chan T, o Options[T]) {
	w.Header().Set("Content-Type", "application/jsonl")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	write := func(r T) error {
		if o.View != nil {
			return enc.Encode(o.View(r))
		}
		return enc.Encode(r)
	}
	flush := func() {
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
	}
	var last uint64
	for _, r := range listed {
		if err := write(r); err != nil {
			return
		}
		last = o.ID(r)
	}
	flush()
	if ch == nil {
		return
	}
	for {
		select {
		case <-req.Context().Done():
			return
		case r := <-ch:
			if o.ID(r) <= last || !o.Matches(r) {
				continue
			}
			if err := write(r); err != nil {
				return
			}
			last = o.ID(r)
			flush()
		}
	}
}
