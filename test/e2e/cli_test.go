package e2e

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestUpRejectsBadInput runs `gatehouse up` with input it must refuse before
// starting anything.
func TestUpRejectsBadInput(t *testing.T) {
	// A port the test holds, for the port-in-use case.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)

	badConfig := writeFile(t, "gatehouse.yaml", "apiVersion: gatehouse.dev/v1alpha1\nkind: Config\napiPrt: 1\n")

	tests := []struct {
		name     string
		args     []string
		wantCode int // -1: any non-zero code
		wantErr  []string
	}{
		{
			name:     "unknown runtime",
			args:     []string{"--runtime", "bogus"},
			wantCode: 2,
			wantErr:  []string{"runtime", "bogus"},
		},
		{
			name:     "negative external data cache TTL",
			args:     []string{"--external-data-provider-response-cache-ttl", "-1s"},
			wantCode: 2,
			wantErr:  []string{"externalDataProviderResponseCacheTTL", "must be 0 (no cache) or positive"},
		},
		{
			name:     "unknown flag",
			args:     []string{"--no-such-flag"},
			wantCode: 2,
			wantErr:  []string{"no-such-flag"},
		},
		{
			name:     "unknown config field",
			args:     []string{"--config", badConfig},
			wantCode: 2,
			wantErr:  []string{"apiPrt"},
		},
		{
			name:     "api port in use",
			args:     []string{"--api-port", busyPort},
			wantCode: -1,
			wantErr:  []string{busyPort, "--api-port"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Free ports for every other listener, so that only the case
			// under test can fail, and a case that wrongly starts does not
			// collide with anything.
			p := freePorts(t, 6)
			args := append([]string{"up",
				"--data-dir", t.TempDir(),
				"--node=false",
				"--api-port", strconv.Itoa(p[0]),
				"--etcd-client-port", strconv.Itoa(p[1]),
				"--etcd-peer-port", strconv.Itoa(p[2]),
				"--controller-manager-port", strconv.Itoa(p[3]),
				"--scheduler-port", strconv.Itoa(p[4]),
				"--kubelet-port", strconv.Itoa(p[5]),
			}, tt.args...) // a repeated flag: the last one wins
			stdout, stderr, code := runGatehouse(t, 60*time.Second, args...)
			switch {
			case tt.wantCode == -1 && code == 0, tt.wantCode != -1 && code != tt.wantCode:
				t.Errorf("gatehouse up %s exited %d, want %s; stderr:\n%s", strings.Join(tt.args, " "), code, describeCode(tt.wantCode), stderr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(stderr, want) {
					t.Errorf("gatehouse up %s: stderr does not mention %q:\n%s", strings.Join(tt.args, " "), want, stderr)
				}
			}
			if strings.Contains(stdout, "ready") {
				t.Errorf("gatehouse up %s printed a ready line for bad input:\n%s", strings.Join(tt.args, " "), stdout)
			}
		})
	}
}

// TestKubeconfigWithoutDataDir asks for the kubeconfig of a data dir that
// never ran gatehouse up.
func TestKubeconfigWithoutDataDir(t *testing.T) {
	dir := t.TempDir()
	stdout, stderr, code := runGatehouse(t, 30*time.Second, "kubeconfig", "--data-dir", dir)
	if code != 1 {
		t.Errorf("gatehouse kubeconfig on an empty data dir exited %d, want 1; stdout:\n%s", code, stdout)
	}
	if !strings.Contains(stderr, "gatehouse up") {
		t.Errorf("gatehouse kubeconfig on an empty data dir: stderr does not say to run \"gatehouse up\":\n%s", stderr)
	}
}

func describeCode(code int) string {
	if code == -1 {
		return "a non-zero code"
	}
	return strconv.Itoa(code)
}
