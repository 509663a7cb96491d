package kubelet

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ensureImage makes the container's image present as its pull policy
// says, with upstream's events and back-off: Pulling, Pulled, Failed
// (ErrImagePull, then ImagePullBackOff while the back-off lasts),
// ErrImageNeverPull. It returns the image reference to create the
// container from, or why it cannot and when to try again.
func (a *Agent) ensureImage(ctx context.Context, pod *v1.Pod, c *v1.Container, sandbox *runtimeapi.PodSandboxConfig) (string, waitingReason, time.Duration) {
	spec := &runtimeapi.ImageSpec{Image: c.Image, UserSpecifiedImage: c.Image}
	present, err := a.images.ImageStatus(ctx, spec, false)
	if err != nil {
		return "", waitingReason{"ErrImageInspect", fmt.Sprintf("Failed to inspect image %q: %v", c.Image, err)}, 2 * time.Second
	}
	if img := present.GetImage(); img != nil && c.ImagePullPolicy != v1.PullAlways {
		a.event(pod, v1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.Image)
		return img.Id, waitingReason{}, 0
	}
	if c.ImagePullPolicy == v1.PullNever {
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)
		a.event(pod, v1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
		return "", waitingReason{"ErrImageNeverPull", msg}, 0
	}
	key := string(pod.UID) + "_" + c.Image
	if a.pullBack.IsInBackOffSinceUpdate(key, a.pullBack.Clock.Now()) {
		msg := fmt.Sprintf("Back-off pulling image %q", c.Image)
		a.event(pod, v1.EventTypeNormal, "BackOff", "%s", msg)
		return "", waitingReason{"ImagePullBackOff", msg}, a.pullBack.Get(key)
	}
	a.event(pod, v1.EventTypeNormal, "Pulling", "Pulling image %q", c.Image)
	start := time.Now()
	ref, err := a.images.PullImage(ctx, spec, a.pullAuth(ctx, pod, c.Image), sandbox)
	if err != nil {
		a.event(pod, v1.EventTypeWarning, "Failed", "Failed to pull image %q: %v", c.Image, err)
		a.pullBack.Next(key, a.pullBack.Clock.Now())
		return "", waitingReason{"ErrImagePull", err.Error()}, a.pullBack.Get(key)
	}
	took := time.Since(start).Round(time.Millisecond)
	size := ""
	if st, err := a.images.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false); err == nil && st.GetImage() != nil {
		size = fmt.Sprintf(" Image size: %d bytes.", st.Image.Size)
	}
	a.event(pod, v1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %s (%s including waiting).%s", c.Image, took, took, size)
	a.pullBack.GC()
	return ref, waitingReason{}, 0
}

// pullAuth is the first credential of the pod's imagePullSecrets
// (kubernetes.io/dockerconfigjson or dockercfg) for the image's registry.
func (a *Agent) pullAuth(ctx context.Context, pod *v1.Pod, image string) *runtimeapi.AuthConfig {
	registry := registryOf(image)
	for _, ref := range pod.Spec.ImagePullSecrets {
		secret, err := a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			a.event(pod, v1.EventTypeWarning, "FailedToRetrieveImagePullSecret", "Unable to retrieve some image pull secrets (%s); attempting to pull the image may not succeed.", ref.Name)
			continue
		}
		var auths map[string]struct {
			Username, Password, Auth string
			IdentityToken            string `json:"identitytoken"`
		}
		switch secret.Type {
		case v1.SecretTypeDockerConfigJson:
			var cfg struct {
				Auths map[string]struct {
					Username, Password, Auth string
					IdentityToken            string `json:"identitytoken"`
				} `json:"auths"`
			}
			if json.Unmarshal(secret.Data[v1.DockerConfigJsonKey], &cfg) == nil {
				auths = cfg.Auths
			}
		case v1.SecretTypeDockercfg:
			_ = json.Unmarshal(secret.Data[v1.DockerConfigKey], &auths)
		}
		for server, auth := range auths {
			server = strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
			server, _, _ = strings.Cut(server, "/")
			if server != registry {
				continue
			}
			cfg := &runtimeapi.AuthConfig{Username: auth.Username, Password: auth.Password, IdentityToken: auth.IdentityToken, ServerAddress: server}
			if auth.Auth != "" && cfg.Username == "" {
				if raw, err := base64.StdEncoding.DecodeString(auth.Auth); err == nil {
					cfg.Username, cfg.Password, _ = strings.Cut(string(raw), ":")
				}
			}
			return cfg
		}
	}
	return nil
}

// registryOf is the registry host of an image reference, docker.io when
// it names none (the first path element is a host when it has a dot or a
// port, or is localhost).
func registryOf(image string) string {
	first, _, found := strings.Cut(image, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return "docker.io"
}
