// Package images manages the node's container images in containerd: it
// imports image archives (docker-archive or OCI layout tars) into the
// namespace the CRI plugin reads (k8s.io), unpacked for the CRI's
// snapshotter so pods can use them at once; it lists them; and it builds
// the pod sandbox ("pause") image itself, since no registry is reachable
// from Gatehouse's machines.
//
// It speaks containerd's own API (CRI cannot import archives), so the
// endpoint must be a containerd socket.
//
//	imgs, err := images.Load(ctx, "unix:///root/.gatehouse/containerd/containerd.sock", f)
//	for _, img := range imgs {
//		fmt.Printf("Loaded image: %s (%s)\n", img.Name, img.Digest)
//	}
//	_, err = images.EnsurePause(ctx, endpoint) // before the first RunPodSandbox
package images
