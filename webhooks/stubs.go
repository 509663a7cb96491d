package webhooks

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// Stubs are recorded answers that stand in for webhooks that are not
// running: each webhook with a recorded answer is answered with its last
// one, its uid rewritten to the request's.
type Stubs struct {
	// answers by configuration/webhook, and by webhook name alone.
	answers map[string]json.RawMessage
}

// ReadExchanges reads exchanges as JSON lines (a --webhook-log-file, or
// 'gatehouse webhook log -o json').
func ReadExchanges(r io.Reader) ([]*Exchange, error) {
	var out []*Exchange
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var e Exchange
		if err := json.Unmarshal([]byte(text), &e); err != nil {
			return nil, fmt.Errorf("line %d: not an exchange: %w", line, err)
		}
		out = append(out, &e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// ReadExchangesFile is ReadExchanges of a file.
func ReadExchangesFile(path string) ([]*Exchange, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ex, err := ReadExchanges(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ex, nil
}

// NewStubs keeps the last recorded JSON answer of each webhook in
// exchanges; calls that failed, were faulted or stubbed are left out.
func NewStubs(exchanges []*Exchange) *Stubs {
	s := &Stubs{answers: map[string]json.RawMessage{}}
	for _, e := range exchanges {
		if e.Response == nil || e.Error != "" || e.Fault != "" || e.Stubbed || e.StatusCode != 200 {
			continue
		}
		s.answers[e.Key()] = e.Response
		s.answers[e.Webhook] = e.Response
	}
	return s
}

// Answer is the stubbed answer to request for id's webhook, its uid
// rewritten to the request's.
func (s *Stubs) Answer(id Identity, request []byte) ([]byte, bool) {
	answer, ok := s.answers[id.Configuration+"/"+id.Webhook]
	if !ok {
		if answer, ok = s.answers[id.Webhook]; !ok {
			return nil, false
		}
	}
	var review map[string]any
	if json.Unmarshal(answer, &review) != nil {
		return answer, true
	}
	var req struct {
		Request struct {
			UID string `json:"uid"`
		} `json:"request"`
	}
	uid := id.UID
	if json.Unmarshal(request, &req) == nil && req.Request.UID != "" {
		uid = req.Request.UID
	}
	if r, ok := review["response"].(map[string]any); ok {
		r["uid"] = uid
	}
	out, err := json.Marshal(review)
	if err != nil {
		return answer, true
	}
	return out, true
}
