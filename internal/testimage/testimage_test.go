package testimage

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"testing"
)

// requireBusybox fails the test (as root, as in CI) or skips it when the
// host has no /bin/busybox.
func requireBusybox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(BusyboxPath); err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("%v: hack/install-test-deps.sh installs busybox-static", err)
		}
		t.Skipf("skipped: %v (apt-get install busybox-static)", err)
	}
}

func TestFiles(t *testing.T) {
	requireBusybox(t)
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	var links []string
	for _, f := range files {
		if f.Linkname == "busybox" {
			links = append(links, f.Path)
		}
	}
	for _, want := range []string{"bin/sh", "bin/echo", "bin/sleep", "bin/cat", "bin/env", "bin/wget", "bin/ls", "bin/ip"} {
		if !slices.Contains(links, want) {
			t.Errorf("no applet link %s", want)
		}
	}
}

func TestCheckStatic(t *testing.T) {
	if err := checkStatic([]byte("#!/bin/sh\n")); err == nil {
		t.Error("a shell script was taken for a static ELF")
	}
	requireBusybox(t)
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkStatic(data); err != nil {
		t.Errorf("%s: %v", BusyboxPath, err)
	}
}

// TestPush pushes the image to a real docker-registry and reads the
// manifest back by tag.
func TestPush(t *testing.T) {
	requireBusybox(t)
	host := StartRegistry(t)
	var buf bytes.Buffer
	blobs, err := WriteOCI(&buf, "gatehouse.test/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	digest, err := Push(context.Background(), host, "gatehouse/busybox", "1", blobs)
	if err != nil {
		t.Fatal(err)
	}
	// A second push finds the blobs there.
	if _, err := Push(context.Background(), host, "gatehouse/busybox", "1", blobs); err != nil {
		t.Fatalf("second push: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/v2/gatehouse/busybox/manifests/1", nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != digest {
		t.Fatalf("GET manifest: %s, digest %q, want %q: %s", resp.Status, resp.Header.Get("Docker-Content-Digest"), digest, body)
	}
	var m struct{ Layers []struct{ Digest string } }
	if err := json.Unmarshal(body, &m); err != nil || len(m.Layers) != 1 || m.Layers[0].Digest != blobs.LayerDigest {
		t.Errorf("manifest read back = %s (%v)", body, err)
	}
}
