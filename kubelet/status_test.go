package kubelet

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func runningStatus() v1.ContainerStatus {
	return v1.ContainerStatus{State: v1.ContainerState{Running: &v1.ContainerStateRunning{}}}
}

func exitedWith(code int32) v1.ContainerStatus {
	return v1.ContainerStatus{State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: code}}}
}

func waitingAfter(code int32) v1.ContainerStatus {
	return v1.ContainerStatus{State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: code}}}
}

// TestPhase follows upstream's getPhase on the cases that matter.
func TestPhase(t *testing.T) {
	named := func(name string, s v1.ContainerStatus) v1.ContainerStatus { s.Name = name; return s }
	for _, tc := range []struct {
		name    string
		policy  v1.RestartPolicy
		init    []v1.ContainerStatus
		status  []v1.ContainerStatus
		hasInit bool
		want    v1.PodPhase
	}{
		{"not started", v1.RestartPolicyAlways, nil, nil, false, v1.PodPending},
		{"waiting for image", v1.RestartPolicyAlways, nil, []v1.ContainerStatus{{State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: "ErrImagePull"}}}}, false, v1.PodPending},
		{"running", v1.RestartPolicyAlways, nil, []v1.ContainerStatus{runningStatus()}, false, v1.PodRunning},
		{"crash loop", v1.RestartPolicyAlways, nil, []v1.ContainerStatus{waitingAfter(1)}, false, v1.PodRunning},
		{"job done", v1.RestartPolicyOnFailure, nil, []v1.ContainerStatus{exitedWith(0)}, false, v1.PodSucceeded},
		{"job retrying", v1.RestartPolicyOnFailure, nil, []v1.ContainerStatus{waitingAfter(2)}, false, v1.PodRunning},
		{"never, failed", v1.RestartPolicyNever, nil, []v1.ContainerStatus{exitedWith(3)}, false, v1.PodFailed},
		{"exited, restarting", v1.RestartPolicyAlways, nil, []v1.ContainerStatus{exitedWith(0)}, false, v1.PodRunning},
		{"init running", v1.RestartPolicyAlways, []v1.ContainerStatus{runningStatus()}, nil, true, v1.PodPending},
		{"init failed, never", v1.RestartPolicyNever, []v1.ContainerStatus{exitedWith(1)}, nil, true, v1.PodFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &v1.Pod{Spec: v1.PodSpec{RestartPolicy: tc.policy, Containers: []v1.Container{{Name: "c"}}}}
			if tc.hasInit {
				pod.Spec.InitContainers = []v1.Container{{Name: "i"}}
			}
			var init, status []v1.ContainerStatus
			for _, s := range tc.init {
				init = append(init, named("i", s))
			}
			for _, s := range tc.status {
				status = append(status, named("c", s))
			}
			if got := phase(pod, init, status); got != tc.want {
				t.Errorf("phase = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestLinuxResources(t *testing.T) {
	c := &v1.Container{Resources: v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("250m")},
		Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m"), v1.ResourceMemory: resource.MustParse("64Mi")},
	}}
	r := linuxResources(&v1.Pod{Status: v1.PodStatus{QOSClass: v1.PodQOSBurstable}}, c)
	if r.CpuShares != 256 || r.CpuQuota != 50000 || r.CpuPeriod != 100000 || r.MemoryLimitInBytes != 64<<20 {
		t.Errorf("resources = %+v", r)
	}
	if g := linuxResources(&v1.Pod{Status: v1.PodStatus{QOSClass: v1.PodQOSGuaranteed}}, c); g.OomScoreAdj != -997 {
		t.Errorf("guaranteed oom score %d", g.OomScoreAdj)
	}
}

func TestContainerEnv(t *testing.T) {
	client := fake.NewClientset(
		&v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "ns"}, Data: map[string]string{"COLOR": "blue", "SIZE": "L"}},
		&v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec", Namespace: "ns"}, Data: map[string][]byte{"PASSWORD": []byte("s3cret")}},
	)
	a := &Agent{client: client, cfg: Config{NodeName: "n"}}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", Labels: map[string]string{"app": "web"}}, Spec: v1.PodSpec{NodeName: "n"}}
	c := &v1.Container{
		Name:    "c",
		EnvFrom: []v1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}},
		Env: []v1.EnvVar{
			{Name: "GREETING", Value: "hello $(CFG_COLOR)"},
			{Name: "POD", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "APP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "PASS", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "sec"}, Key: "PASSWORD"}}},
			{Name: "MAYBE", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "absent"}, Key: "x", Optional: ptr.To(true)}}},
		},
	}
	env, err := a.containerEnv(context.Background(), pod, c, []string{"10.88.0.7"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range env {
		got[kv.Key] = string(kv.Value)
	}
	want := map[string]string{"CFG_COLOR": "blue", "CFG_SIZE": "L", "GREETING": "hello blue", "POD": "p", "APP": "web", "IP": "10.88.0.7", "PASS": "s3cret"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["MAYBE"]; ok {
		t.Error("an optional key of a missing ConfigMap was set")
	}
	c.Env = append(c.Env, v1.EnvVar{Name: "MUST", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "sec"}, Key: "NOPE"}}})
	if _, err := a.containerEnv(context.Background(), pod, c, nil); err == nil || err.Error() != "couldn't find key NOPE in Secret ns/sec" {
		t.Errorf("missing key error = %v", err)
	}
}

func TestRegistryOf(t *testing.T) {
	for image, want := range map[string]string{
		"busybox": "docker.io", "library/busybox:1": "docker.io", "127.0.0.1:5000/busybox": "127.0.0.1:5000",
		"localhost/app": "localhost", "registry.example/team/app@sha256:abc": "registry.example",
	} {
		if got := registryOf(image); got != want {
			t.Errorf("registryOf(%q) = %q, want %q", image, got, want)
		}
	}
}

func TestAwaitingOOMReason(t *testing.T) {
	now := time.Now()
	exited := func(code int32, reason string, ago time.Duration) v1.PodStatus {
		return v1.PodStatus{ContainerStatuses: []v1.ContainerStatus{{State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, FinishedAt: metav1.NewTime(now.Add(-ago)),
		}}}}}
	}
	for _, tc := range []struct {
		name   string
		status v1.PodStatus
		want   bool
	}{
		{"fresh 137 called Error", exited(137, "Error", 100*time.Millisecond), true},
		{"137 explained", exited(137, "OOMKilled", 100*time.Millisecond), false},
		{"137 long ago", exited(137, "Error", oomReasonWait+time.Second), false},
		{"other failure", exited(1, "Error", 100*time.Millisecond), false},
		{"running", v1.PodStatus{ContainerStatuses: []v1.ContainerStatus{{State: v1.ContainerState{Running: &v1.ContainerStateRunning{}}}}}, false},
	} {
		if got := awaitingOOMReason(&tc.status, now); got != tc.want {
			t.Errorf("%s: awaitingOOMReason = %v, want %v", tc.name, got, tc.want)
		}
	}
}
