package simulated

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Container logs are written in the CRI log format the kubelet reads
// (`kubectl logs`): "<RFC3339Nano time> stdout F <line>".

type logFile = *os.File

func criLogLine(at int64, text string) string {
	return time.Unix(0, at).UTC().Format(time.RFC3339Nano) + " stdout F " + text + "\n"
}

// openLog opens the container's log file for appending, creating it and,
// unlike containerd, its directory (which the kubelet normally creates).
func openLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

// logLocked queues a line for the container's log file.
func (r *Runtime) logLocked(c *container, at int64, text string) {
	if c.logPath == "" {
		return
	}
	c.pending = append(c.pending, criLogLine(at, text))
}

// writeLog writes lines to f, or to the file at path when f is nil. A log
// that cannot be written does not fail the container (a real container's
// output is lost the same way when its log cannot be written); it is
// reported to the runtime's logger.
func (r *Runtime) writeLog(f *os.File, path string, lines []string) {
	if len(lines) == 0 || path == "" {
		return
	}
	if f == nil {
		var err error
		if f, err = openLog(path); err != nil {
			r.log.Warn("simulated runtime: cannot write container log", "path", path, "err", err)
			return
		}
		defer f.Close()
	}
	if _, err := f.WriteString(strings.Join(lines, "")); err != nil {
		r.log.Warn("simulated runtime: cannot write container log", "path", path, "err", err)
	}
}

// flush writes the container's queued log lines.
func (r *Runtime) flush(c *container) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	r.mu.Lock()
	lines := c.pending
	c.pending = nil
	r.mu.Unlock()
	r.writeLog(nil, c.logPath, lines)
}

func (r *Runtime) flushLogs(cs []*container) {
	for _, c := range cs {
		r.flush(c)
	}
}
