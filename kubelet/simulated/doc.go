// Package simulated is a CRI runtime without containers: pod sandboxes and
// containers live in memory and go through the states a real runtime
// reports (sandbox READY → NOTREADY; container CREATED → RUNNING → EXITED),
// with IPs, timestamps, exit codes, reasons and log lines, but no process,
// image content or network namespace exists.
//
// It is the node agent's runtime where no containerd is installed, and the
// one scale tests use (kwok-like, but at the CRI level: the node agent's own
// pod state machine runs unchanged). A *Runtime implements
// k8s.io/cri-api's internalapi.RuntimeService and
// internalapi.ImageManagerService in process, so the node agent uses it
// where it would use a CRI client. Errors are gRPC status errors with the
// codes CRI runtimes use (NotFound, InvalidArgument, FailedPrecondition,
// AlreadyExists, Unimplemented), since the kubelet checks codes.
//
// # What a simulated container does
//
// Started, it writes one line to its CRI log file (LogDirectory of the
// sandbox + LogPath of the container, in the "<time> stdout F <text>" format
// `kubectl logs` reads) and runs until it is stopped:
//
//   - StopContainer with a grace period: it exits at once on its stop
//     signal (SIGTERM unless the container config names another), so it
//     reports 128+signal: 143, reason "Error", as a process that dies of
//     SIGTERM does under containerd. A stop signal whose default action does
//     not end a process (SIGWINCH, SIGCONT, …) leads to SIGKILL: 137.
//   - StopContainer with no grace period, StopPodSandbox, RemoveContainer
//     and RemovePodSandbox of a running container: SIGKILL, 137.
//
// No call blocks for the grace period. Annotations make a container exit by
// itself, to simulate Jobs and crash loops (see AnnotationExitAfter and
// AnnotationExitCode): exit-after=30s exits with code 0 ("Completed") 30s
// after start; with exit-code=1 as well it exits with 1 ("Error"); exit-code
// alone exits at start. They are read from the container's annotations,
// then from the sandbox's (the kubelet passes pod annotations there) under
// "<key>.<container name>", then under "<key>":
//
//	metadata:
//	  annotations:
//	    simulate.gatehouse.dev/exit-after: 5s        # every container
//	    simulate.gatehouse.dev/exit-code.worker: "1" # only "worker" fails
//
// A timer on the Runtime's Clock drives each such exit; no goroutine runs
// per container.
//
// # Images and network
//
// PullImage succeeds at once for any valid reference, normalised as the
// docker reference library does (busybox → docker.io/library/busybox:latest),
// except the Options.MissingImages, which fail with NotFound as an image
// absent from its registry does. An image's ID is the SHA-256 of its
// normalised reference. CreateContainer needs the image to be present.
//
// Each sandbox not on the host network gets an IP (two for a dual-stack
// PodCIDR) from Options.PodCIDR, handed out as CNI's host-local IPAM does
// (network, gateway .1 and broadcast never; no immediate reuse). The IP is
// released when the sandbox stops, as CRI requires of StopPodSandbox
// ("reclaims network resources"), or at the latest when it is removed.
//
// # Not supported
//
// Exec, Attach, PortForward, CheckpointContainer, CheckpointPod and
// RestorePod return codes.Unimplemented. ExecSync runs nothing: it answers
// exit code 0, or the code of AnnotationExecExitCode
// (simulate.gatehouse.dev/exec-exit-code), so exec probes and hooks work.
// Pod IPs are not routable, so HTTP, TCP and gRPC probes cannot reach a
// simulated pod: the node agent counts them as passing without sending
// them (as kwok does), and says so in an event.
//
// # Usage
//
//	rt := simulated.New(simulated.Options{PodCIDR: "10.244.0.0/16"})
//	defer rt.Close(ctx)
//	sandboxID, err := rt.RunPodSandbox(ctx, &runtimeapi.PodSandboxConfig{
//		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "1"},
//		LogDirectory: "/var/log/pods/default_web_1",
//	}, "")
//	imageRef, err := rt.PullImage(ctx, &runtimeapi.ImageSpec{Image: "nginx"}, nil, nil)
//	containerID, err := rt.CreateContainer(ctx, sandboxID, &runtimeapi.ContainerConfig{
//		Metadata: &runtimeapi.ContainerMetadata{Name: "nginx"},
//		Image:    &runtimeapi.ImageSpec{Image: imageRef},
//		LogPath:  "nginx/0.log",
//	}, sandboxConfig)
//	err = rt.StartContainer(ctx, containerID) // RUNNING; nginx/0.log has a line
//
// Tests use a FakeClock (Options.Clock) to move simulated exits forward.
package simulated
