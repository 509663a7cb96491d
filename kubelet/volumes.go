package kubelet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

// podDir is where a pod's volumes and files live (the kubelet's
// /var/lib/kubelet/pods/<uid>).
func (a *Agent) podDir(uid types.UID) string {
	return filepath.Join(podsDir(a.cfg.DataDir), string(uid))
}

// mountVolumes sets up every volume of the pod and returns each one's host
// path: emptyDir (a directory, tmpfs for medium Memory), hostPath (checked
// or created as its type says), configMap, secret, downwardAPI and
// projected (service account tokens through the TokenRequest API bound to
// the pod, ConfigMaps, Secrets, downward API) written as files. Other
// volume types are refused by name, so a pod never runs without a volume
// it asked for.
func (a *Agent) mountVolumes(ctx context.Context, pod *v1.Pod) (map[string]string, error) {
	out := map[string]string{}
	for _, vol := range pod.Spec.Volumes {
		dir := filepath.Join(a.podDir(pod.UID), "volumes", vol.Name)
		var err error
		switch src := vol.VolumeSource; {
		case src.EmptyDir != nil:
			err = emptyDir(dir, src.EmptyDir)
		case src.HostPath != nil:
			dir = src.HostPath.Path
			err = hostPath(src.HostPath)
		case src.ConfigMap != nil:
			err = a.writeFiles(ctx, pod, dir, src.ConfigMap.DefaultMode, []v1.VolumeProjection{{ConfigMap: &v1.ConfigMapProjection{
				LocalObjectReference: src.ConfigMap.LocalObjectReference, Items: src.ConfigMap.Items, Optional: src.ConfigMap.Optional}}})
		case src.Secret != nil:
			err = a.writeFiles(ctx, pod, dir, cmp.Or(src.Secret.DefaultMode, ptr.To[int32](0o644)), []v1.VolumeProjection{{Secret: &v1.SecretProjection{
				LocalObjectReference: v1.LocalObjectReference{Name: src.Secret.SecretName}, Items: src.Secret.Items, Optional: src.Secret.Optional}}})
		case src.DownwardAPI != nil:
			err = a.writeFiles(ctx, pod, dir, src.DownwardAPI.DefaultMode, []v1.VolumeProjection{{DownwardAPI: &v1.DownwardAPIProjection{Items: src.DownwardAPI.Items}}})
		case src.Projected != nil:
			err = a.writeFiles(ctx, pod, dir, src.Projected.DefaultMode, src.Projected.Sources)
		default:
			err = errors.New("this volume type is not supported by Gatehouse's node agent (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected)")
		}
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", vol.Name, err)
		}
		out[vol.Name] = dir
	}
	return out, nil
}

func emptyDir(dir string, src *v1.EmptyDirVolumeSource) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if src.Medium != v1.StorageMediumMemory || isMountPoint(dir) {
		return os.Chmod(dir, 0o777)
	}
	opts := "mode=0777"
	if src.SizeLimit != nil && !src.SizeLimit.IsZero() {
		opts += fmt.Sprintf(",size=%d", src.SizeLimit.Value())
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		return fmt.Errorf("mounting tmpfs: %w", err)
	}
	return nil
}

func isMountPoint(dir string) bool {
	var self, parent syscall.Stat_t
	if syscall.Stat(dir, &self) != nil || syscall.Stat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return self.Dev != parent.Dev
}

func hostPath(src *v1.HostPathVolumeSource) error {
	t := v1.HostPathUnset
	if src.Type != nil {
		t = *src.Type
	}
	info, statErr := os.Stat(src.Path)
	switch t {
	case v1.HostPathDirectoryOrCreate:
		if os.IsNotExist(statErr) {
			return os.MkdirAll(src.Path, 0o755)
		}
		fallthrough
	case v1.HostPathDirectory:
		if statErr != nil || !info.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", src.Path)
		}
	case v1.HostPathFileOrCreate:
		if os.IsNotExist(statErr) {
			if err := os.MkdirAll(filepath.Dir(src.Path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(src.Path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		fallthrough
	case v1.HostPathFile:
		if statErr != nil || !info.Mode().IsRegular() {
			return fmt.Errorf("hostPath type check failed: %s is not a file", src.Path)
		}
	case v1.HostPathSocket:
		if statErr != nil || info.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a socket file", src.Path)
		}
	case v1.HostPathCharDev:
		if statErr != nil || info.Mode()&os.ModeCharDevice == 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a character device", src.Path)
		}
	case v1.HostPathBlockDev:
		if statErr != nil || info.Mode()&os.ModeDevice == 0 || info.Mode()&os.ModeCharDevice != 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a block device", src.Path)
		}
	}
	return nil
}

