package jsonlines

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// Rotation: a file is rotated when it passes MaxBytes, and Backups earlier
// files are kept (path.1 the newest of them).
const (
	MaxBytes = 100 << 20
	Backups  = 3
)

// Sink writes values as JSON lines to a file, rotating it by size. When it
// falls behind by more than its queue, values are dropped and counted.
type Sink struct {
	path     string
	maxBytes int64
	queue    chan any
	dropped  atomic.Int64
	done     chan struct{}
	once     sync.Once

	f    *os.File
	w    *bufio.Writer
	size int64
}

// Open opens (appends to) path. maxBytes <= 0 means MaxBytes.
func Open(path string, maxBytes int64) (*Sink, error) {
	if maxBytes <= 0 {
		maxBytes = MaxBytes
	}
	s := &Sink{path: path, maxBytes: maxBytes, queue: make(chan any, 4096), done: make(chan struct{})}
	if err := s.open(); err != nil {
		return nil, err
	}
	go s.run()
	return s, nil
}

func (s *Sink) open() error {
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening %s: %w", s.path, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening %s: %w", s.path, err)
	}
	s.f, s.w, s.size = f, bufio.NewWriter(f), info.Size()
	return nil
}

// Add queues v, marshalled with encoding/json when it is written: v must
// not change afterwards (or marshal a copy of itself).
func (s *Sink) Add(v any) {
	select {
	case s.queue <- v:
	default:
		s.dropped.Add(1)
	}
}

// Dropped is how many values did not make it to the file.
func (s *Sink) Dropped() int64 { return s.dropped.Load() }

// Close writes what is queued and closes the file.
func (s *Sink) Close() error {
	s.once.Do(func() { close(s.queue) })
	<-s.done
	return nil
}

func (s *Sink) run() {
	defer close(s.done)
	for v := range s.queue {
		line, err := json.Marshal(v)
		if err != nil {
			s.dropped.Add(1)
			continue
		}
		if s.size+int64(len(line))+1 > s.maxBytes && s.size > 0 {
			s.rotate()
		}
		if s.w == nil {
			s.dropped.Add(1)
			continue
		}
		n, _ := s.w.Write(append(line, '\n'))
		s.size += int64(n)
		if len(s.queue) == 0 {
			_ = s.w.Flush() // a reader tailing the file sees each burst
		}
	}
	if s.w != nil {
		_ = s.w.Flush()
		_ = s.f.Close()
	}
}

// rotate moves path to path.1 (and path.1 to path.2, …) and starts anew.
func (s *Sink) rotate() {
	_ = s.w.Flush()
	_ = s.f.Close()
	s.w, s.f = nil, nil
	for i := Backups; i > 1; i-- {
		_ = os.Rename(fmt.Sprintf("%s.%d", s.path, i-1), fmt.Sprintf("%s.%d", s.path, i))
	}
	_ = os.Rename(s.path, s.path+".1")
	if err := s.open(); err != nil {
		s.w, s.f = nil, nil
	}
}
