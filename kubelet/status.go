package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

// podStatus is the pod's status as the kubelet reports it: phase,
// conditions, container statuses, IPs and start time.
func (a *Agent) podStatus(pod *v1.Pod, w *podWorker, s *podSync) v1.PodStatus {
	status := *pod.Status.DeepCopy()
	status.HostIP = a.cfg.NodeIP.String()
	status.HostIPs = []v1.HostIP{{IP: status.HostIP}}
	if w.startTime != nil && status.StartTime == nil {
		status.StartTime = &metav1.Time{Time: *w.startTime}
	}
	if ips := s.state.podIPs; len(ips) > 0 || pod.Spec.HostNetwork {
		if pod.Spec.HostNetwork {
			ips = []string{status.HostIP}
		}
		status.PodIP = ips[0]
		status.PodIPs = nil
		for _, ip := range ips {
			status.PodIPs = append(status.PodIPs, v1.PodIP{IP: ip})
		}
	}
	status.InitContainerStatuses = a.containerStatuses(pod, pod.Spec.InitContainers, s, true)
	status.ContainerStatuses = a.containerStatuses(pod, pod.Spec.Containers, s, false)
	status.Phase = phase(pod, status.InitContainerStatuses, status.ContainerStatuses)
	if s.failed {
		status.Phase = v1.PodFailed
	}

	terminal := status.Phase == v1.PodSucceeded || status.Phase == v1.PodFailed
	var notInitialized, notReady []string
	for _, c := range pod.Spec.InitContainers {
		st := findStatus(status.InitContainerStatuses, c.Name)
		if st == nil || st.State.Terminated == nil || st.State.Terminated.ExitCode != 0 {
			if c.RestartPolicy == nil || *c.RestartPolicy != v1.ContainerRestartPolicyAlways {
				notInitialized = append(notInitialized, c.Name)
			}
		}
	}
	for _, c := range pod.Spec.Containers {
		if st := findStatus(status.ContainerStatuses, c.Name); st == nil || !st.Ready {
			notReady = append(notReady, c.Name)
		}
	}
	sandboxReady := s.state.ready() != nil
	conditions := []v1.PodCondition{
		condition(v1.PodReadyToStartContainers, sandboxReady && !terminal, "", ""),
	}
	if len(notInitialized) == 0 {
		conditions = append(conditions, condition(v1.PodInitialized, true, "", ""))
	} else {
		conditions = append(conditions, condition(v1.PodInitialized, false, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(notInitialized, " "))))
	}
	switch {
	case terminal && status.Phase == v1.PodSucceeded:
		conditions = append(conditions, condition(v1.ContainersReady, false, "PodCompleted", ""), condition(v1.PodReady, false, "PodCompleted", ""))
	case len(notReady) > 0 || terminal:
		msg := fmt.Sprintf("containers with unready status: [%s]", strings.Join(notReady, " "))
		conditions = append(conditions, condition(v1.ContainersReady, false, "ContainersNotReady", msg), condition(v1.PodReady, false, "ContainersNotReady", msg))
	default:
		conditions = append(conditions, condition(v1.ContainersReady, true, "", ""), condition(v1.PodReady, true, "", ""))
	}
	// Keep the conditions others own (PodScheduled, DisruptionTarget,
	// readiness gates), and each transition time while the status holds.
	owned := map[v1.PodConditionType]bool{}
	for _, c := range conditions {
		owned[c.Type] = true
	}
	var merged []v1.PodCondition
	for _, c := range pod.Status.Conditions {
		if !owned[c.Type] {
			merged = append(merged, c)
		}
	}
	for _, c := range conditions {
		for _, old := range pod.Status.Conditions {
			if old.Type == c.Type && old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		merged = append(merged, c)
	}
	status.Conditions = merged
	return status
}

func condition(t v1.PodConditionType, ok bool, reason, message string) v1.PodCondition {
	s := v1.ConditionFalse
	if ok {
		s = v1.ConditionTrue
	}
	return v1.PodCondition{Type: t, Status: s, Reason: reason, Message: message, LastTransitionTime: metav1.Now()}
}

func findStatus(list []v1.ContainerStatus, name string) *v1.ContainerStatus {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// containerStatuses reports each container's newest instance, the one
// before it as lastState, and why it waits when it does.
func (a *Agent) containerStatuses(pod *v1.Pod, containers []v1.Container, s *podSync, init bool) []v1.ContainerStatus {
	var out []v1.ContainerStatus
	runtimeName, _, _ := strings.Cut(a.runtimeID, ":")
	for _, c := range containers {
		st := v1.ContainerStatus{Name: c.Name, Image: c.Image, Started: ptr.To(false)}
		instances := s.state.instances(c.Name)
		waiting, waits := s.waiting[c.Name]
		if len(instances) == 0 {
			reason := "ContainerCreating"
			if init {
				reason = "PodInitializing"
			}
			if waits {
				reason = waiting.reason
			}
			st.State.Waiting = &v1.ContainerStateWaiting{Reason: reason, Message: waiting.message}
			out = append(out, st)
			continue
		}
		latest := instances[0]
		st.ContainerID = runtimeName + "://" + latest.Id
		st.ImageID = latest.ImageRef
		st.RestartCount = restartCount(latest)
		switch latest.State {
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			st.State.Running = &v1.ContainerStateRunning{StartedAt: metav1.Time{Time: time.Unix(0, latest.StartedAt)}}
			st.Started, st.Ready = ptr.To(true), !init || (c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways)
			a.probes.applyTo(&c, latest.Id, &st)
		case runtimeapi.ContainerState_CONTAINER_EXITED:
			st.State.Terminated = a.terminated(pod, c, latest, runtimeName)
		default:
			st.State.Waiting = &v1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		if len(instances) > 1 && exited(instances[1]) {
			st.LastTerminationState.Terminated = a.terminated(pod, c, instances[1], runtimeName)
		}
		if waits && latest.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			// About to be restarted (or failing to be): the exited
			// instance becomes lastState, as upstream reports it.
			if st.State.Terminated != nil {
				st.LastTerminationState.Terminated = st.State.Terminated
			}
			st.State = v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: waiting.reason, Message: waiting.message}}
		}
		out = append(out, st)
	}
	return out
}

