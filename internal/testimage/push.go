package testimage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/gatehouse-dev/gatehouse/internal/imagearchive"
)

// Push uploads an image's blobs and manifest to the registry at host
// ("127.0.0.1:5000") over plain HTTP, as repository:tag, with the registry
// API (distribution spec): a monolithic upload per blob, then the manifest.
// It returns the manifest's digest.
func Push(ctx context.Context, host, repository, tag string, b *imagearchive.Blobs) (string, error) {
	base := &url.URL{Scheme: "http", Host: host, Path: "/v2/" + repository + "/"}
	for _, blob := range []struct {
		digest string
		data   []byte
	}{{b.LayerDigest, b.Layer}, {b.ConfigDigest, b.Config}} {
		if err := pushBlob(ctx, base, blob.digest, blob.data); err != nil {
			return "", err
		}
	}
	manifestURL := base.JoinPath("manifests", tag)
	resp, err := do(ctx, http.MethodPut, manifestURL.String(), imagearchive.MediaTypeOCIManifest, b.Manifest)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("PUT %s: %s: %s", manifestURL, resp.Status, body(resp))
	}
	return b.ManifestDescriptor.Digest, nil
}

func pushBlob(ctx context.Context, base *url.URL, digest string, data []byte) error {
	blobURL := base.JoinPath("blobs", digest)
	resp, err := do(ctx, http.MethodHead, blobURL.String(), "", nil)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusOK {
		return nil // already there
	}
	uploads := base.JoinPath("blobs", "uploads") // POST …/blobs/uploads/
	uploads.Path += "/"
	resp, err = do(ctx, http.MethodPost, uploads.String(), "", nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST %s: %s: %s", uploads, resp.Status, body(resp))
	}
	// Location may be relative to the request.
	loc, err := uploads.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("upload location %q: %w", resp.Header.Get("Location"), err)
	}
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	resp, err = do(ctx, http.MethodPut, loc.String(), "application/octet-stream", data)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT blob %s: %s: %s", digest, resp.Status, body(resp))
	}
	return nil
}

// do sends one request and returns its response with the body read into
// memory (the registry's answers are small).
func do(ctx context.Context, method, url, contentType string, data []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, err
}

func body(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(bytes.TrimSpace(b))
}
