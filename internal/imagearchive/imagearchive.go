package imagearchive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// Media types written into manifests and indexes.
const (
	MediaTypeOCIIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeOCILayer    = "application/vnd.oci.image.layer.v1.tar"
)

// Annotations naming an image in an OCI index. containerd reads the first;
// the OCI spec defines the second, which tools often fill with only the tag.
const (
	AnnotationContainerdName = "io.containerd.image.name"
	AnnotationRefName        = "org.opencontainers.image.ref.name"
)

// File is one entry of the image's single layer.
type File struct {
	// Path inside the image, relative to its root ("bin/busybox").
	Path string
	// Mode holds the permission bits and fs.ModeSticky; fs.ModeSymlink
	// makes a symlink to Linkname, fs.ModeDir a directory.
	Mode     fs.FileMode
	Data     []byte
	Linkname string
}

// Image is what to build: one layer of Files plus the config's run settings.
type Image struct {
	// Name is the full reference, e.g. "gatehouse.dev/pause:1".
	Name string
	// OS defaults to "linux".
	OS           string
	Architecture string
	Variant      string
	Files        []File
	Entrypoint   []string
	Cmd          []string
	Env          []string
	WorkingDir   string
}

// Descriptor is the OCI content descriptor of one blob.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *Platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Platform is the OCI platform of a manifest in an index.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// Blobs is an image built in memory: what WriteOCI and WriteDocker write,
// and what a registry push uploads.
type Blobs struct {
	Layer, Config, Manifest []byte
	// ManifestDescriptor is the manifest's descriptor as an index lists
	// it (with platform and name annotations); its Digest is the image's
	// digest in a registry.
	ManifestDescriptor Descriptor
	// ConfigDigest is the image ID as CRI reports it.
	ConfigDigest, LayerDigest string
}

// Build makes the layer, config and manifest of img.
func Build(img Image) (*Blobs, error) {
	if img.Name == "" {
		return nil, errors.New("image name is empty")
	}
	if img.Architecture == "" {
		return nil, fmt.Errorf("image %s: architecture is empty", img.Name)
	}
	if img.OS == "" {
		img.OS = "linux"
	}
	layer, err := layerTar(img.Files)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img.Name, err)
	}
	b := &Blobs{Layer: layer, LayerDigest: digestOf(layer)}

	type runConfig struct {
		Entrypoint []string `json:"Entrypoint,omitempty"`
		Cmd        []string `json:"Cmd,omitempty"`
		Env        []string `json:"Env,omitempty"`
		WorkingDir string   `json:"WorkingDir,omitempty"`
	}
	config := struct {
		Created      string    `json:"created"`
		Architecture string    `json:"architecture"`
		OS           string    `json:"os"`
		Variant      string    `json:"variant,omitempty"`
		Config       runConfig `json:"config"`
		RootFS       struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}{
		Created:      time.Unix(0, 0).UTC().Format(time.RFC3339),
		Architecture: img.Architecture,
		OS:           img.OS,
		Variant:      img.Variant,
		Config:       runConfig{img.Entrypoint, img.Cmd, img.Env, img.WorkingDir},
	}
	config.RootFS.Type = "layers"
	// The layer is stored uncompressed, so its digest is its diff ID.
	config.RootFS.DiffIDs = []string{b.LayerDigest}
	if b.Config, err = json.Marshal(config); err != nil {
		return nil, err
	}
	b.ConfigDigest = digestOf(b.Config)

	manifest := struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Config        Descriptor   `json:"config"`
		Layers        []Descriptor `json:"layers"`
	}{
		SchemaVersion: 2,
		MediaType:     MediaTypeOCIManifest,
		Config:        Descriptor{MediaType: MediaTypeOCIConfig, Digest: b.ConfigDigest, Size: int64(len(b.Config))},
		Layers:        []Descriptor{{MediaType: MediaTypeOCILayer, Digest: b.LayerDigest, Size: int64(len(layer))}},
	}
	if b.Manifest, err = json.Marshal(manifest); err != nil {
		return nil, err
	}
	b.ManifestDescriptor = Descriptor{
		MediaType: MediaTypeOCIManifest,
		Digest:    digestOf(b.Manifest),
		Size:      int64(len(b.Manifest)),
		Platform:  &Platform{Architecture: img.Architecture, OS: img.OS, Variant: img.Variant},
		// Both names, as BuildKit writes them: containerd takes the
		// full name from the first, other tools read the tag from the
		// second.
		Annotations: map[string]string{
			AnnotationContainerdName: img.Name,
			AnnotationRefName:        tagOf(img.Name),
		},
	}
	return b, nil
}

