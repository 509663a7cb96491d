package kubelet

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

// missingClusterDNS says, as upstream's kubelet does, that a ClusterFirst
// pod gets the host's resolvers for want of a cluster DNS server.
func (a *Agent) missingClusterDNS(pod *v1.Pod) {
	policy := pod.Spec.DNSPolicy
	if len(a.cfg.ClusterDNS) == 0 && !pod.Spec.HostNetwork && (policy == v1.DNSClusterFirst || policy == v1.DNSClusterFirstWithHostNet) {
		a.event(pod, v1.EventTypeWarning, "MissingClusterDNS", "pod: %q. kubelet does not have ClusterDNS IP configured and cannot create Pod using %q policy. Falling back to %q policy.", podDesc(pod), policy, v1.DNSDefault)
	}
}

// sandboxConfig is the pod's CRI sandbox: metadata, hostname, DNS, host
// ports, log directory, namespaces and sysctls.
func (a *Agent) sandboxConfig(pod *v1.Pod, attempt uint32) *runtimeapi.PodSandboxConfig {
	labels := map[string]string{}
	maps.Copy(labels, pod.Labels)
	labels[labelPodName], labels[labelPodNamespace], labels[labelPodUID], labels[labelManaged] = pod.Name, pod.Namespace, string(pod.UID), "true"
	annotations := maps.Clone(pod.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	hostname := pod.Spec.Hostname
	if hostname == "" {
		hostname = pod.Name
	}
	if len(hostname) > 63 {
		hostname = strings.TrimRight(hostname[:63], "-.")
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: pod.Name, Namespace: pod.Namespace, Uid: string(pod.UID), Attempt: attempt},
		Hostname:     hostname,
		LogDirectory: podLogDir(a.cfg.DataDir, pod.Namespace, pod.Name, pod.UID),
		DnsConfig:    a.dnsConfig(pod),
		Labels:       labels,
		Annotations:  annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: namespaceOptions(pod),
				Privileged:       anyPrivileged(pod),
			},
			Sysctls: map[string]string{},
		},
	}
	if pod.Spec.HostNetwork {
		cfg.Hostname = ""
	}
	if sc := pod.Spec.SecurityContext; sc != nil {
		for _, s := range sc.Sysctls {
			cfg.Linux.Sysctls[s.Name] = s.Value
		}
		cfg.Linux.SecurityContext.SupplementalGroups = sc.SupplementalGroups
		if sc.RunAsUser != nil {
			cfg.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: *sc.RunAsUser}
		}
		if sc.RunAsGroup != nil {
			cfg.Linux.SecurityContext.RunAsGroup = &runtimeapi.Int64Value{Value: *sc.RunAsGroup}
		}
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort <= 0 {
				continue
			}
			proto := runtimeapi.Protocol_TCP
			switch p.Protocol {
			case v1.ProtocolUDP:
				proto = runtimeapi.Protocol_UDP
			case v1.ProtocolSCTP:
				proto = runtimeapi.Protocol_SCTP
			}
			cfg.PortMappings = append(cfg.PortMappings, &runtimeapi.PortMapping{Protocol: proto, ContainerPort: p.ContainerPort, HostPort: p.HostPort, HostIp: p.HostIP})
		}
	}
	return cfg
}

func namespaceOptions(pod *v1.Pod) *runtimeapi.NamespaceOption {
	opts := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD}
	if pod.Spec.HostNetwork {
		opts.Network = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostIPC {
		opts.Ipc = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostPID {
		opts.Pid = runtimeapi.NamespaceMode_NODE
	} else if pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace {
		opts.Pid = runtimeapi.NamespaceMode_POD
	}
	return opts
}

func anyPrivileged(pod *v1.Pod) bool {
	for _, c := range append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
			return true
		}
	}
	return false
}

