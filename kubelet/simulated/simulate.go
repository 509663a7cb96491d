package simulated

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Annotations that make a simulated container exit by itself. Each is looked
// up, in order, in
//
//  1. the container's annotations (ContainerConfig.annotations),
//  2. the sandbox's annotations under the key suffixed with "." and the
//     container name (simulate.gatehouse.dev/exit-code.main), and
//  3. the sandbox's annotations under the key itself.
//
// The kubelet copies a pod's annotations into its sandbox config, so a pod
// annotation applies to all the pod's containers (init containers included)
// and the suffixed form to one of them.
const (
	// AnnotationPrefix starts every simulation annotation; an unknown key
	// with this prefix is rejected, to catch typos.
	AnnotationPrefix = "simulate.gatehouse.dev/"
	// AnnotationExitAfter is a Go duration ("30s", "1m30s", "0s"): the
	// container exits by itself that long after it started.
	AnnotationExitAfter = AnnotationPrefix + "exit-after"
	// AnnotationExitCode is the code (0–255) the container exits with
	// when it exits by itself; 0 when absent. Given without exit-after,
	// the container exits as soon as it starts, which with a non-zero code
	// is a crash loop.
	AnnotationExitCode = AnnotationPrefix + "exit-code"
	// AnnotationExecExitCode is the code (0–255) every ExecSync in the
	// container answers with, so that exec probes and hooks pass (0, the
	// default) or fail.
	AnnotationExecExitCode = AnnotationPrefix + "exec-exit-code"
)

var simulationKeys = []string{AnnotationExitAfter, AnnotationExitCode, AnnotationExecExitCode}

// Exit codes and reasons, as containerd reports them.
const (
	reasonCompleted  = "Completed"
	reasonError      = "Error"
	reasonStartError = "StartError"
	// exitCodeStartError is what containerd reports for a container whose
	// start failed.
	exitCodeStartError = 128
	signalKill         = 9
	signalTerm         = 15
)

// behaviour is what a container does once started.
type behaviour struct {
	exits bool
	after time.Duration
	code  int32
	why   string // for the status message: which annotations decided
	// execCode is what ExecSync answers; execWhy which annotation said so.
	execCode int32
	execWhy  string
}

func lookupSimulation(key, containerName string, containerAnn, sandboxAnn map[string]string) (value, where string, ok bool) {
	if v, ok := containerAnn[key]; ok {
		return v, "container annotation " + key, true
	}
	if containerName != "" {
		scoped := key + "." + containerName
		if v, ok := sandboxAnn[scoped]; ok {
			return v, "pod annotation " + scoped, true
		}
	}
	if v, ok := sandboxAnn[key]; ok {
		return v, "pod annotation " + key, true
	}
	return "", "", false
}

func parseExitAfter(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 30s or 2m: %w", err)
	}
	if d < 0 {
		return 0, fmt.Errorf("want a duration of zero or more, not %s", d)
	}
	return d, nil
}

func parseExitCode(v string) (int32, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || n > 255 {
		return 0, fmt.Errorf("want an exit code from 0 to 255, not %q", v)
	}
	return int32(n), nil
}

