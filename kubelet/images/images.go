package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	// containerd v2's client, although the node's containerd is 1.6: the
	// APIs it uses here (content, images, leases, snapshots, diff) are the
	// same gRPC services in 1.6, and it compiles with our k8s.io v0.37 pins
	// where containerd 1.7's module would pull older k8s.io/cri-api and
	// otel versions. Checked against Debian's containerd 1.6.20 by this
	// package's and kubelet/containerd's tests.
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
)

// Namespace is the containerd namespace the CRI plugin keeps its images and
// containers in.
const Namespace = "k8s.io"

// Snapshotter is the snapshotter images are unpacked for: the CRI plugin's
// (kubelet/containerd configures overlayfs, containerd's default).
const Snapshotter = "overlayfs"

// Image is one named image in the runtime.
type Image struct {
	// Name is the full reference, e.g. "docker.io/library/busybox:1.36".
	Name string `json:"name"`
	// Digest is the digest of what the name points at (a manifest or an
	// index): the image's digest in a registry.
	Digest string `json:"digest"`
	// ID is the digest of the image config for this platform, the image
	// ID that CRI reports.
	ID string `json:"id,omitempty"`
	// Size is the bytes of this platform's manifest, config and layers as
	// stored (compressed where the layers are).
	Size int64 `json:"size"`
}

// connect returns a client of the containerd at endpoint in the CRI's
// namespace. endpoint is a socket path, with or without "unix://".
func connect(endpoint string) (*containerd.Client, error) {
	path := strings.TrimPrefix(endpoint, "unix://")
	if path == "" || !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("containerd endpoint %q: want an absolute unix socket path, e.g. unix:///run/containerd/containerd.sock", endpoint)
	}
	// The client dials lazily and retries until its timeout; a quick dial
	// here turns a wrong endpoint into a clear error at once.
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("containerd endpoint %s: %w", endpoint, err)
	}
	conn.Close()
	c, err := containerd.New(path, containerd.WithDefaultNamespace(Namespace), containerd.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: %w", endpoint, err)
	}
	return c, nil
}

// ErrInvalidArchive is wrapped by Load's errors about the input itself
// (not a tar, no image in it), as opposed to the runtime's.
var ErrInvalidArchive = errors.New("invalid image archive")

// Load imports the image archive read from r (a docker-archive as `docker
// save` writes it, or an OCI image layout tar, either possibly gzipped)
// into the runtime at endpoint and unpacks each image, so the CRI plugin
// can start containers from it without a pull. It returns the images named
// in the archive.
//
// An OCI archive names its images in index.json: the annotation
// io.containerd.image.name, or org.opencontainers.image.ref.name when that
// holds a full reference; a manifest named only by a tag ("latest") has no
// name to import it under.
func Load(ctx context.Context, endpoint string, r io.Reader) ([]Image, error) {
	tarStream, err := openArchive(r)
	if err != nil {
		return nil, err
	}
	c, err := connect(endpoint)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return load(ctx, c, tarStream)
}

// openArchive undoes gzip compression (as docker load does) and checks that
// the stream starts with a tar header, so that a wrong file is reported as
// such rather than as containerd's "unexpected EOF".
func openArchive(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 1024)
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrInvalidArchive, err)
		}
		br = bufio.NewReaderSize(gz, 1024)
	}
	block, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the archive: %w", err)
	}
	if _, err := tar.NewReader(bytes.NewReader(block)).Next(); err != nil {
		return nil, fmt.Errorf("%w: not a tar file (want a docker-archive from 'docker save' or an OCI image layout tar)", ErrInvalidArchive)
	}
	return br, nil
}

