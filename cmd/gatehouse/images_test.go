package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testimage"
	"github.com/gatehouse-dev/gatehouse/kubelet/containerd/containerdtest"
)

// runCaptured runs the CLI with args and returns its exit code and output.
func runCaptured(t *testing.T, args ...string) (int, string) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	code := exitOK
	if err != nil {
		out.WriteString("error: " + err.Error())
		code = exitFailed
		if errors.As(err, new(usageError)) || isCobraUsageError(err) {
			code = exitUsage
		}
	}
	return code, out.String()
}

func TestImagesCommands(t *testing.T) {
	node := containerdtest.Start(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "busybox.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := testimage.WriteOCI(f, "gatehouse.test/busybox:1")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	notArchive := filepath.Join(dir, "notes.txt")
	os.WriteFile(notArchive, []byte("not an image"), 0o644)

	code, out := runCaptured(t, "images", "load", "--data-dir", node.Config.DataDir, archive)
	if want := "Loaded image: gatehouse.test/busybox:1 (" + blobs.ManifestDescriptor.Digest + ")\n"; code != exitOK || out != want {
		t.Fatalf("images load: exit %d, output %q, want %q", code, out, want)
	}

	code, out = runCaptured(t, "images", "ls", "--container-runtime-endpoint", node.Endpoint(), "-o", "json")
	var list []struct{ Name, Digest string }
	if err := json.Unmarshal([]byte(out), &list); code != exitOK || err != nil || len(list) != 1 || list[0].Digest != blobs.ManifestDescriptor.Digest {
		t.Fatalf("images ls -o json: exit %d, %v, output %s", code, err, out)
	}
	code, out = runCaptured(t, "images", "ls", "--data-dir", node.Config.DataDir)
	if code != exitOK || !strings.HasPrefix(out, "NAME ") || !strings.Contains(out, "gatehouse.test/busybox:1   sha256:"+blobs.ManifestDescriptor.Digest[7:19]) {
		t.Errorf("images ls: exit %d, output:\n%s", code, out)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no file", []string{"images", "load", "--data-dir", node.Config.DataDir}, exitUsage, "requires at least 1 arg"},
		{"missing file", []string{"images", "load", "--data-dir", node.Config.DataDir, filepath.Join(dir, "nope.tar")}, exitUsage, "nope.tar: no such file"},
		{"not an archive", []string{"images", "load", "--data-dir", node.Config.DataDir, notArchive}, exitUsage, "notes.txt: invalid image archive: not a tar file"},
		{"two runtimes", []string{"images", "ls", "--data-dir", dir, "--container-runtime-endpoint", node.Endpoint()}, exitUsage, "name two runtimes"},
		{"bad output", []string{"images", "ls", "--data-dir", node.Config.DataDir, "-o", "xml"}, exitUsage, `--output "xml"`},
		{"no containerd", []string{"images", "ls", "--data-dir", dir}, exitFailed, "no containerd socket at " + dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runCaptured(t, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, output %q; want exit %d and %q", code, out, tt.code, tt.want)
			}
		})
	}
}
