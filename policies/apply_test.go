package policies

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
)

// These tests cover what Apply and Run do without reaching a server; applying
// to a real API server is tested end to end elsewhere.

// unreachable points at a port nothing listens on: a test that talked to the
// server would fail.
var unreachable = &rest.Config{Host: "http://127.0.0.1:1"}

func TestApplyUnusableDirectory(t *testing.T) {
	tmp := t.TempDir()
	notDir := filepath.Join(tmp, "file.yaml")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		dir, want string
	}{
		{filepath.Join(tmp, "missing"), "no such file or directory"},
		{notDir, "not a directory"},
	} {
		a, err := NewApplier(unreachable, tt.dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		res := a.Apply(context.Background())
		if len(res.Applied) != 0 || len(res.Errors) != 1 {
			t.Fatalf("Apply(%s) = %+v, want one error", tt.dir, res)
		}
		if e := res.Errors[0]; e.File != tt.dir || e.Index != 0 || !strings.Contains(e.Error(), tt.want) {
			t.Errorf("error = %q (file %q, index %d), want the directory and %q", e, e.File, e.Index, tt.want)
		}
	}
	a, _ := NewApplier(unreachable, filepath.Join(tmp, "missing"), nil)
	if err := a.Apply(context.Background()).Errors[0]; !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
}

func TestApplyReportsLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("kind: ConfigMap\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := NewApplier(unreachable, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := a.Apply(context.Background())
	if len(res.Errors) != 1 || res.Errors[0].Error() != "p.yaml: document 1: apiVersion is missing" {
		t.Errorf("errors = %v, want the missing apiVersion of p.yaml", res.Errors)
	}
}

// records is a slog.Handler that passes each record on to a channel.
type records chan slog.Record

func (records) Enabled(context.Context, slog.Level) bool          { return true }
func (r records) Handle(_ context.Context, rec slog.Record) error { r <- rec; return nil }
func (r records) WithAttrs([]slog.Attr) slog.Handler              { return r }
func (r records) WithGroup(string) slog.Handler                   { return r }

func attrs(rec slog.Record) map[string]string {
	m := map[string]string{}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}

func (r records) next(t *testing.T) slog.Record {
	t.Helper()
	select {
	case rec := <-r:
		return rec
	case <-time.After(10 * time.Second):
		t.Fatal("no log line")
		return slog.Record{}
	}
}

func TestRunAppliesWhenDirectoryAppears(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policies")
	logs := make(records, 10)
	a, err := NewApplier(unreachable, dir, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		a.Run(ctx, 10*time.Millisecond)
		close(done)
	}()

	warn := logs.next(t)
	if got := attrs(warn); warn.Level != slog.LevelWarn || !strings.HasPrefix(got["error"], dir+": ") || !strings.Contains(got["error"], "no such file") {
		t.Errorf("first line = %s %v, want a warning that %s is missing", warn.Message, got, dir)
	}
	summary := logs.next(t)
	if got := attrs(summary); summary.Message != "applied policies" || got["dir"] != dir || got["applied"] != "0" || got["errors"] != "1" {
		t.Errorf("second line = %s %v, want the pass summary with one error", summary.Message, got)
	}

	// An empty directory needs no server, so the next pass must succeed.
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	summary = logs.next(t)
	if got := attrs(summary); summary.Message != "applied policies" || got["errors"] != "0" {
		t.Errorf("after the directory appeared: %s %v, want a pass without errors", summary.Message, got)
	}

	// Unchanged files are not applied again.
	select {
	case rec := <-logs:
		t.Errorf("unexpected log line with nothing changed: %s %v", rec.Message, attrs(rec))
	case <-time.After(100 * time.Millisecond):
	}

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func TestEstablished(t *testing.T) {
	crd := func(conditions ...any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"conditions": conditions}}}
	}
	cond := func(typ, status, msg string) any {
		return map[string]any{"type": typ, "status": status, "message": msg}
	}
	for _, tt := range []struct {
		name    string
		crd     *unstructured.Unstructured
		ok      bool
		wantWhy string
	}{
		{"no status", &unstructured.Unstructured{Object: map[string]any{}}, false, ""},
		{"established", crd(cond("NamesAccepted", "True", ""), cond("Established", "True", "")), true, ""},
		{"names in use", crd(cond("NamesAccepted", "False", `"foos" is already in use`), cond("Established", "False", "not all names are accepted")), false,
			`NamesAccepted: "foos" is already in use; Established: not all names are accepted`},
	} {
		ok, why := established(tt.crd)
		if ok != tt.ok || why != tt.wantWhy {
			t.Errorf("%s: established = %v, %q; want %v, %q", tt.name, ok, why, tt.ok, tt.wantWhy)
		}
	}
}
