package jsonlines

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestSinkRotatesAndKeepsBackups(t *testing.T) {
	path := t.TempDir() + "/lines.jsonl"
	s, err := Open(path, 1000)
	if err != nil {
		t.Fatal(err)
	}
	type line struct {
		N       int    `json:"n"`
		Padding string `json:"padding"`
	}
	for i := range 100 {
		s.Add(line{N: i, Padding: strings.Repeat("x", 40)})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 1000 {
		t.Errorf("current file %d bytes, over the 1000 it rotates at", len(data))
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var last line
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.N != 99 {
		t.Errorf("last line %q (%v), want n 99", lines[len(lines)-1], err)
	}
	for i := 1; i <= Backups; i++ {
		if _, err := os.Stat(fmt.Sprintf("%s.%d", path, i)); err != nil {
			t.Errorf("backup %d: %v", i, err)
		}
	}
	if _, err := os.Stat(fmt.Sprintf("%s.%d", path, Backups+1)); err == nil {
		t.Errorf("more than %d backups", Backups)
	}
	if s.Dropped() != 0 {
		t.Errorf("%d dropped", s.Dropped())
	}
	// A value that does not marshal is dropped and counted, not written.
	s2, _ := Open(t.TempDir()+"/bad.jsonl", 0)
	s2.Add(func() {})
	s2.Close()
	if s2.Dropped() != 1 {
		t.Errorf("unmarshallable value: %d dropped, want 1", s2.Dropped())
	}
}