// dnsConfig follows the pod's dnsPolicy. Without a cluster DNS server
// (Gatehouse's comes with Services), ClusterFirst falls back to the host's
// resolvers as upstream's kubelet does (with its MissingClusterDNS event,
// sent when the sandbox is created).
func (a *Agent) dnsConfig(pod *v1.Pod) *runtimeapi.DNSConfig {
	host := hostResolvConf()
	policy := pod.Spec.DNSPolicy
	if policy == v1.DNSClusterFirstWithHostNet && !pod.Spec.HostNetwork {
		policy = v1.DNSClusterFirst
	}
	var cfg *runtimeapi.DNSConfig
	switch policy {
	case v1.DNSNone:
		cfg = &runtimeapi.DNSConfig{}
	case v1.DNSClusterFirst, v1.DNSClusterFirstWithHostNet:
		if len(a.cfg.ClusterDNS) == 0 || (policy == v1.DNSClusterFirst && pod.Spec.HostNetwork) {
			cfg = host
			break
		}
		d := a.cfg.ClusterDomain
		cfg = &runtimeapi.DNSConfig{
			Servers:  a.cfg.ClusterDNS,
			Searches: append([]string{pod.Namespace + ".svc." + d, "svc." + d, d}, host.Searches...),
			Options:  []string{"ndots:5"},
		}
	default:
		cfg = host
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		cfg.Servers = append(cfg.Servers, dc.Nameservers...)
		cfg.Searches = append(cfg.Searches, dc.Searches...)
		for _, o := range dc.Options {
			if o.Value != nil {
				cfg.Options = append(cfg.Options, o.Name+":"+*o.Value)
			} else {
				cfg.Options = append(cfg.Options, o.Name)
			}
		}
	}
	return cfg
}

// hostResolvConf reads the host's resolvers; where /etc/resolv.conf points
// at a local stub (systemd-resolved), the upstream list it forwards to,
// since a pod cannot reach the host's loopback.
func hostResolvConf() *runtimeapi.DNSConfig {
	for _, path := range []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"} {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		cfg := &runtimeapi.DNSConfig{}
		loopback := false
		for line := range strings.SplitSeq(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || strings.HasPrefix(f[0], "#") {
				continue
			}
			switch f[0] {
			case "nameserver":
				if strings.HasPrefix(f[1], "127.") || f[1] == "::1" {
					loopback = true
					continue
				}
				cfg.Servers = append(cfg.Servers, f[1])
			case "search", "domain":
				cfg.Searches = append(cfg.Searches, f[1:]...)
			case "options":
				cfg.Options = append(cfg.Options, f[1:]...)
			}
		}
		if !loopback || len(cfg.Servers) > 0 {
			return cfg
		}
	}
	return &runtimeapi.DNSConfig{}
}

// containerConfig is the CRI container of c: image, command and args with
// $(VAR) expanded, environment, mounts, resources and security context.
func (a *Agent) containerConfig(ctx context.Context, pod *v1.Pod, c *v1.Container, attempt uint32, imageRef string, podIPs []string, volumes map[string]string) (*runtimeapi.ContainerConfig, error) {
	env, err := a.containerEnv(ctx, pod, c, podIPs)
	if err != nil {
		return nil, err
	}
	vars := map[string]string{}
	for _, e := range env {
		vars[e.Key] = string(e.Value)
	}
	mapping := expansion.MappingFuncFor(vars)
	expand := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = expansion.Expand(s, mapping)
		}
		return out
	}
	mounts, err := a.containerMounts(pod, c, attempt, volumes, podIPs)
	if err != nil {
		return nil, err
	}
	security, err := a.securityContext(ctx, pod, c, imageRef)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: attempt},
		Image:      &runtimeapi.ImageSpec{Image: imageRef, UserSpecifiedImage: c.Image},
		Command:    expand(c.Command),
		Args:       expand(c.Args),
		WorkingDir: c.WorkingDir,
		Envs:       env,
		Mounts:     mounts,
		Labels: map[string]string{
			labelPodName: pod.Name, labelPodNamespace: pod.Namespace, labelPodUID: string(pod.UID),
			labelContainerName: c.Name, labelManaged: "true",
		},
		Annotations: map[string]string{
			annotationRestartCount:       strconv.Itoa(int(attempt)),
			annotationTerminationMessage: c.TerminationMessagePath,
			annotationGracePeriod:        strconv.FormatInt(gracePeriod(pod), 10),
			annotationContainerImage:     c.Image,
		},
		LogPath:   filepath.Join(c.Name, strconv.Itoa(int(attempt))+".log"),
		Stdin:     c.Stdin,
		StdinOnce: c.StdinOnce,
		Tty:       c.TTY,
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       linuxResources(pod, c),
			SecurityContext: security,
		},
	}, nil
}

