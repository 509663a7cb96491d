package simulated

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Resource figures of a simulated container: small and steady, so that
// metrics pipelines and `kubectl top` see something plausible. A running
// container uses one millicore and 2 MiB of memory; its writable layer
// holds 4 KiB.
const (
	simNanoCores       = 1_000_000 // 1m CPU
	simWorkingSetBytes = 2 << 20
	simRSSBytes        = 1 << 20
	simWritableBytes   = 4 << 10
)

func (r *Runtime) containerStatsLocked(c *container, now int64) *runtimeapi.ContainerStats {
	running := c.state == runtimeapi.ContainerState_CONTAINER_RUNNING
	var cumulative, nanoCores, workingSet, rss uint64
	if c.startedAt > 0 {
		end := now
		if !running {
			end = c.finishedAt
		}
		if end > c.startedAt {
			// 1 millicore: 1 ms of CPU per second of wall time.
			cumulative = uint64(end-c.startedAt) / 1000
		}
	}
	if running {
		nanoCores, workingSet, rss = simNanoCores, simWorkingSetBytes, simRSSBytes
	}
	memory := &runtimeapi.MemoryUsage{
		Timestamp:       now,
		WorkingSetBytes: &runtimeapi.UInt64Value{Value: workingSet},
		UsageBytes:      &runtimeapi.UInt64Value{Value: workingSet},
		RssBytes:        &runtimeapi.UInt64Value{Value: rss},
		PageFaults:      &runtimeapi.UInt64Value{},
		MajorPageFaults: &runtimeapi.UInt64Value{},
	}
	if limit := c.resources.GetLinux().GetMemoryLimitInBytes(); limit > 0 && uint64(limit) > workingSet {
		memory.AvailableBytes = &runtimeapi.UInt64Value{Value: uint64(limit) - workingSet}
	}
	return &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id:          c.id,
			Metadata:    copyContainerMetadata(c.config.GetMetadata()),
			Labels:      copyMap(c.config.GetLabels()),
			Annotations: copyMap(c.config.GetAnnotations()),
		},
		Cpu: &runtimeapi.CpuUsage{
			Timestamp:            now,
			UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: cumulative},
			UsageNanoCores:       &runtimeapi.UInt64Value{Value: nanoCores},
		},
		Memory: memory,
		WritableLayer: &runtimeapi.FilesystemUsage{
			Timestamp:  now,
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: r.opts.ImageFsMountpoint},
			UsedBytes:  &runtimeapi.UInt64Value{Value: simWritableBytes},
			InodesUsed: &runtimeapi.UInt64Value{Value: 1},
		},
		Swap: &runtimeapi.SwapUsage{
			Timestamp:          now,
			SwapUsageBytes:     &runtimeapi.UInt64Value{},
			SwapAvailableBytes: &runtimeapi.UInt64Value{},
		},
		Io: &runtimeapi.IoUsage{Timestamp: now},
	}
}

// ContainerStats returns the stats of a container, running or not.
func (r *Runtime) ContainerStats(ctx context.Context, containerID string) (*runtimeapi.ContainerStats, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.containers[containerID]
	if !ok {
		return nil, r.containerNotFound(containerID)
	}
	return r.containerStatsLocked(c, r.now()), nil
}

// ListContainerStats returns the stats of the running containers that match
// the filter.
func (r *Runtime) ListContainerStats(ctx context.Context, filter *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	now := r.now()
	var out []*runtimeapi.ContainerStats
	for _, c := range r.selectContainersLocked(filter.GetId(), filter.GetPodSandboxId(), filter.GetLabelSelector()) {
		if c.state == runtimeapi.ContainerState_CONTAINER_RUNNING {
			out = append(out, r.containerStatsLocked(c, now))
		}
	}
	return out, nil
}

