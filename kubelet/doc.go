// Package kubelet is Gatehouse's node agent: it registers a Node, keeps
// its Lease fresh, watches the pods bound to it and runs them through a
// CRI runtime (containerd, or the simulated runtime of package
// kubelet/simulated) as the upstream kubelet does — image pull policies,
// sandboxes, init and app containers with their environment, volumes and
// resources, restarts with back-off, graceful deletion, liveness,
// readiness and startup probes, postStart and preStop hooks — and reports
// their status and events. It serves the kubelet API for the API server:
// container logs, exec, attach, port-forward and run (proxied to the
// runtime's streaming server), stats and resource metrics, healthz.
// Services and cluster DNS are package kubelet/services.
//
// Usage:
//
//	agent, err := kubelet.New(kubelet.Config{
//		NodeName: "gatehouse",
//		Client:   nodeClient, // authenticated as system:node:gatehouse
//		Runtime:  runtimeService,
//		Images:   imageService,
//		DataDir:  "/var/lib/gatehouse/kubelet",
//		PodCIDR:  "10.88.0.0/16",
//	})
//	if err != nil { ... }
//	err = agent.Run(ctx) // until ctx is done
package kubelet
