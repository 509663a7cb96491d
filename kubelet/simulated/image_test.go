package simulated

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestNormalizeReference(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "busybox", want: "docker.io/library/busybox:latest"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36"},
		{in: "library/busybox", want: "docker.io/library/busybox:latest"},
		{in: "docker.io/busybox", want: "docker.io/library/busybox:latest"},
		{in: "index.docker.io/library/busybox:1", want: "docker.io/library/busybox:1"},
		{in: "bitnami/nginx", want: "docker.io/bitnami/nginx:latest"},
		{in: "registry.k8s.io/pause:3.10", want: "registry.k8s.io/pause:3.10"},
		{in: "localhost/app", want: "localhost/app:latest"},
		{in: "localhost:5000/team/app:v2", want: "localhost:5000/team/app:v2"},
		{in: "127.0.0.1:5000/app", want: "127.0.0.1:5000/app:latest"},
		{in: "[::1]:5000/app", want: "[::1]:5000/app:latest"},
		{in: "Registry.Example.COM/app", want: "Registry.Example.COM/app:latest"},
		{in: "busybox@sha256:" + strings.Repeat("ab", 32), want: "docker.io/library/busybox@sha256:" + strings.Repeat("ab", 32)},
		{in: "busybox:1.36@sha256:" + strings.Repeat("ab", 32), want: "docker.io/library/busybox@sha256:" + strings.Repeat("ab", 32)},
		{in: "", err: "empty reference"},
		{in: "BusyBox", err: "must be lowercase"},
		{in: "busybox:", err: "invalid reference format"},
		{in: "busy box", err: "invalid reference format"},
		{in: "busybox@sha256:abc", err: "invalid reference format"},
		{in: "busybox@md5:" + strings.Repeat("ab", 16), err: "unsupported digest algorithm"},
		{in: strings.Repeat("ab", 32), err: "cannot specify 64-byte hexadecimal strings"},
		{in: "a/" + strings.Repeat("b", 260), err: "must not be more than 255 characters"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := normalizeReference(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestImages(t *testing.T) {
	f := newFixture(t, Options{MissingImages: []string{"ghcr.io/acme/nope:1", "docker.io/library/gone"}})

	// Absent: nil image, no error.
	resp, err := f.ImageStatus(f.ctx, &runtimeapi.ImageSpec{Image: "busybox"}, false)
	if err != nil || resp.GetImage() != nil {
		t.Fatalf("ImageStatus of an absent image: %v, %v; want a nil image", resp, err)
	}

	id, err := f.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: "busybox", Annotations: map[string]string{"a": "b"}}, &runtimeapi.AuthConfig{Username: "u"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id != syntheticDigest("docker.io/library/busybox:latest") {
		t.Errorf("image ID %q: want sha256 of the normalised reference", id)
	}
	// The same image however it is named.
	for _, name := range []string{"busybox", "busybox:latest", "docker.io/library/busybox:latest", id, strings.TrimPrefix(id, "sha256:"), "busybox@" + id} {
		resp, err := f.ImageStatus(f.ctx, &runtimeapi.ImageSpec{Image: name}, true)
		if err != nil {
			t.Fatalf("ImageStatus(%s): %v", name, err)
		}
		img := resp.GetImage()
		if img.GetId() != id {
			t.Errorf("ImageStatus(%s): id %q, want %q", name, img.GetId(), id)
			continue
		}
		if len(img.RepoTags) != 1 || img.RepoTags[0] != "docker.io/library/busybox:latest" ||
			len(img.RepoDigests) != 1 || img.RepoDigests[0] != "docker.io/library/busybox@"+id ||
			img.Size < 2<<20 || img.Size >= 10<<20 || img.Spec.Annotations["a"] != "b" || resp.Info["info"] == "" {
			t.Errorf("ImageStatus(%s): %v", name, img)
		}
		if again, _ := f.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: name}, nil, nil); again != id {
			t.Errorf("PullImage(%s) again: %q, want %q", name, again, id)
		}
	}

	_, err = f.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: "ghcr.io/acme/nope:1"}, nil, nil)
	wantCode(t, err, codes.NotFound, `failed to pull and unpack image "ghcr.io/acme/nope:1"`)
	_, err = f.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: "gone"}, nil, nil)
	wantCode(t, err, codes.NotFound, "docker.io/library/gone:latest: not found")
	_, err = f.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: "sha256:" + strings.Repeat("0", 64)}, nil, nil)
	wantCode(t, err, codes.NotFound, "there is none with this ID")
	_, err = f.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: "Bad Ref"}, nil, nil)
	wantCode(t, err, codes.InvalidArgument, "failed to parse image reference")
	_, err = f.ImageStatus(f.ctx, &runtimeapi.ImageSpec{Image: "Bad Ref"}, false)
	wantCode(t, err, codes.InvalidArgument, "failed to parse image reference")

	nginx, err := f.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: "nginx:1.27"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	byDigest, err := f.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: "quay.io/x/y@sha256:" + strings.Repeat("cd", 32)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := f.ListImages(f.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 3 || imgs[0].Id != id || imgs[1].Id != nginx || imgs[2].Id != byDigest {
		t.Fatalf("ListImages: %v", imgs)
	}
	if len(imgs[2].RepoTags) != 0 || imgs[2].RepoDigests[0] != "quay.io/x/y@sha256:"+strings.Repeat("cd", 32) {
		t.Errorf("image pulled by digest: %v", imgs[2])
	}
	if only, _ := f.ListImages(f.ctx, &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "nginx:1.27"}}); len(only) != 1 || only[0].Id != nginx {
		t.Errorf("ListImages with a filter: %v", only)
	}

	fs, err := f.ImageFsInfo(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, img := range imgs {
		total += img.Size
	}
	if len(fs.ImageFilesystems) != 1 || fs.ImageFilesystems[0].UsedBytes.Value != total || fs.ImageFilesystems[0].FsId.Mountpoint != "/" {
		t.Errorf("ImageFsInfo: %v, want %d bytes used", fs, total)
	}

	if err := f.RemoveImage(f.ctx, &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := f.ImageStatus(f.ctx, &runtimeapi.ImageSpec{Image: id}, false); resp.GetImage() != nil {
		t.Error("image still there after RemoveImage")
	}
	if err := f.RemoveImage(f.ctx, &runtimeapi.ImageSpec{Image: "busybox"}); err != nil {
		t.Errorf("RemoveImage of an absent image: %v", err)
	}
}

func TestCreateContainerNeedsImage(t *testing.T) {
	f := newFixture(t, Options{})
	cfg := f.sandboxConfig("p", nil)
	sandboxID, err := f.RunPodSandbox(f.ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.CreateContainer(f.ctx, sandboxID, containerConfig("c", "busybox", nil), cfg)
	wantCode(t, err, codes.NotFound, `failed to resolve image "busybox": no image "docker.io/library/busybox:latest" found: not found`)
	_, err = f.CreateContainer(f.ctx, sandboxID, containerConfig("c", "sha256:"+strings.Repeat("0", 64), nil), cfg)
	wantCode(t, err, codes.NotFound, "failed to resolve image")

	// A failed create reserves nothing.
	if _, err := f.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: "busybox"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.CreateContainer(f.ctx, sandboxID, containerConfig("c", "busybox", nil), cfg); err != nil {
		t.Fatal(err)
	}

	// A container outlives the removal of its image.
	id, err := f.CreateContainer(f.ctx, sandboxID, containerConfig("d", "busybox", nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.RemoveImage(f.ctx, &runtimeapi.ImageSpec{Image: "busybox"}); err != nil {
		t.Fatal(err)
	}
	if err := f.StartContainer(f.ctx, id); err != nil {
		t.Fatal(err)
	}
	if st := f.containerStatus(t, id); st.Image.Image != "docker.io/library/busybox:latest" {
		t.Errorf("image of a container whose image was removed: %v", st.Image)
	}
}
