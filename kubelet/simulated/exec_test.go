package simulated

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	utilexec "k8s.io/utils/exec"
)

func TestExecSync(t *testing.T) {
	f := newFixture(t, Options{})
	_, plain := f.runPod(t, "plain", nil, nil)
	stdout, stderr, err := f.ExecSync(f.ctx, plain, []string{"cat", "/tmp/ready"}, time.Second)
	if err != nil || len(stdout) != 0 || len(stderr) != 0 {
		t.Errorf("ExecSync without annotation: %q %q %v, want exit 0 and no output", stdout, stderr, err)
	}

	_, failing := f.runPod(t, "failing", map[string]string{AnnotationExecExitCode + ".main": "3"}, nil)
	_, stderr, err = f.ExecSync(f.ctx, failing, []string{"cat", "/tmp/ready"}, time.Second)
	var exit utilexec.CodeExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 3 {
		t.Fatalf("ExecSync with exec-exit-code 3: %v, want a CodeExitError with code 3", err)
	}
	if want := "command 'cat /tmp/ready' exited with 3"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start %q as the CRI client's", err, want)
	}
	if !strings.Contains(string(stderr), "pod annotation simulate.gatehouse.dev/exec-exit-code.main") {
		t.Errorf("stderr %q does not say which annotation decided", stderr)
	}

	_, err = f.RunPodSandbox(f.ctx, f.sandboxConfig("bad", map[string]string{AnnotationExecExitCode: "x"}), "")
	wantCode(t, err, codes.InvalidArgument, "want an exit code from 0 to 255")

	if err := f.StopContainer(f.ctx, plain, 0); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.ExecSync(f.ctx, plain, []string{"true"}, time.Second)
	wantCode(t, err, codes.FailedPrecondition, "container is in CONTAINER_EXITED state")
	_, _, err = f.ExecSync(f.ctx, "nope", []string{"true"}, time.Second)
	wantCode(t, err, codes.NotFound, "not found")
}