func (r *Runtime) sandboxStatsLocked(sb *sandbox, now int64) *runtimeapi.PodSandboxStats {
	linux := &runtimeapi.LinuxPodSandboxStats{
		Cpu:     &runtimeapi.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{}, UsageNanoCores: &runtimeapi.UInt64Value{}},
		Memory:  &runtimeapi.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtimeapi.UInt64Value{}, UsageBytes: &runtimeapi.UInt64Value{}, RssBytes: &runtimeapi.UInt64Value{}},
		Process: &runtimeapi.ProcessUsage{Timestamp: now, ProcessCount: &runtimeapi.UInt64Value{}},
	}
	if !sb.hostNetwork {
		linux.Network = &runtimeapi.NetworkUsage{
			Timestamp: now,
			DefaultInterface: &runtimeapi.NetworkInterfaceUsage{
				Name:     "eth0",
				RxBytes:  &runtimeapi.UInt64Value{},
				RxErrors: &runtimeapi.UInt64Value{},
				TxBytes:  &runtimeapi.UInt64Value{},
				TxErrors: &runtimeapi.UInt64Value{},
			},
		}
	}
	cs := make([]*container, 0, len(sb.containers))
	for _, c := range sb.containers {
		cs = append(cs, c)
	}
	bySeq(cs)
	for _, c := range cs {
		st := r.containerStatsLocked(c, now)
		if c.state == runtimeapi.ContainerState_CONTAINER_RUNNING {
			linux.Containers = append(linux.Containers, st)
			linux.Process.ProcessCount.Value++
		}
		linux.Cpu.UsageCoreNanoSeconds.Value += st.Cpu.UsageCoreNanoSeconds.Value
		linux.Cpu.UsageNanoCores.Value += st.Cpu.UsageNanoCores.Value
		linux.Memory.WorkingSetBytes.Value += st.Memory.WorkingSetBytes.Value
		linux.Memory.UsageBytes.Value += st.Memory.UsageBytes.Value
		linux.Memory.RssBytes.Value += st.Memory.RssBytes.Value
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id:          sb.id,
			Metadata:    copySandboxMetadata(sb.config.GetMetadata()),
			Labels:      copyMap(sb.config.GetLabels()),
			Annotations: copyMap(sb.config.GetAnnotations()),
		},
		Linux: linux,
	}
}

// PodSandboxStats returns the stats of a sandbox: the sums of its
// containers' figures, with its running containers' stats.
func (r *Runtime) PodSandboxStats(ctx context.Context, podSandboxID string) (*runtimeapi.PodSandboxStats, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	sb, ok := r.sandboxes[podSandboxID]
	if !ok {
		return nil, r.sandboxNotFound(podSandboxID)
	}
	return r.sandboxStatsLocked(sb, r.now()), nil
}

// ListPodSandboxStats returns the stats of the ready sandboxes that match
// the filter.
func (r *Runtime) ListPodSandboxStats(ctx context.Context, filter *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	now := r.now()
	var sbs []*sandbox
	for _, sb := range r.sandboxes {
		if id := filter.GetId(); id != "" && sb.id != id {
			continue
		}
		if sb.state != runtimeapi.PodSandboxState_SANDBOX_READY || !matchLabels(filter.GetLabelSelector(), sb.config.GetLabels()) {
			continue
		}
		sbs = append(sbs, sb)
	}
	bySeq(sbs)
	out := make([]*runtimeapi.PodSandboxStats, len(sbs))
	for i, sb := range sbs {
		out[i] = r.sandboxStatsLocked(sb, now)
	}
	return out, nil
}

// ListMetricDescriptors returns no descriptors: the simulated runtime has no
// metrics of its own beyond the stats.
func (r *Runtime) ListMetricDescriptors(ctx context.Context) ([]*runtimeapi.MetricDescriptor, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	return []*runtimeapi.MetricDescriptor{}, nil
}

// ListPodSandboxMetrics returns no metrics (see ListMetricDescriptors).
func (r *Runtime) ListPodSandboxMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	if err := r.enter(ctx); err != nil {
		return nil, err
	}
	return []*runtimeapi.PodSandboxMetrics{}, nil
}
