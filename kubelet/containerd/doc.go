// Package containerd runs containerd as Gatehouse's child process, for the
// node agent to talk CRI to when no --container-runtime-endpoint is given.
//
// Everything containerd keeps lives under the data dir (see Layout): its
// config, root, state, socket, pid file and log, the CNI conflist (a bridge
// with host-local IPAM on the node's pod CIDR, plus portmap) and the IPAM
// leases, so it never meets the system's own containerd. The pod sandbox
// image is Gatehouse's own pause image (package images), never pulled.
//
// Runtime selection (--runtime auto) uses Detect:
//
//	if _, err := containerd.Detect(); err != nil {
//		// One line: what is missing and "apt-get install containerd runc containernetworking-plugins".
//		fmt.Fprintln(os.Stderr, "node runtime: simulated:", err)
//		// … run the simulated runtime
//	}
//	p, err := containerd.Start(ctx, containerd.Config{DataDir: dataDir, PodCIDR: "10.244.0.0/24"})
//	if err != nil {
//		return err
//	}
//	defer p.Stop()
//	if _, _, err := images.EnsurePause(ctx, p.Endpoint); err != nil {
//		return err
//	}
//	// CRI at p.Endpoint (k8s.io/cri-client).
//
// Stop stops containerd but not the containers: their shims outlive it and
// the next Start (after a Gatehouse restart, or a crash that left containerd
// running, found through the pid file) takes them over.
package containerd