// WriteOCI writes img as an OCI image layout tar and returns its blobs.
func WriteOCI(w io.Writer, img Image) (*Blobs, error) {
	b, err := Build(img)
	if err != nil {
		return nil, err
	}
	index, err := json.Marshal(struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []Descriptor `json:"manifests"`
	}{2, MediaTypeOCIIndex, []Descriptor{b.ManifestDescriptor}})
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(w)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"blobs/", nil},
		{"blobs/sha256/", nil},
		{blobPath(b.LayerDigest), b.Layer},
		{blobPath(b.ConfigDigest), b.Config},
		{blobPath(b.ManifestDescriptor.Digest), b.Manifest},
	}
	for _, e := range entries {
		if err := writeEntry(tw, e.name, e.data); err != nil {
			return nil, err
		}
	}
	return b, tw.Close()
}

// WriteDocker writes img as a docker-archive: manifest.json with RepoTags,
// the config as <id>.json and the layer as <id>/layer.tar.
func WriteDocker(w io.Writer, img Image) (*Blobs, error) {
	b, err := Build(img)
	if err != nil {
		return nil, err
	}
	configName := hexOf(b.ConfigDigest) + ".json"
	layerName := hexOf(b.LayerDigest) + "/layer.tar"
	manifest, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{configName, []string{img.Name}, []string{layerName}}})
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(w)
	entries := []struct {
		name string
		data []byte
	}{
		{configName, b.Config},
		{hexOf(b.LayerDigest) + "/", nil},
		{layerName, b.Layer},
		{"manifest.json", manifest},
	}
	for _, e := range entries {
		if err := writeEntry(tw, e.name, e.data); err != nil {
			return nil, err
		}
	}
	return b, tw.Close()
}

// layerTar makes the layer: the files sorted by path, each parent
// directory written before its contents (as image builders do, so that
// every unpacker creates them with known modes).
func layerTar(files []File) ([]byte, error) {
	byPath := map[string]File{}
	for _, f := range files {
		p := path.Clean(strings.TrimPrefix(f.Path, "/"))
		if p == "." || strings.HasPrefix(p, "../") || p == ".." {
			return nil, fmt.Errorf("file path %q is outside the image root", f.Path)
		}
		f.Path = p
		byPath[p] = f
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = File{Path: dir, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	slices.Sort(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := byPath[p]
		mode := int64(f.Mode.Perm())
		if f.Mode&fs.ModeSticky != 0 {
			mode |= 0o1000 // /tmp
		}
		hdr := &tar.Header{Name: p, Mode: mode, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case f.Mode&fs.ModeDir != 0:
			hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
		case f.Mode&fs.ModeSymlink != 0:
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, f.Linkname, 0o777
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, fmt.Errorf("layer entry %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeEntry(tw *tar.Writer, name string, data []byte) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if strings.HasSuffix(name, "/") {
		hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive entry %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("archive entry %s: %w", name, err)
	}
	return nil
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func hexOf(digest string) string { return strings.TrimPrefix(digest, "sha256:") }

func blobPath(digest string) string { return "blobs/sha256/" + hexOf(digest) }

// tagOf returns the tag of a reference ("1" of "gatehouse.dev/pause:1"),
// or "latest" when it has none.
func tagOf(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		return ref[i+1:]
	}
	return "latest"
}
