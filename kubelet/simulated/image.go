package simulated

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// image is a pulled image. Nothing is downloaded: its ID is the SHA-256 of
// its normalised reference, so pulling the same reference twice, or after a
// removal, gives the same ID.
type image struct {
	id          string // sha256:<hex>
	ref         imageRef
	repoTags    []string
	repoDigests []string
	size        uint64
	spec        *runtimeapi.ImageSpec // annotations and runtime handler it was pulled with
	seq         uint64
}

func (i *image) order() uint64 { return i.seq }

func syntheticDigest(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// addImageLocked records the image of a normalised reference, or returns the
// one already recorded.
func (r *Runtime) addImageLocked(ref imageRef, annotations map[string]string, handler string) *image {
	key := ref.String()
	if img, ok := r.imageRefs[key]; ok {
		return img
	}
	id := syntheticDigest(key)
	if img, ok := r.images[id]; ok {
		return img
	}
	sum, _ := hex.DecodeString(strings.TrimPrefix(id, "sha256:"))
	img := &image{
		id:  id,
		ref: ref,
		// 2–10 MiB, varying by image, so ImageFsInfo and image GC see
		// plausible numbers.
		size: 2<<20 + binary.BigEndian.Uint64(sum[:8])%(8<<20),
		spec: &runtimeapi.ImageSpec{Image: id, Annotations: copyMap(annotations), RuntimeHandler: handler},
	}
	if ref.digest != "" {
		img.repoDigests = []string{key}
	} else {
		img.repoTags = []string{key}
		// The digest a registry would give the manifest of this tag.
		img.repoDigests = []string{ref.name + "@" + id}
	}
	r.seq++
	img.seq = r.seq
	r.images[id] = img
	for _, k := range append(img.repoTags, img.repoDigests...) {
		r.imageRefs[k] = img
	}
	return img
}

// resolveImageLocked finds an image by ID ("sha256:<hex>" or the bare hex),
// tag or digest reference. A nil image and nil error means it is absent.
func (r *Runtime) resolveImageLocked(s string) (*image, string, error) {
	if strings.HasPrefix(s, "sha256:") {
		img := r.images[s]
		return img, s, nil
	}
	if imageIDRE.MatchString(s) {
		return r.images["sha256:"+s], "sha256:" + s, nil
	}
	ref, err := normalizeReference(s)
	if err != nil {
		return nil, "", err
	}
	return r.imageRefs[ref.String()], ref.String(), nil
}

func invalidImage(s string, err error) error {
	return status.Errorf(codes.InvalidArgument, "failed to parse image reference %q: %v", s, err)
}

// PullImage "pulls" any valid reference instantly, except those listed in
// Options.MissingImages, which fail with NotFound as a missing image does.
// It returns the image ID.
func (r *Runtime) PullImage(ctx context.Context, spec *runtimeapi.ImageSpec, auth *runtimeapi.AuthConfig, podSandboxConfig *runtimeapi.PodSandboxConfig) (string, error) {
	if err := r.enter(ctx); err != nil {
		return "", err
	}
	s := spec.GetImage()
	if s == "" {
		return "", status.Error(codes.InvalidArgument, "image to pull must not be empty")
	}
	if h := spec.GetRuntimeHandler(); h != "" && !slices.Contains(r.opts.RuntimeHandlers, h) {
		return "", status.Errorf(codes.InvalidArgument, "no runtime for %q is configured", h)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if img, _, err := r.resolveImageLocked(s); err == nil && img != nil {
		return img.id, nil
	}
	if strings.HasPrefix(s, "sha256:") || imageIDRE.MatchString(s) {
		return "", status.Errorf(codes.NotFound, "failed to pull image %q: an image ID names an image already present, and there is none with this ID", s)
	}
	ref, err := normalizeReference(s)
	if err != nil {
		return "", invalidImage(s, err)
	}
	if r.missing[ref.String()] {
		return "", status.Errorf(codes.NotFound, "failed to pull and unpack image %q: failed to resolve reference %q: %s: not found", ref, ref, ref)
	}
	return r.addImageLocked(ref, spec.GetAnnotations(), spec.GetRuntimeHandler()).id, nil
}

func (r *Runtime) criImage(img *image) *runtimeapi.Image {
	return &runtimeapi.Image{
		Id:          img.id,
		RepoTags:    append([]string(nil), img.repoTags...),
		RepoDigests: append([]string(nil), img.repoDigests...),
		Size:        img.size,
		Spec: &runtimeapi.ImageSpec{
			Image:          img.id,
			Annotations:    copyMap(img.spec.GetAnnotations()),
			RuntimeHandler: img.spec.GetRuntimeHandler(),
		},
	}
}

// ImageStatus returns the image, or a response with a nil image when it is
// absent (as CRI requires: absence is not an error).
func (r *Runtime) ImageStatus(ctx context.Context, spec *runtimeapi.ImageSpec, verbose bool) (*runtimeapi.ImageStatusResponse, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	s := spec.GetImage()
	if s == "" {
		return nil, status.Error(codes.InvalidArgument, "image must not be empty")
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	img, _, err := r.resolveImageLocked(s)
	if err != nil {
		return nil, invalidImage(s, err)
	}
	if img == nil {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	resp := &runtimeapi.ImageStatusResponse{Image: r.criImage(img)}
	if verbose {
		b, _ := json.Marshal(map[string]any{"simulated": true, "reference": img.ref.String(), "size": img.size})
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// ListImages lists the images, oldest first; a filter with an image keeps
// only that one.
func (r *Runtime) ListImages(ctx context.Context, filter *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if s := filter.GetImage().GetImage(); s != "" {
		img, _, err := r.resolveImageLocked(s)
		if err != nil {
			return nil, invalidImage(s, err)
		}
		if img == nil {
			return []*runtimeapi.Image{}, nil
		}
		return []*runtimeapi.Image{r.criImage(img)}, nil
	}
	imgs := make([]*image, 0, len(r.images))
	for _, img := range r.images {
		imgs = append(imgs, img)
	}
	bySeq(imgs)
	out := make([]*runtimeapi.Image, len(imgs))
	for i, img := range imgs {
		out[i] = r.criImage(img)
	}
	return out, nil
}

// RemoveImage removes the image with all its references. Removing an absent
// image is not an error. Containers made from it keep running, as in
// containerd.
func (r *Runtime) RemoveImage(ctx context.Context, spec *runtimeapi.ImageSpec) error {
	if err := r.enter(ctx); err != nil {
		return err
	}
	s := spec.GetImage()
	if s == "" {
		return status.Error(codes.InvalidArgument, "image to remove must not be empty")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	img, _, err := r.resolveImageLocked(s)
	if err != nil {
		return invalidImage(s, err)
	}
	if img == nil {
		return nil
	}
	delete(r.images, img.id)
	for _, k := range append(img.repoTags, img.repoDigests...) {
		if r.imageRefs[k] == img {
			delete(r.imageRefs, k)
		}
	}
	return nil
}

// ImageFsInfo reports one image filesystem at Options.ImageFsMountpoint
// holding the images' synthetic sizes.
func (r *Runtime) ImageFsInfo(ctx context.Context) (*runtimeapi.ImageFsInfoResponse, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	var used, inodes uint64
	for _, img := range r.images {
		used += img.size
		inodes += 100
	}
	r.mu.RUnlock()
	return &runtimeapi.ImageFsInfoResponse{
		ImageFilesystems: []*runtimeapi.FilesystemUsage{{
			Timestamp:  r.now(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: r.opts.ImageFsMountpoint},
			UsedBytes:  &runtimeapi.UInt64Value{Value: used},
			InodesUsed: &runtimeapi.UInt64Value{Value: inodes},
		}},
	}, nil
}
