package webhooks

import (
	"strings"
	"testing"
	"time"
)

func TestParseFault(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Fault
		err  string
	}{
		{in: "latency=3s", want: Fault{Latency: 3 * time.Second}},
		{in: "latency=3s,status=500", want: Fault{Latency: 3 * time.Second, Status: 500}},
		{in: " timeout ", want: Fault{Timeout: true}},
		{in: "bad-patch", want: Fault{BadPatch: true}},
		{in: "refuse,latency=10ms", want: Fault{Refuse: true, Latency: 10 * time.Millisecond}},
		{in: "latency=fast", err: "not a positive duration"},
		{in: "latency=-1s", err: "not a positive duration"},
		{in: "status=200", err: "400-599"},
		{in: "status", err: "needs a value"},
		{in: "timeout=1", err: "takes no value"},
		{in: "status=500,timeout", err: "exclude each other"},
		{in: "explode", err: "unknown item"},
		{in: "", err: "empty item"},
		{in: "timeout,,", err: "empty item"},
	} {
		f, err := ParseFault(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || f != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, f, err, tc.want)
		}
		// String is the syntax back.
		if again, err := ParseFault(f.String()); err != nil || again != f {
			t.Errorf("%q: String %q reads back as %+v, %v", tc.in, f.String(), again, err)
		}
	}
}