// terminated is an exited instance's state; its message is what the
// container wrote to its termination message file, or with
// FallbackToLogsOnError the end of its log when it failed.
func (a *Agent) terminated(pod *v1.Pod, c v1.Container, inst *runtimeapi.ContainerStatus, runtimeName string) *v1.ContainerStateTerminated {
	t := &v1.ContainerStateTerminated{
		ExitCode:    inst.ExitCode,
		Reason:      inst.Reason,
		Message:     inst.Message,
		StartedAt:   metav1.Time{Time: time.Unix(0, inst.StartedAt)},
		FinishedAt:  metav1.Time{Time: time.Unix(0, inst.FinishedAt)},
		ContainerID: runtimeName + "://" + inst.Id,
	}
	if t.Reason == "" {
		t.Reason = "Completed"
		if t.ExitCode != 0 {
			t.Reason = "Error"
		}
	}
	path := filepath.Join(a.podDir(pod.UID), "containers", c.Name, fmt.Sprintf("termination-%d", inst.Metadata.Attempt))
	if data, err := os.ReadFile(path); err == nil && len(data) > 0 {
		t.Message = string(data[:min(len(data), 4096)])
	} else if c.TerminationMessagePolicy == v1.TerminationMessageFallbackToLogsOnError && t.ExitCode != 0 && inst.LogPath != "" {
		t.Message = tailLog(inst.LogPath, 80, 2048)
	}
	return t
}

// tailLog is the last lines of a CRI log file, without the CRI prefixes.
func tailLog(path string, lines, maxBytes int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	all = all[max(0, len(all)-lines):]
	var b strings.Builder
	for _, l := range all {
		// <time> <stream> <P|F> <text>
		if f := strings.SplitN(l, " ", 4); len(f) == 4 {
			l = f[3]
		}
		b.WriteString(l + "\n")
	}
	s := b.String()
	return s[max(0, len(s)-maxBytes):]
}

// phase is upstream's getPhase: Pending while an init container or a
// container waits to start for the first time, Running while one runs or
// will be restarted, Succeeded or Failed once none will run again.
func phase(pod *v1.Pod, initStatuses, statuses []v1.ContainerStatus) v1.PodPhase {
	pendingInit, failedInit := 0, 0
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			continue
		}
		st := findStatus(initStatuses, c.Name)
		switch {
		case st == nil, st.State.Running != nil:
			pendingInit++
		case st.State.Terminated != nil:
			if st.State.Terminated.ExitCode != 0 {
				failedInit++
			}
		case st.State.Waiting != nil:
			if st.LastTerminationState.Terminated != nil {
				if st.LastTerminationState.Terminated.ExitCode != 0 {
					failedInit++
				}
			} else {
				pendingInit++
			}
		default:
			pendingInit++
		}
	}
	unknown, running, waiting, stopped, succeeded := 0, 0, 0, 0, 0
	for _, c := range pod.Spec.Containers {
		st := findStatus(statuses, c.Name)
		switch {
		case st == nil:
			unknown++
		case st.State.Running != nil:
			running++
		case st.State.Terminated != nil:
			stopped++
			if st.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case st.State.Waiting != nil:
			if st.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}
	if failedInit > 0 && pod.Spec.RestartPolicy == v1.RestartPolicyNever {
		return v1.PodFailed
	}
	switch {
	case pendingInit > 0, waiting > 0:
		return v1.PodPending
	case running > 0 && unknown == 0:
		return v1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		if pod.Spec.RestartPolicy == v1.RestartPolicyAlways {
			return v1.PodRunning
		}
		if stopped == succeeded {
			return v1.PodSucceeded
		}
		if pod.Spec.RestartPolicy == v1.RestartPolicyNever {
			return v1.PodFailed
		}
		return v1.PodRunning
	}
	return v1.PodPending
}

// postStatus patches the pod's status when it changed, with the pod's UID
// as a precondition so a pod recreated under the same name is not touched.
func (a *Agent) postStatus(ctx context.Context, pod *v1.Pod, status v1.PodStatus) error {
	if equality.Semantic.DeepEqual(withoutTimes(pod.Status), withoutTimes(status)) {
		return nil
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": pod.UID},
		"status":   status,
	})
	if err != nil {
		return err
	}
	_, err = a.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	return err
}

// withoutTimes drops condition transition times, which a recomputed
// status sets afresh for conditions that are new.
func withoutTimes(s v1.PodStatus) v1.PodStatus {
	s = *s.DeepCopy()
	for i := range s.Conditions {
		s.Conditions[i].LastTransitionTime = metav1.Time{}
		s.Conditions[i].LastProbeTime = metav1.Time{}
	}
	slices.SortFunc(s.Conditions, func(x, y v1.PodCondition) int { return strings.Compare(string(x.Type), string(y.Type)) })
	return s
}
