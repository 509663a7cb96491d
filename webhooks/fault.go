package webhooks

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FaultAnnotation on a webhook configuration applies a fault to every
// webhook of it, in the syntax ParseFault reads.
const FaultAnnotation = "gatehouse.dev/fault"

// Fault is what the transport does to a webhook's calls instead of, or
// besides, calling it.
type Fault struct {
	// Latency delays the call.
	Latency time.Duration `json:"latency,omitempty"`
	// Status answers with this HTTP status without calling the webhook.
	Status int `json:"status,omitempty"`
	// Timeout makes the call hang until its timeout.
	Timeout bool `json:"timeout,omitempty"`
	// BadPatch calls the webhook and replaces its answer's patch with one
	// that does not apply.
	BadPatch bool `json:"badPatch,omitempty"`
	// Refuse fails the call as a refused connection.
	Refuse bool `json:"refuse,omitempty"`
}

// IsZero reports whether f does nothing.
func (f Fault) IsZero() bool { return f == Fault{} }

// String is f in ParseFault's syntax ("" for none).
func (f Fault) String() string {
	var parts []string
	if f.Latency > 0 {
		parts = append(parts, "latency="+f.Latency.String())
	}
	if f.Status != 0 {
		parts = append(parts, "status="+strconv.Itoa(f.Status))
	}
	if f.Timeout {
		parts = append(parts, "timeout")
	}
	if f.BadPatch {
		parts = append(parts, "bad-patch")
	}
	if f.Refuse {
		parts = append(parts, "refuse")
	}
	return strings.Join(parts, ",")
}

// ParseFault reads "latency=3s,status=500": comma-separated items of
// latency=DURATION, status=CODE (400-599), timeout, bad-patch and refuse.
// Latency adds to any other item; of status, timeout, bad-patch and refuse
// one at most, since each decides the call's answer.
func ParseFault(s string) (Fault, error) {
	var f Fault
	answers := 0
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		key, value, hasValue := strings.Cut(item, "=")
		valued := []string{"latency", "status"}
		if hasValue != slices.Contains(valued, key) {
			if hasValue {
				return Fault{}, fmt.Errorf("fault %q: %s takes no value", s, key)
			}
			if slices.Contains(valued, key) {
				return Fault{}, fmt.Errorf("fault %q: %s needs a value, as in %s=...", s, key, key)
			}
		}
		switch key {
		case "latency":
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 {
				return Fault{}, fmt.Errorf("fault %q: latency %q is not a positive duration such as 3s", s, value)
			}
			f.Latency = d
		case "status":
			n, err := strconv.Atoi(value)
			if err != nil || n < 400 || n > 599 {
				return Fault{}, fmt.Errorf("fault %q: status %q is not an HTTP error code (400-599)", s, value)
			}
			f.Status, answers = n, answers+1
		case "timeout":
			f.Timeout, answers = true, answers+1
		case "bad-patch":
			f.BadPatch, answers = true, answers+1
		case "refuse":
			f.Refuse, answers = true, answers+1
		case "":
			return Fault{}, fmt.Errorf("fault %q: empty item", s)
		default:
			return Fault{}, fmt.Errorf("fault %q: unknown item %q (want latency=D, status=N, timeout, bad-patch or refuse)", s, key)
		}
	}
	if answers > 1 {
		return Fault{}, fmt.Errorf("fault %q: status, timeout, bad-patch and refuse exclude each other", s)
	}
	return f, nil
}
