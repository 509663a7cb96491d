package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/klog/v2"
)

// setupLogging sends the upstream components' klog output to
// <logDir>/gatehouse.log, and Gatehouse's own slog records to the terminal
// (info and up) and to the same file, so the file tells the whole story in
// order and the terminal only what a user acts on.
func setupLogging(logDir string, verbosity int, terminal io.Writer, terminalLevel slog.Level) (*slog.Logger, string, error) {
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("creating log directory: %w", err)
	}
	path := filepath.Join(logDir, "gatehouse.log")
	file, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("opening log file: %w", err)
	}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for name, value := range map[string]string{
		"logtostderr":     "false",
		"alsologtostderr": "false",
		"one_output":      "true", // one copy of each line, not one per severity
		// Without this klog copies every error line to stderr too; the
		// terminal is for Gatehouse's own lines, failures surface there as
		// component errors.
		"stderrthreshold": "FATAL",
		"v":               strconv.Itoa(verbosity),
	} {
		if err := fs.Set(name, value); err != nil {
			return nil, "", err
		}
	}
	klog.SetOutput(file)

	logger := slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(terminal, &slog.HandlerOptions{Level: terminalLevel, ReplaceAttr: dropTime}),
		slog.NewJSONHandler(file, &slog.HandlerOptions{Level: slog.LevelDebug}),
	))
	return logger, path, nil
}

// dropTime keeps terminal lines short; the log file has the timestamps.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