// writeFiles writes the files of the projections into dir, replacing what
// was there, each with its mode.
func (a *Agent) writeFiles(ctx context.Context, pod *v1.Pod, dir string, defaultMode *int32, sources []v1.VolumeProjection) error {
	mode := os.FileMode(0o644)
	if defaultMode != nil {
		mode = os.FileMode(*defaultMode)
	}
	files := map[string]file{}
	add := func(path string, data []byte, m *int32) {
		f := file{data: data, mode: mode}
		if m != nil {
			f.mode = os.FileMode(*m)
		}
		files[path] = f
	}
	keys := func(all map[string][]byte, items []v1.KeyToPath, kind, name string) error {
		if len(items) == 0 {
			for k, v := range all {
				add(k, v, nil)
			}
			return nil
		}
		for _, item := range items {
			v, ok := all[item.Key]
			if !ok {
				return fmt.Errorf("configuration key %q not found in %s %s/%s", item.Key, kind, pod.Namespace, name)
			}
			add(item.Path, v, item.Mode)
		}
		return nil
	}
	for _, src := range sources {
		switch {
		case src.ConfigMap != nil:
			cm, err := a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, src.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				if ptr.Deref(src.ConfigMap.Optional, false) {
					continue
				}
				return fmt.Errorf("configmap %q not found", src.ConfigMap.Name)
			}
			all := map[string][]byte{}
			for k, v := range cm.Data {
				all[k] = []byte(v)
			}
			maps.Copy(all, cm.BinaryData)
			if err := keys(all, src.ConfigMap.Items, "ConfigMap", cm.Name); err != nil {
				return err
			}
		case src.Secret != nil:
			s, err := a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, src.Secret.Name, metav1.GetOptions{})
			if err != nil {
				if ptr.Deref(src.Secret.Optional, false) {
					continue
				}
				return fmt.Errorf("secret %q not found", src.Secret.Name)
			}
			if err := keys(s.Data, src.Secret.Items, "Secret", s.Name); err != nil {
				return err
			}
		case src.DownwardAPI != nil:
			for _, item := range src.DownwardAPI.Items {
				var value string
				var err error
				switch {
				case item.FieldRef != nil:
					value, err = fieldValue(pod, item.FieldRef.FieldPath, podIPsOf(pod))
				case item.ResourceFieldRef != nil:
					value, err = a.resourceValue(pod, &v1.Container{}, item.ResourceFieldRef)
				}
				if err != nil {
					return err
				}
				add(item.Path, []byte(value), item.Mode)
			}
		case src.ServiceAccountToken != nil:
			token, err := a.serviceAccountToken(ctx, pod, src.ServiceAccountToken)
			if err != nil {
				return err
			}
			add(src.ServiceAccountToken.Path, []byte(token), nil)
		case src.ClusterTrustBundle != nil:
			return errors.New("clusterTrustBundle projections are not supported by Gatehouse's node agent")
		}
	}
	return replaceFiles(dir, files)
}

type file struct {
	data []byte
	mode os.FileMode
}

// replaceFiles writes files into a fresh directory next to dir and swaps
// it in, so a container never sees half a volume.
func replaceFiles(dir string, files map[string]file) error {
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	for path, f := range files {
		clean := filepath.Clean("/" + path)[1:]
		if clean == "" || strings.HasPrefix(path, "..") || filepath.IsAbs(path) {
			return fmt.Errorf("invalid path %q", path)
		}
		full := filepath.Join(tmp, clean)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(full, f.mode); err != nil {
			return err
		}
	}
	if _, err := os.Stat(dir); err == nil {
		// A bind mount of dir into a container follows the directory's
		// inode: the files are replaced inside it, not the directory.
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
		moved, _ := os.ReadDir(tmp)
		for _, e := range moved {
			if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
		return os.RemoveAll(tmp)
	}
	return os.Rename(tmp, dir)
}

// serviceAccountToken requests a token for the pod's service account,
// bound to the pod, as the kubelet's token manager does.
func (a *Agent) serviceAccountToken(ctx context.Context, pod *v1.Pod, src *v1.ServiceAccountTokenProjection) (string, error) {
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: src.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	sa := cmp.Or(pod.Spec.ServiceAccountName, "default")
	resp, err := a.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for service account %s/%s: %w", pod.Namespace, sa, err)
	}
	return resp.Status.Token, nil
}

