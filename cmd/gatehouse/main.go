package main

import (
	"errors"
	"fmt"
	"github.com/spf13/pflag"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

// Exit codes shared by every command.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// usageError marks bad flags, arguments or input files: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// failedError marks a completed command whose answer is "no" (a failed
// check): exit code 1 with no extra "error:" line, the output said it all.
type failedError struct{}

func (failedError) Error() string { return "check failed" }

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "gatehouse",
		Short:         "A real Kubernetes control plane with the admission chain at its centre",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	// For benchmarks and bug reports: a CPU profile of the whole command.
	var cpuProfile string
	root.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the command to this file")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if cpuProfile == "" {
			return nil
		}
		f, err := os.Create(cpuProfile)
		if err != nil {
			return usageErrorf("--cpuprofile: %v", err)
		}
		profileFile = f
		return pprof.StartCPUProfile(f)
	}

	root.AddCommand(newUpCommand(), newNodeCommand(), newCheckCommand(), newTestCommand(), newTraceCommand(), newAuditCommand(), newWebhookCommand(), newKubeconfigCommand(), newImagesCommand(), newVersionCommand())
	return root
}

// profileFile is the open --cpuprofile file, if any.
var profileFile *os.File

func main() {
	// Upstream's version flag (component-base's verflag) lands on the
	// global flag set that cobra merges into every command; Gatehouse has
	// its own version command.
	if f := pflag.CommandLine.Lookup("version"); f != nil {
		f.Hidden = true
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRootCommand()
	if len(args) > 0 && args[0] == "test" {
		args = goTestStyle(args)
	}
	root.SetArgs(args)
	err := root.Execute()
	if profileFile != nil {
		pprof.StopCPUProfile()
		profileFile.Close()
	}
	if err == nil {
		return exitOK
	}
	if errors.As(err, new(failedError)) {
		return exitFailed
	}
	fmt.Fprintln(os.Stderr, "error:", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		return exitUsage
	}
	return exitFailed
}

// isCobraUsageError recognises cobra's own argument errors, which it does
// not route through the flag error func.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, prefix := range []string{"unknown command", "accepts ", "requires ", "invalid argument"} {
		if len(msg) >= len(prefix) && msg[:len(prefix)] == prefix {
			return true
		}
	}
	return false
}