// linuxResources turns requests and limits into cgroup settings, as the
// kubelet does: CPU shares from the request, CFS quota from the limit over
// a 100 ms period, the memory limit, and the OOM score of the pod's QoS
// class.
func linuxResources(pod *v1.Pod, c *v1.Container) *runtimeapi.LinuxContainerResources {
	const period = 100000
	r := &runtimeapi.LinuxContainerResources{CpuPeriod: period, CpuShares: 2}
	cpuRequest := c.Resources.Requests.Cpu()
	cpuLimit := c.Resources.Limits.Cpu()
	if cpuRequest.IsZero() && !cpuLimit.IsZero() {
		cpuRequest = cpuLimit
	}
	if !cpuRequest.IsZero() {
		r.CpuShares = max(2, cpuRequest.MilliValue()*1024/1000)
	}
	if !cpuLimit.IsZero() {
		r.CpuQuota = max(1000, cpuLimit.MilliValue()*period/1000)
	}
	if mem := c.Resources.Limits.Memory(); !mem.IsZero() {
		r.MemoryLimitInBytes = mem.Value()
	}
	switch pod.Status.QOSClass {
	case v1.PodQOSGuaranteed:
		r.OomScoreAdj = -997
	case v1.PodQOSBestEffort:
		r.OomScoreAdj = 1000
	default:
		// Burstable: 1000 - 1000*request/capacity, within [3, 999].
		r.OomScoreAdj = 999
		if req := c.Resources.Requests.Memory(); !req.IsZero() {
			if total := memTotal(); total > 0 {
				r.OomScoreAdj = min(999, max(3, 1000-1000*req.Value()/total))
			}
		}
	}
	return r
}

