package trace

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// File rotation: a trace file is rotated when it passes MaxFileBytes, and
// FileBackups earlier files are kept (path.1 the newest of them).
const (
	MaxFileBytes = 100 << 20
	FileBackups  = 3
)

// FileSink writes traces as JSON lines to a file, rotating it by size. It
// writes from its own goroutine, so requests never wait on the disk; when
// it falls behind by more than its queue, traces are dropped from the file
// (not from the ring) and counted.
type FileSink struct {
	path     string
	maxBytes int64
	queue    chan *Trace
	dropped  atomic.Int64
	done     chan struct{}
	once     sync.Once

	f    *os.File
	w    *bufio.Writer
	size int64
}

// NewFileSink opens (appends to) path. maxBytes <= 0 means MaxFileBytes.
func NewFileSink(path string, maxBytes int64) (*FileSink, error) {
	if maxBytes <= 0 {
		maxBytes = MaxFileBytes
	}
	s := &FileSink{path: path, maxBytes: maxBytes, queue: make(chan *Trace, 4096), done: make(chan struct{})}
	if err := s.open(); err != nil {
		return nil, err
	}
	go s.run()
	return s, nil
}

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("trace file: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("trace file: %w", err)
	}
	s.f, s.w, s.size = f, bufio.NewWriter(f), info.Size()
	return nil
}

// Add queues a closed trace for the file.
func (s *FileSink) Add(t *Trace) {
	select {
	case s.queue <- t:
	default:
		s.dropped.Add(1)
	}
}

// Dropped is how many traces did not make it to the file.
func (s *FileSink) Dropped() int64 { return s.dropped.Load() }

// Close writes what is queued and closes the file.
func (s *FileSink) Close() error {
	s.once.Do(func() { close(s.queue) })
	<-s.done
	return nil
}

func (s *FileSink) run() {
	defer close(s.done)
	for t := range s.queue {
		line, err := json.Marshal(t.Copy())
		if err != nil {
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
func (s *FileSink) rotate() {
	_ = s.w.Flush()
	_ = s.f.Close()
	s.w, s.f = nil, nil
	for i := FileBackups; i > 1; i-- {
		_ = os.Rename(fmt.Sprintf("%s.%d", s.path, i-1), fmt.Sprintf("%s.%d", s.path, i))
	}
	_ = os.Rename(s.path, s.path+".1")
	if err := s.open(); err != nil {
		s.w, s.f = nil, nil
	}
}
