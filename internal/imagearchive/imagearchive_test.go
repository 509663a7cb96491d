package imagearchive

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"strings"
	"testing"
)

func testImage() Image {
	return Image{
		Name:         "gatehouse.test/tiny:1",
		Architecture: "amd64",
		Files: []File{
			{Path: "bin/tool", Mode: 0o755, Data: []byte("#!tool")},
			{Path: "bin/alias", Mode: fs.ModeSymlink, Linkname: "tool"},
		},
		Cmd: []string{"/bin/tool"},
		Env: []string{"PATH=/bin"},
	}
}

// readTar returns the archive's entries by name (directories with nil data).
func readTar(t *testing.T, data []byte) map[string]*tar.Header {
	t.Helper()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = hdr
	}
}

func readFile(t *testing.T, data []byte, name string) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in archive: %v", name, err)
		}
		if hdr.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

func TestWriteOCI(t *testing.T) {
	var a, b bytes.Buffer
	blobs, err := WriteOCI(&a, testImage())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteOCI(&b, testImage()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two builds of the same image differ: the archive is not reproducible")
	}

	var index struct{ Manifests []Descriptor }
	if err := json.Unmarshal(readFile(t, a.Bytes(), "index.json"), &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index has %d manifests, want 1", len(index.Manifests))
	}
	m := index.Manifests[0]
	if m.Annotations[AnnotationContainerdName] != "gatehouse.test/tiny:1" || m.Annotations[AnnotationRefName] != "1" {
		t.Errorf("index annotations = %v", m.Annotations)
	}
	if m.Digest != blobs.ManifestDescriptor.Digest || m.Platform.Architecture != "amd64" || m.Platform.OS != "linux" {
		t.Errorf("index manifest = %+v", m)
	}
	for _, d := range []string{blobs.LayerDigest, blobs.ConfigDigest, m.Digest} {
		data := readFile(t, a.Bytes(), blobPath(d))
		if got := digestOf(data); got != d {
			t.Errorf("blob %s has digest %s", d, got)
		}
	}

	layer := readTar(t, blobs.Layer)
	for name, typ := range map[string]byte{"bin/": tar.TypeDir, "bin/tool": tar.TypeReg, "bin/alias": tar.TypeSymlink} {
		if layer[name] == nil || layer[name].Typeflag != typ {
			t.Errorf("layer entry %s missing or of the wrong type", name)
		}
	}
	var config struct {
		Config struct{ Cmd, Env []string }
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(blobs.Config, &config); err != nil {
		t.Fatal(err)
	}
	if config.RootFS.DiffIDs[0] != blobs.LayerDigest || config.Config.Cmd[0] != "/bin/tool" {
		t.Errorf("config = %+v", config)
	}
}

func TestWriteDocker(t *testing.T) {
	var buf bytes.Buffer
	blobs, err := WriteDocker(&buf, testImage())
	if err != nil {
		t.Fatal(err)
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(readFile(t, buf.Bytes(), "manifest.json"), &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 1 || manifest[0].RepoTags[0] != "gatehouse.test/tiny:1" {
		t.Fatalf("manifest.json = %+v", manifest)
	}
	if !bytes.Equal(readFile(t, buf.Bytes(), manifest[0].Layers[0]), blobs.Layer) {
		t.Error("layer.tar differs from the built layer")
	}
	if !bytes.Equal(readFile(t, buf.Bytes(), manifest[0].Config), blobs.Config) {
		t.Error("config differs from the built config")
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Image)
		want   string
	}{
		{"no name", func(i *Image) { i.Name = "" }, "name is empty"},
		{"no architecture", func(i *Image) { i.Architecture = "" }, "architecture is empty"},
		{"escaping path", func(i *Image) { i.Files = []File{{Path: "../etc/passwd"}} }, `"../etc/passwd" is outside`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := testImage()
			tt.mutate(&img)
			_, err := Build(img)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestTagOf(t *testing.T) {
	for ref, want := range map[string]string{
		"gatehouse.dev/pause:1":             "1",
		"localhost:5000/busybox":            "latest",
		"localhost:5000/busybox:2":          "2",
		"busybox@sha256:0123":               "latest",
		"gatehouse.test/busybox:1@sha256:0": "1",
	} {
		if got := tagOf(ref); got != want {
			t.Errorf("tagOf(%q) = %q, want %q", ref, got, want)
		}
	}
}
