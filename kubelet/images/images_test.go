package images_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/gatehouse-dev/gatehouse/internal/imagearchive"
	"github.com/gatehouse-dev/gatehouse/internal/testimage"
	"github.com/gatehouse-dev/gatehouse/kubelet/containerd/containerdtest"
	"github.com/gatehouse-dev/gatehouse/kubelet/images"
)

// criHasImage waits briefly for the CRI plugin to see name: it learns
// about images imported through containerd's API from image events.
func criHasImage(t *testing.T, node *containerdtest.Node, name string) *runtimeapi.Image {
	t.Helper()
	is := node.Images(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := is.ImageStatus(context.Background(), &runtimeapi.ImageSpec{Image: name}, false)
		if err != nil {
			t.Fatalf("CRI ImageStatus %s: %v", name, err)
		}
		if resp.Image != nil {
			return resp.Image
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRI does not see %s 5s after it was imported", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLoadAndList(t *testing.T) {
	node := containerdtest.Start(t)
	ctx := context.Background()

	tests := []struct {
		name, ref string
		write     func(io.Writer, string) (*imagearchive.Blobs, error)
	}{
		{"OCI archive", "gatehouse.test/busybox:oci", testimage.WriteOCI},
		{"docker-archive", "gatehouse.test/busybox:docker", testimage.WriteDocker},
		{"gzipped docker-archive", "gatehouse.test/busybox:gz", func(w io.Writer, name string) (*imagearchive.Blobs, error) {
			gz := gzip.NewWriter(w)
			b, err := testimage.WriteDocker(gz, name)
			if err != nil {
				return nil, err
			}
			return b, gz.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			blobs, err := tt.write(&buf, tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			loaded, err := images.Load(ctx, node.Endpoint(), &buf)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(loaded) != 1 || loaded[0].Name != tt.ref || loaded[0].ID != blobs.ConfigDigest || loaded[0].Size <= int64(len(blobs.Layer)) {
				t.Fatalf("Load = %+v, want %s with ID %s and size over %d", loaded, tt.ref, blobs.ConfigDigest, len(blobs.Layer))
			}
			img := criHasImage(t, node, tt.ref)
			if img.Id != blobs.ConfigDigest {
				t.Errorf("CRI image ID = %s, want the config digest %s", img.Id, blobs.ConfigDigest)
			}
		})
	}

	list, err := images.List(ctx, node.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, img := range list {
		names = append(names, img.Name)
		if strings.HasPrefix(img.Name, "sha256:") {
			t.Errorf("List shows the bare ID record %s", img.Name)
		}
	}
	if got := strings.Join(names, ","); got != "gatehouse.test/busybox:docker,gatehouse.test/busybox:gz,gatehouse.test/busybox:oci" {
		t.Errorf("List names = %s", got)
	}
}

func TestEnsurePause(t *testing.T) {
	node := containerdtest.Start(t)
	ctx := context.Background()

	start := time.Now()
	img, imported, err := images.EnsurePause(ctx, node.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first EnsurePause (import): %v", time.Since(start))
	if !imported || img.Name != images.PauseImage {
		t.Errorf("first EnsurePause = %+v, imported %v", img, imported)
	}
	start = time.Now()
	again, imported, err := images.EnsurePause(ctx, node.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second EnsurePause (present): %v", time.Since(start))
	if imported || again != img {
		t.Errorf("second EnsurePause = %+v, imported %v; want %+v, not imported", again, imported, img)
	}
	criImg := criHasImage(t, node, images.PauseImage)
	if criImg.Id != img.ID {
		t.Errorf("CRI image ID = %s, want %s", criImg.Id, img.ID)
	}
}

func TestLoadErrors(t *testing.T) {
	node := containerdtest.Start(t)
	ctx := context.Background()

	// An OCI index that names its manifest with a bare tag only.
	var buf bytes.Buffer
	if _, err := testimage.WriteOCI(&buf, "gatehouse.test/busybox:1"); err != nil {
		t.Fatal(err)
	}
	tagOnly := rewriteIndex(t, buf.Bytes(), func(annotations map[string]string) {
		delete(annotations, imagearchive.AnnotationContainerdName)
	})

	tests := []struct {
		name  string
		input []byte
		want  string
	}{
		{"not an archive", []byte("hello, this is no tar file at all"), "not a tar file"},
		{"gzipped text", gzipped([]byte("still no tar file")), "not a tar file"},
		{"tar of no image", tarOf(t, "README", "hello"), "neither manifest.json"},
		{"tag-only OCI name", tagOnly, "names no image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := images.Load(ctx, node.Endpoint(), bytes.NewReader(tt.input))
			if !errors.Is(err, images.ErrInvalidArchive) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error = %v, want one containing %q", err, tt.want)
			}
		})
	}

	if _, err := images.List(ctx, "relative/path.sock"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("List with a relative endpoint: error = %v", err)
	}
}

// rewriteIndex returns the OCI archive with the annotations of the index's
// manifest changed by edit.
func rewriteIndex(t *testing.T, archive []byte, edit func(map[string]string)) []byte {
	t.Helper()
	var out bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(archive)), tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if hdr.Name == "index.json" {
			var index map[string]any
			if err := json.Unmarshal(data, &index); err != nil {
				t.Fatal(err)
			}
			m := index["manifests"].([]any)[0].(map[string]any)
			annotations := map[string]string{}
			for k, v := range m["annotations"].(map[string]any) {
				annotations[k] = v.(string)
			}
			edit(annotations)
			m["annotations"] = annotations
			data, _ = json.Marshal(index)
			hdr.Size = int64(len(data))
		}
		tw.WriteHeader(hdr)
		tw.Write(data)
	}
	tw.Close()
	return out.Bytes()
}

func gzipped(data []byte) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	gz.Write(data)
	gz.Close()
	return buf.Bytes()
}

func tarOf(t *testing.T, name, content string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	tw.Close()
	return buf.Bytes()
}