func load(ctx context.Context, c *containerd.Client, r io.Reader) ([]Image, error) {
	imported, err := c.Import(ctx, r, containerd.WithImageRefTranslator(fullReference))
	if err != nil {
		if strings.Contains(err.Error(), "unrecognized image format") {
			return nil, fmt.Errorf("%w: a tar file with neither manifest.json (docker-archive) nor oci-layout (OCI layout)", ErrInvalidArchive)
		}
		return nil, fmt.Errorf("importing: %w", err)
	}
	if len(imported) == 0 {
		return nil, fmt.Errorf("%w: it names no image: an OCI archive's index.json needs the annotation "+
			"io.containerd.image.name or a full reference (host/name:tag) in org.opencontainers.image.ref.name", ErrInvalidArchive)
	}
	out := make([]Image, 0, len(imported))
	for _, img := range imported {
		i := containerd.NewImage(c, img)
		if err := i.Unpack(ctx, Snapshotter); err != nil {
			return nil, fmt.Errorf("unpacking %s for the %s snapshotter: %w", img.Name, Snapshotter, err)
		}
		described, err := describe(ctx, c, img)
		if err != nil {
			return nil, err
		}
		out = append(out, described)
	}
	return out, nil
}

// fullReference keeps an OCI ref.name annotation only when it is a full
// reference, normalised the way containerd names images; a bare tag is not
// a name.
func fullReference(ref string) string {
	if !strings.ContainsAny(ref, "/:@") {
		return ""
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return ""
	}
	return named.String()
}

// List returns the named images in the runtime at endpoint, sorted by
// name. The CRI plugin also records each image under its bare ID
// ("sha256:…"); those records are left out, their ID is on the named ones.
func List(ctx context.Context, endpoint string) ([]Image, error) {
	c, err := connect(endpoint)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	records, err := c.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing images at %s: %w", endpoint, err)
	}
	out := make([]Image, 0, len(records))
	for _, img := range records {
		if strings.HasPrefix(img.Name, "sha256:") {
			continue
		}
		described, err := describe(ctx, c, img)
		if err != nil {
			// An image whose content is partly missing (an interrupted
			// pull) is still listed, without size and ID.
			described = Image{Name: img.Name, Digest: img.Target.Digest.String()}
		}
		out = append(out, described)
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func describe(ctx context.Context, c *containerd.Client, img images.Image) (Image, error) {
	i := containerd.NewImage(c, img)
	size, err := i.Size(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("size of %s: %w", img.Name, err)
	}
	config, err := i.Config(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("config of %s: %w", img.Name, err)
	}
	return Image{Name: img.Name, Digest: img.Target.Digest.String(), ID: config.Digest.String(), Size: size}, nil
}

// EnsurePause imports the pause image (PauseImage) for this host's
// architecture unless the runtime at endpoint already has exactly this
// build of it, unpacked. It reports whether it imported.
func EnsurePause(ctx context.Context, endpoint string) (Image, bool, error) {
	var archive bytes.Buffer
	blobs, err := PauseArchive(&archive, hostArch)
	if err != nil {
		return Image{}, false, err
	}
	c, err := connect(endpoint)
	if err != nil {
		return Image{}, false, err
	}
	defer c.Close()

	// Building the archive in memory takes microseconds; what is worth
	// skipping is the import, when the name already points at the same
	// manifest (Import names the manifest, not the archive's index) and it
	// is unpacked.
	existing, err := c.ImageService().Get(ctx, PauseImage)
	switch {
	case err == nil && existing.Target.Digest.String() == blobs.ManifestDescriptor.Digest:
		unpacked, err := containerd.NewImage(c, existing).IsUnpacked(ctx, Snapshotter)
		if err != nil {
			return Image{}, false, fmt.Errorf("checking %s is unpacked: %w", PauseImage, err)
		}
		if unpacked {
			img, err := describe(ctx, c, existing)
			return img, false, err
		}
	case err != nil && !errdefs.IsNotFound(err):
		return Image{}, false, fmt.Errorf("looking up %s at %s: %w", PauseImage, endpoint, err)
	}
	imgs, err := load(ctx, c, &archive)
	if err != nil {
		return Image{}, false, fmt.Errorf("importing %s: %w", PauseImage, err)
	}
	return imgs[0], true, nil
}