// unmountVolumes removes the pod's directory, unmounting tmpfs first.
func (a *Agent) unmountVolumes(uid types.UID) {
	dir := a.podDir(uid)
	entries, _ := os.ReadDir(filepath.Join(dir, "volumes"))
	for _, e := range entries {
		p := filepath.Join(dir, "volumes", e.Name())
		if isMountPoint(p) {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
	_ = os.RemoveAll(dir)
}

// containerMounts are the container's volume mounts (with subPath), its
// termination message file and the pod's /etc/hosts.
func (a *Agent) containerMounts(pod *v1.Pod, c *v1.Container, attempt uint32, volumes map[string]string, podIPs []string) ([]*runtimeapi.Mount, error) {
	var out []*runtimeapi.Mount
	hasHosts := false
	for _, m := range c.VolumeMounts {
		host, ok := volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %q: no volume of that name in the pod", m.Name)
		}
		if m.SubPath != "" {
			sub := filepath.Clean("/" + m.SubPath)[1:]
			if sub == "" || strings.HasPrefix(m.SubPath, "..") || filepath.IsAbs(m.SubPath) {
				return nil, fmt.Errorf("volumeMount %q: invalid subPath %q", m.Name, m.SubPath)
			}
			host = filepath.Join(host, sub)
			if _, err := os.Stat(host); os.IsNotExist(err) {
				if err := os.MkdirAll(host, 0o755); err != nil {
					return nil, err
				}
			}
		}
		propagation := runtimeapi.MountPropagation_PROPAGATION_PRIVATE
		if m.MountPropagation != nil {
			switch *m.MountPropagation {
			case v1.MountPropagationHostToContainer:
				propagation = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
			case v1.MountPropagationBidirectional:
				propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
			}
		}
		out = append(out, &runtimeapi.Mount{ContainerPath: m.MountPath, HostPath: host, Readonly: m.ReadOnly, Propagation: propagation})
		if m.MountPath == "/etc/hosts" {
			hasHosts = true
		}
	}
	dir := filepath.Join(a.podDir(pod.UID), "containers", c.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if c.TerminationMessagePath != "" {
		path := filepath.Join(dir, fmt.Sprintf("termination-%d", attempt))
		if err := os.WriteFile(path, nil, 0o666); err != nil {
			return nil, err
		}
		_ = os.Chmod(path, 0o666)
		out = append(out, &runtimeapi.Mount{ContainerPath: c.TerminationMessagePath, HostPath: path})
	}
	if !hasHosts && !pod.Spec.HostNetwork && len(podIPs) > 0 {
		hosts := filepath.Join(a.podDir(pod.UID), "etc-hosts")
		if err := os.WriteFile(hosts, []byte(etcHosts(pod, podIPs[0], a.cfg.ClusterDomain)), 0o644); err != nil {
			return nil, err
		}
		out = append(out, &runtimeapi.Mount{ContainerPath: "/etc/hosts", HostPath: hosts})
	}
	return out, nil
}

// etcHosts is the kubelet-managed /etc/hosts of a pod.
func etcHosts(pod *v1.Pod, ip, domain string) string {
	hostname := cmp.Or(pod.Spec.Hostname, pod.Name)
	line := ip + "\t" + hostname
	if pod.Spec.Subdomain != "" {
		line = fmt.Sprintf("%s\t%s.%s.%s.svc.%s\t%s", ip, hostname, pod.Spec.Subdomain, pod.Namespace, domain, hostname)
	}
	var b strings.Builder
	b.WriteString("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	b.WriteString(line + "\n")
	for _, h := range pod.Spec.HostAliases {
		b.WriteString("\n# Entries added by HostAliases.\n" + h.IP + "\t" + strings.Join(h.Hostnames, "\t") + "\n")
	}
	return b.String()
}

func podIPsOf(pod *v1.Pod) []string {
	var out []string
	for _, ip := range pod.Status.PodIPs {
		out = append(out, ip.IP)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
