package webhooks

import (
	"cmp"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/jsonlines"
)

// MaxRecordedAnswer is how much of an answer an exchange keeps; a longer
// answer is cut (and kept as text), with its full size.
const MaxRecordedAnswer = 256 << 10

// DefaultLogSize is how many exchanges are kept per webhook by default.
const DefaultLogSize = 1000

// Exchange is one call of a webhook: the AdmissionReview as sent, the
// answer, or the error or timeout, and what Gatehouse did to it.
type Exchange struct {
	ID            uint64    `json:"id"`
	Time          time.Time `json:"time"`
	Kind          string    `json:"kind"`
	Configuration string    `json:"configuration"`
	Webhook       string    `json:"webhook"`
	UID           string    `json:"uid,omitempty"`
	URL           string    `json:"url"`
	// Request is the AdmissionReview as sent.
	Request json.RawMessage `json:"request"`
	// Response is the answer when it is JSON (and not cut);
	// ResponseText the answer otherwise.
	Response     json.RawMessage `json:"response,omitempty"`
	ResponseText string          `json:"responseText,omitempty"`
	// ResponseBytes is the answer's full size; Truncated says it was cut
	// to MaxRecordedAnswer.
	ResponseBytes int  `json:"responseBytes,omitempty"`
	Truncated     bool `json:"truncated,omitempty"`
	StatusCode    int  `json:"statusCode,omitempty"`
	// Error is why the call failed before an answer; TimedOut says it
	// ran out of time.
	Error    string        `json:"error,omitempty"`
	TimedOut bool          `json:"timedOut,omitempty"`
	Duration time.Duration `json:"durationNanos"`
	// Fault is the fault applied (ParseFault's syntax); Stubbed says the
	// answer came from a recorded one instead of the webhook.
	Fault   string `json:"fault,omitempty"`
	Stubbed bool   `json:"stubbed,omitempty"`
}

// Key names a webhook: its configuration and name.
func (e *Exchange) Key() string { return e.Configuration + "/" + e.Webhook }

// Log keeps the newest exchanges of each webhook in a bounded ring, hands
// new ones to followers, and optionally writes them to a JSON-lines file.
type Log struct {
	mu       sync.Mutex
	size     int
	rings    map[string]*ring
	lastID   uint64
	watchers map[chan *Exchange]struct{}
	sink     *jsonlines.Sink
}

type ring struct {
	items []*Exchange
	next  int
	count int
}

// NewLog keeps size exchanges per webhook (DefaultLogSize when <= 0).
func NewLog(size int) *Log {
	if size <= 0 {
		size = DefaultLogSize
	}
	return &Log{size: size, rings: map[string]*ring{}, watchers: map[chan *Exchange]struct{}{}}
}

// WriteTo also writes every exchange to sink from now on.
func (l *Log) WriteTo(sink *jsonlines.Sink) {
	l.mu.Lock()
	l.sink = sink
	l.mu.Unlock()
}

// Add records e, giving it the next ID. e must not change afterwards.
func (l *Log) Add(e *Exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastID++
	e.ID = l.lastID
	r := l.rings[e.Key()]
	if r == nil {
		r = &ring{items: make([]*Exchange, l.size)}
		l.rings[e.Key()] = r
	}
	r.items[r.next] = e
	r.next = (r.next + 1) % len(r.items)
	r.count = min(r.count+1, len(r.items))
	for w := range l.watchers {
		select {
		case w <- e:
		default: // a follower that does not keep up misses exchanges
		}
	}
	if l.sink != nil {
		l.sink.Add(e)
	}
}

// Filter selects exchanges: of one webhook (by name, or
// configuration/name), newer than After.
type Filter struct {
	Webhook string
	After   uint64
}

// Matches reports whether f selects e.
func (f Filter) Matches(e *Exchange) bool {
	if f.Webhook != "" && e.Webhook != f.Webhook && e.Key() != f.Webhook {
		return false
	}
	return e.ID > f.After
}

// List returns the exchanges f selects, oldest first, at most limit of the
// newest (all when limit <= 0).
func (l *Log) List(f Filter, limit int) []*Exchange {
	l.mu.Lock()
	var out []*Exchange
	for _, r := range l.rings {
		start := (r.next - r.count + len(r.items)) % len(r.items)
		for i := range r.count {
			if e := r.items[(start+i)%len(r.items)]; f.Matches(e) {
				out = append(out, e)
			}
		}
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b *Exchange) int { return cmp.Compare(a.ID, b.ID) })
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// Follow returns a channel of the exchanges recorded from now on, and a
// function that stops following.
func (l *Log) Follow(buffer int) (<-chan *Exchange, func()) {
	ch := make(chan *Exchange, buffer)
	l.mu.Lock()
	l.watchers[ch] = struct{}{}
	l.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.watchers, ch)
			l.mu.Unlock()
		})
	}
}