// Upstream's defaults for unprivileged containers (securitycontext's
// DefaultProcMount): /proc paths masked or read-only.
var (
	defaultMaskedPaths = []string{"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"}
	defaultReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// securityContext merges the pod's and the container's, and refuses
// runAsNonRoot when the image would run as root, as the kubelet does.
func (a *Agent) securityContext(ctx context.Context, pod *v1.Pod, c *v1.Container, imageRef string) (*runtimeapi.LinuxContainerSecurityContext, error) {
	out := &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: namespaceOptions(pod),
		MaskedPaths:      defaultMaskedPaths,
		ReadonlyPaths:    defaultReadonlyPaths,
	}
	var runAsUser, runAsGroup *int64
	var runAsNonRoot *bool
	if psc := pod.Spec.SecurityContext; psc != nil {
		runAsUser, runAsGroup, runAsNonRoot = psc.RunAsUser, psc.RunAsGroup, psc.RunAsNonRoot
		out.SupplementalGroups = psc.SupplementalGroups
		if psc.FSGroup != nil {
			out.SupplementalGroups = append(out.SupplementalGroups, *psc.FSGroup)
		}
		out.Seccomp = seccomp(psc.SeccompProfile)
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			runAsUser = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			runAsGroup = sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			runAsNonRoot = sc.RunAsNonRoot
		}
		if sc.SeccompProfile != nil {
			out.Seccomp = seccomp(sc.SeccompProfile)
		}
		if sc.Privileged != nil && *sc.Privileged {
			out.Privileged = true
			out.MaskedPaths, out.ReadonlyPaths = nil, nil
		}
		if sc.ProcMount != nil && *sc.ProcMount == v1.UnmaskedProcMount {
			out.MaskedPaths, out.ReadonlyPaths = []string{}, []string{}
		}
		if sc.ReadOnlyRootFilesystem != nil {
			out.ReadonlyRootfs = *sc.ReadOnlyRootFilesystem
		}
		if sc.AllowPrivilegeEscalation != nil {
			out.NoNewPrivs = !*sc.AllowPrivilegeEscalation
		}
		if caps := sc.Capabilities; caps != nil {
			out.Capabilities = &runtimeapi.Capability{}
			for _, cp := range caps.Add {
				out.Capabilities.AddCapabilities = append(out.Capabilities.AddCapabilities, "CAP_"+strings.TrimPrefix(string(cp), "CAP_"))
			}
			for _, cp := range caps.Drop {
				out.Capabilities.DropCapabilities = append(out.Capabilities.DropCapabilities, "CAP_"+strings.TrimPrefix(string(cp), "CAP_"))
			}
		}
	}
	if runAsUser != nil {
		out.RunAsUser = &runtimeapi.Int64Value{Value: *runAsUser}
	}
	if runAsGroup != nil {
		out.RunAsGroup = &runtimeapi.Int64Value{Value: *runAsGroup}
	}
	if runAsNonRoot != nil && *runAsNonRoot {
		if runAsUser != nil {
			if *runAsUser == 0 {
				return nil, fmt.Errorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podDesc(pod), c.Name)
			}
		} else {
			img, err := a.images.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: imageRef}, false)
			if err != nil || img.GetImage() == nil {
				return nil, fmt.Errorf("failed to inspect image %q: %v", c.Image, err)
			}
			uid, name := img.Image.GetUid(), img.Image.Username
			switch {
			case uid != nil && uid.Value == 0, uid == nil && (name == "" || name == "root"):
				return nil, fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podDesc(pod), c.Name)
			case uid == nil:
				return nil, fmt.Errorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (pod: %q, container: %s)", name, podDesc(pod), c.Name)
			}
		}
	}
	return out, nil
}

func seccomp(p *v1.SeccompProfile) *runtimeapi.SecurityProfile {
	if p == nil {
		return nil
	}
	switch p.Type {
	case v1.SeccompProfileTypeRuntimeDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	case v1.SeccompProfileTypeLocalhost:
		if p.LocalhostProfile != nil {
			return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: *p.LocalhostProfile}
		}
	}
	return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
}

// containerEnv resolves env and envFrom: values with $(VAR) references to
// earlier variables, fieldRef, resourceFieldRef, ConfigMap and Secret keys.
// A missing ConfigMap, Secret or key that is not optional is an error
// (CreateContainerConfigError), with upstream's words.
func (a *Agent) containerEnv(ctx context.Context, pod *v1.Pod, c *v1.Container, podIPs []string) ([]*runtimeapi.KeyValue, error) {
	var out []*runtimeapi.KeyValue
	index := map[string]int{}
	set := func(k, v string) {
		if i, ok := index[k]; ok {
			out[i].Value = []byte(v)
			return
		}
		index[k] = len(out)
		out = append(out, &runtimeapi.KeyValue{Key: k, Value: []byte(v)})
	}
	configMaps := map[string]*v1.ConfigMap{}
	secrets := map[string]*v1.Secret{}
	configMap := func(name string, optional *bool) (*v1.ConfigMap, error) {
		if cm, ok := configMaps[name]; ok {
			return cm, nil
		}
		cm, err := a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if optional != nil && *optional {
				return nil, nil
			}
			return nil, fmt.Errorf("configmap %q not found", name)
		}
		configMaps[name] = cm
		return cm, nil
	}
	secret := func(name string, optional *bool) (*v1.Secret, error) {
		if s, ok := secrets[name]; ok {
			return s, nil
		}
		s, err := a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if optional != nil && *optional {
				return nil, nil
			}
			return nil, fmt.Errorf("secret %q not found", name)
		}
		secrets[name] = s
		return s, nil
	}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, err := configMap(from.ConfigMapRef.Name, from.ConfigMapRef.Optional)
			if err != nil {
				return nil, err
			}
			if cm != nil {
				for _, k := range sortedKeys(cm.Data) {
					set(from.Prefix+k, cm.Data[k])
				}
			}
		case from.SecretRef != nil:
			s, err := secret(from.SecretRef.Name, from.SecretRef.Optional)
			if err != nil {
				return nil, err
			}
			if s != nil {
				for _, k := range sortedKeys(s.Data) {
					set(from.Prefix+k, string(s.Data[k]))
				}
			}
		}
	}
	vars := map[string]string{}
	for _, e := range c.Env {
		value := e.Value
		switch src := e.ValueFrom; {
		case src == nil:
			for _, kv := range out {
				vars[kv.Key] = string(kv.Value)
			}
			value = expansion.Expand(e.Value, expansion.MappingFuncFor(vars))
		case src.FieldRef != nil:
			v, err := fieldValue(pod, src.FieldRef.FieldPath, podIPs)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			value = v
		case src.ResourceFieldRef != nil:
			v, err := a.resourceValue(pod, c, src.ResourceFieldRef)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			value = v
		case src.ConfigMapKeyRef != nil:
			ref := src.ConfigMapKeyRef
			cm, err := configMap(ref.Name, ref.Optional)
			if err != nil {
				return nil, err
			}
			if cm == nil {
				continue
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
			}
			value = v
		case src.SecretKeyRef != nil:
			ref := src.SecretKeyRef
			s, err := secret(ref.Name, ref.Optional)
			if err != nil {
				return nil, err
			}
			if s == nil {
				continue
			}
			v, ok := s.Data[ref.Key]
			if !ok {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
			}
			value = string(v)
		}
		set(e.Name, value)
	}
	return out, nil
}

