package kubelet

// Labels and annotations on CRI sandboxes and containers: upstream
// kubelet's keys, so crictl and other tools read them as they read a
// kubelet's, plus one of Gatehouse's that marks what this agent manages.
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"
	labelManaged       = "gatehouse.dev/managed"

	annotationRestartCount       = "io.kubernetes.container.restartCount"
	annotationTerminationMessage = "io.kubernetes.container.terminationMessagePath"
	annotationGracePeriod        = "io.kubernetes.pod.terminationGracePeriod"
	annotationContainerImage     = "gatehouse.dev/image"
)
