package trace

import (
	"strings"
	"sync"
)

// DefaultCapacity is how many traces a Recorder keeps by default.
const DefaultCapacity = 10000

// Recorder keeps the newest traces in a ring of fixed size, so memory
// stays bounded however many requests come, and hands new traces to
// followers.
type Recorder struct {
	mu       sync.Mutex
	ring     []*Trace
	next     int // where the next trace goes
	count    int
	lastID   uint64
	watchers map[chan *Trace]struct{}
	sink     *FileSink
	// tagged are the traces in the ring that carry a tag, by tag.
	tagged map[string]*Trace
}

// WriteTo also writes every trace to sink from now on.
func (r *Recorder) WriteTo(sink *FileSink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sink = sink
}

// NewRecorder returns a recorder of capacity traces (DefaultCapacity when
// capacity <= 0).
func NewRecorder(capacity int) *Recorder {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	ensureMetricsRegistered()
	return &Recorder{ring: make([]*Trace, capacity), watchers: map[chan *Trace]struct{}{}, tagged: map[string]*Trace{}}
}

// Add records a closed trace, giving it the next ID.
func (r *Recorder) Add(t *Trace) {
	t.mu.Lock()
	t.packSteps()
	t.mu.Unlock()
	observe(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastID++
	t.ID = r.lastID
	if old := r.ring[r.next]; old != nil && old.Tag != "" && r.tagged[old.Tag] == old {
		delete(r.tagged, old.Tag)
	}
	if t.Tag != "" {
		r.tagged[t.Tag] = t
	}
	r.ring[r.next] = t
	r.next = (r.next + 1) % len(r.ring)
	if r.count < len(r.ring) {
		r.count++
	}
	for w := range r.watchers {
		select {
		case w <- t:
		default: // a follower that does not keep up misses traces
		}
	}
	if r.sink != nil {
		r.sink.Add(fileLine{t})
	}
}

// Filter selects traces; empty fields select everything.
type Filter struct {
	Namespace, Name, User string
	// Outcome is allowed, denied or failed; Verdict selects traces with a
	// step of that verdict (allow, warn, deny, error).
	Outcome, Verdict string
	// After selects traces newer than this ID.
	After uint64
	// NoSystem leaves out requests of users named system:... (the
	// control plane's own components and nodes).
	NoSystem bool
}

// Matches reports whether f selects t.
func (f Filter) Matches(t *Trace) bool {
	if f.Namespace != "" && t.Namespace != f.Namespace ||
		f.Name != "" && t.Name != f.Name ||
		f.User != "" && t.User != f.User ||
		f.Outcome != "" && t.Outcome != f.Outcome ||
		f.NoSystem && strings.HasPrefix(t.User, "system:") ||
		t.ID <= f.After {
		return false
	}
	if f.Verdict != "" {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.hasVerdict(f.Verdict)
	}
	return true
}

// List returns the traces f selects, oldest first, at most limit of the
// newest (all when limit <= 0).
func (r *Recorder) List(f Filter, limit int) []*Trace {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Trace
	start := (r.next - r.count + len(r.ring)) % len(r.ring)
	for i := range r.count {
		t := r.ring[(start+i)%len(r.ring)]
		if f.Matches(t) {
			out = append(out, t)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// Follow returns a channel of the traces recorded from now on, and a
// function that stops following. A follower that falls more than buffer
// traces behind misses some.
func (r *Recorder) Follow(buffer int) (<-chan *Trace, func()) {
	ch := make(chan *Trace, buffer)
	r.mu.Lock()
	r.watchers[ch] = struct{}{}
	r.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			r.mu.Lock()
			delete(r.watchers, ch)
			r.mu.Unlock()
		})
	}
}

// Len is how many traces the recorder holds.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// ByTag returns a copy of the newest trace with tag, or nil.
func (r *Recorder) ByTag(tag string) *Trace {
	r.mu.Lock()
	t := r.tagged[tag]
	r.mu.Unlock()
	if t == nil {
		return nil
	}
	return t.Copy()
}