// fieldValue reads a downward API field of the pod.
func fieldValue(pod *v1.Pod, path string, podIPs []string) (string, error) {
	if key, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(key, "']")], nil
	}
	if key, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(key, "']")], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return pod.Status.HostIP, nil
	case "status.podIP":
		if len(podIPs) > 0 {
			return podIPs[0], nil
		}
		return "", nil
	case "status.podIPs":
		return strings.Join(podIPs, ","), nil
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

func formatMap(m map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(m) {
		fmt.Fprintf(&b, "%s=%q\n", k, m[k])
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// resourceValue reads a container's request or limit, limits defaulting
// to the node's allocatable as upstream does, in units of the divisor
// (rounded up).
func (a *Agent) resourceValue(pod *v1.Pod, c *v1.Container, ref *v1.ResourceFieldSelector) (string, error) {
	target := c
	if ref.ContainerName != "" && ref.ContainerName != c.Name {
		target = nil
		for i := range pod.Spec.Containers {
			if pod.Spec.Containers[i].Name == ref.ContainerName {
				target = &pod.Spec.Containers[i]
			}
		}
		if target == nil {
			return "", fmt.Errorf("container %q not found", ref.ContainerName)
		}
	}
	var q resource.Quantity
	switch ref.Resource {
	case "limits.cpu":
		q = *target.Resources.Limits.Cpu()
		if q.IsZero() {
			q = *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI)
		}
	case "limits.memory":
		q = *target.Resources.Limits.Memory()
		if q.IsZero() {
			q = *resource.NewQuantity(memTotal(), resource.BinarySI)
		}
	case "limits.ephemeral-storage":
		q = *target.Resources.Limits.StorageEphemeral()
	case "requests.cpu":
		q = *target.Resources.Requests.Cpu()
	case "requests.memory":
		q = *target.Resources.Requests.Memory()
	case "requests.ephemeral-storage":
		q = *target.Resources.Requests.StorageEphemeral()
	default:
		return "", fmt.Errorf("unsupported resourceFieldRef %q", ref.Resource)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if strings.HasSuffix(ref.Resource, ".cpu") {
		return strconv.FormatInt((q.MilliValue()+divisor.MilliValue()-1)/divisor.MilliValue(), 10), nil
	}
	return strconv.FormatInt((q.Value()+divisor.Value()-1)/divisor.Value(), 10), nil
}
