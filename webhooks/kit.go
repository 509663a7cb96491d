package webhooks

import (
	"fmt"
	"maps"
	"sync"

	"github.com/gatehouse-dev/gatehouse/internal/jsonlines"
)

// Kit is one API server's webhook kit: the exchange log, the faults set
// by name, and the stubbed answers.
type Kit struct {
	Log *Log

	mu     sync.RWMutex
	faults map[string]Fault // by webhook name
	// annotated returns the fault annotation of a configuration (kind
	// validating or mutating), "" when it has none; nil until the API
	// server's informers run.
	annotated func(kind, configuration string) string
	stubs     *Stubs
	sink      *jsonlines.Sink
}

// Options configure a Kit.
type Options struct {
	// LogSize is how many exchanges are kept per webhook.
	LogSize int
	// LogFile, when set, also receives every exchange as a JSON line.
	LogFile string
	// Stubs answer the webhooks they hold instead of calling them.
	Stubs *Stubs
}

// New returns a kit.
func New(opts Options) (*Kit, error) {
	k := &Kit{Log: NewLog(opts.LogSize), faults: map[string]Fault{}, stubs: opts.Stubs}
	if opts.LogFile != "" {
		sink, err := jsonlines.Open(opts.LogFile, 0)
		if err != nil {
			return nil, fmt.Errorf("webhook log file: %w", err)
		}
		k.Log.WriteTo(sink)
		k.sink = sink
	}
	return k, nil
}

// Close flushes the log file, if any.
func (k *Kit) Close() error {
	if k.sink != nil {
		return k.sink.Close()
	}
	return nil
}

// SetFault sets (or, with a zero fault, clears) the fault of every
// webhook named name.
func (k *Kit) SetFault(name string, f Fault) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if f.IsZero() {
		delete(k.faults, name)
		return
	}
	k.faults[name] = f
}

// Faults returns the faults set by name.
func (k *Kit) Faults() map[string]Fault {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return maps.Clone(k.faults)
}

// ReadAnnotations makes the kit apply configurations' FaultAnnotation,
// read through annotation.
func (k *Kit) ReadAnnotations(annotation func(kind, configuration string) string) {
	k.mu.Lock()
	k.annotated = annotation
	k.mu.Unlock()
}

// faultFor is the fault of id's webhook: the one set by name, else its
// configuration's annotation (which admission checked; one that does not
// parse now is ignored).
func (k *Kit) faultFor(id Identity) Fault {
	k.mu.RLock()
	f, ok := k.faults[id.Webhook]
	annotated := k.annotated
	k.mu.RUnlock()
	if ok || annotated == nil || id.Kind == KindProvider {
		return f
	}
	if s := annotated(id.Kind, id.Configuration); s != "" {
		if af, err := ParseFault(s); err == nil {
			return af
		}
	}
	return Fault{}
}
