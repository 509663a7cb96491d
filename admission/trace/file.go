package trace

import (
	"encoding/json"
	"fmt"

	"github.com/gatehouse-dev/gatehouse/internal/jsonlines"
)

// File rotation: a trace file is rotated when it passes MaxFileBytes, and
// FileBackups earlier files are kept (path.1 the newest of them).
const (
	MaxFileBytes = jsonlines.MaxBytes
	FileBackups  = jsonlines.Backups
)

// FileSink writes traces as JSON lines to a file, rotating it by size (see
// package jsonlines); traces it cannot keep up with are dropped from the
// file, not from the ring, and counted.
type FileSink = jsonlines.Sink

// NewFileSink opens (appends to) path. maxBytes <= 0 means MaxFileBytes.
func NewFileSink(path string, maxBytes int64) (*FileSink, error) {
	s, err := jsonlines.Open(path, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("trace file: %w", err)
	}
	return s, nil
}

// fileLine marshals a copy of its trace, taken when the line is written.
type fileLine struct{ t *Trace }

func (l fileLine) MarshalJSON() ([]byte, error) { return json.Marshal(l.t.Copy()) }