// validateAnnotations checks every simulation annotation of one object
// (sandbox or container): known keys (with a container-name suffix only
// where allowed) and parseable values.
func validateAnnotations(ann map[string]string, what string, allowScoped bool) error {
	var keys []string
	for k := range ann {
		if strings.HasPrefix(k, AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		base := k
		for _, known := range simulationKeys {
			if allowScoped && strings.HasPrefix(k, known+".") && len(k) > len(known)+1 {
				base = known
			}
		}
		var err error
		switch base {
		case AnnotationExitAfter:
			_, err = parseExitAfter(ann[k])
		case AnnotationExitCode, AnnotationExecExitCode:
			_, err = parseExitCode(ann[k])
		default:
			return fmt.Errorf("unknown %s annotation %s (known: %s)", what, k, strings.Join(simulationKeys, ", "))
		}
		if err != nil {
			return fmt.Errorf("invalid %s annotation %s=%q: %w", what, k, ann[k], err)
		}
	}
	return nil
}

func validateSandboxAnnotations(ann map[string]string) error {
	return validateAnnotations(ann, "pod", true)
}

// resolveBehaviour decides what a container does once started. The
// annotations were validated, so values parse.
func resolveBehaviour(containerName string, containerAnn, sandboxAnn map[string]string) (behaviour, error) {
	if err := validateAnnotations(containerAnn, "container", false); err != nil {
		return behaviour{}, err
	}
	var b behaviour
	var why []string
	if v, where, ok := lookupSimulation(AnnotationExitAfter, containerName, containerAnn, sandboxAnn); ok {
		d, err := parseExitAfter(v)
		if err != nil {
			return behaviour{}, fmt.Errorf("invalid %s=%q: %w", where, v, err)
		}
		b.exits, b.after = true, d
		why = append(why, where)
	}
	if v, where, ok := lookupSimulation(AnnotationExitCode, containerName, containerAnn, sandboxAnn); ok {
		code, err := parseExitCode(v)
		if err != nil {
			return behaviour{}, fmt.Errorf("invalid %s=%q: %w", where, v, err)
		}
		b.exits, b.code = true, code
		why = append(why, where)
	}
	b.why = strings.Join(why, ", ")
	if v, where, ok := lookupSimulation(AnnotationExecExitCode, containerName, containerAnn, sandboxAnn); ok {
		code, err := parseExitCode(v)
		if err != nil {
			return behaviour{}, fmt.Errorf("invalid %s=%q: %w", where, v, err)
		}
		b.execCode, b.execWhy = code, where
	}
	return b, nil
}

func reasonFor(code int32) string {
	if code == 0 {
		return reasonCompleted
	}
	return reasonError
}

// linuxSignals maps CRI stop signals to Linux signal numbers.
var linuxSignals = map[runtimeapi.Signal]int{
	runtimeapi.Signal_SIGNAL_SIGABRT: 6, runtimeapi.Signal_SIGNAL_SIGALRM: 14, runtimeapi.Signal_SIGNAL_SIGBUS: 7,
	runtimeapi.Signal_SIGNAL_SIGCHLD: 17, runtimeapi.Signal_SIGNAL_SIGCLD: 17, runtimeapi.Signal_SIGNAL_SIGCONT: 18,
	runtimeapi.Signal_SIGNAL_SIGFPE: 8, runtimeapi.Signal_SIGNAL_SIGHUP: 1, runtimeapi.Signal_SIGNAL_SIGILL: 4,
	runtimeapi.Signal_SIGNAL_SIGINT: 2, runtimeapi.Signal_SIGNAL_SIGIO: 29, runtimeapi.Signal_SIGNAL_SIGIOT: 6,
	runtimeapi.Signal_SIGNAL_SIGKILL: 9, runtimeapi.Signal_SIGNAL_SIGPIPE: 13, runtimeapi.Signal_SIGNAL_SIGPOLL: 29,
	runtimeapi.Signal_SIGNAL_SIGPROF: 27, runtimeapi.Signal_SIGNAL_SIGPWR: 30, runtimeapi.Signal_SIGNAL_SIGQUIT: 3,
	runtimeapi.Signal_SIGNAL_SIGSEGV: 11, runtimeapi.Signal_SIGNAL_SIGSTKFLT: 16, runtimeapi.Signal_SIGNAL_SIGSTOP: 19,
	runtimeapi.Signal_SIGNAL_SIGSYS: 31, runtimeapi.Signal_SIGNAL_SIGTERM: 15, runtimeapi.Signal_SIGNAL_SIGTRAP: 5,
	runtimeapi.Signal_SIGNAL_SIGTSTP: 20, runtimeapi.Signal_SIGNAL_SIGTTIN: 21, runtimeapi.Signal_SIGNAL_SIGTTOU: 22,
	runtimeapi.Signal_SIGNAL_SIGURG: 23, runtimeapi.Signal_SIGNAL_SIGUSR1: 10, runtimeapi.Signal_SIGNAL_SIGUSR2: 12,
	runtimeapi.Signal_SIGNAL_SIGVTALRM: 26, runtimeapi.Signal_SIGNAL_SIGWINCH: 28, runtimeapi.Signal_SIGNAL_SIGXCPU: 24,
	runtimeapi.Signal_SIGNAL_SIGXFSZ: 25,
}

// signalNumber returns the Linux number of a CRI stop signal (SIGTERM for
// the runtime default).
func signalNumber(s runtimeapi.Signal) (int, bool) {
	if s == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return signalTerm, true
	}
	if n, ok := linuxSignals[s]; ok {
		return n, true
	}
	// SIGRTMIN (34) … SIGRTMAX (64) are contiguous in both enumerations.
	if s >= runtimeapi.Signal_SIGNAL_SIGRTMIN && s <= runtimeapi.Signal_SIGNAL_SIGRTMAX {
		return 34 + int(s-runtimeapi.Signal_SIGNAL_SIGRTMIN), true
	}
	return 0, false
}

// terminates reports whether a signal's default action ends the process;
// a process sent one that does not (SIGCHLD, SIGCONT, SIGSTOP, …) lives
// until the grace period ends and it is killed.
func terminates(sig int) bool {
	switch sig {
	case 17, 18, 19, 20, 21, 22, 23, 28: // CHLD, CONT, STOP, TSTP, TTIN, TTOU, URG, WINCH
		return false
	}
	return true
}

func signalName(n int) string {
	switch n {
	case signalKill:
		return "SIGKILL"
	case signalTerm:
		return "SIGTERM"
	}
	for s, num := range linuxSignals {
		if num == n && s != runtimeapi.Signal_SIGNAL_SIGIOT && s != runtimeapi.Signal_SIGNAL_SIGCLD && s != runtimeapi.Signal_SIGNAL_SIGPOLL {
			return strings.TrimPrefix(s.String(), "SIGNAL_")
		}
	}
	switch {
	case n == 34:
		return "SIGRTMIN"
	case n > 34 && n < 50:
		return "SIGRTMIN+" + strconv.Itoa(n-34)
	case n >= 50 && n < 64:
		return "SIGRTMAX-" + strconv.Itoa(64-n)
	case n == 64:
		return "SIGRTMAX"
	}
	return "signal " + strconv.Itoa(n)
}
