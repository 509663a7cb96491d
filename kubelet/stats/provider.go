package stats

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// Options configure a Provider.
type Options struct {
	NodeName string
	Runtime  internalapi.RuntimeService
	// Images, when set, gives the image filesystem's figures.
	Images internalapi.ImageManagerService
	// FsPath is on the node's filesystem for pods (the agent's data dir).
	FsPath string
	// HostRoot is where the host's /proc and /sys are; empty means "/".
	HostRoot string
	Logger   *slog.Logger
}

// Provider builds stats summaries. It is safe for concurrent use.
type Provider struct {
	opts Options
	host host

	mu sync.Mutex
	// cpu is the last cumulative CPU sample per container, sandbox or
	// "node", to compute usageNanoCores where the source gives none.
	cpu map[string]cpuSample
}

type cpuSample struct {
	at    int64 // Unix ns
	usage uint64
}

// nodeKey keys the node's CPU sample among containers' and sandboxes'.
const nodeKey = "\x00node"

// New returns a Provider.
func New(opts Options) *Provider {
	if opts.HostRoot == "" {
		opts.HostRoot = "/"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Provider{opts: opts, host: host{opts.HostRoot}, cpu: map[string]cpuSample{}}
}

// Get is the full summary: node, its filesystems and every running pod
// with its containers (upstream's SummaryProvider).
func (p *Provider) Get(ctx context.Context, _ bool) (*statsapi.Summary, error) {
	return p.summary(ctx, false)
}

// GetCPUAndMemoryStats is the summary with CPU and memory figures only,
// what /metrics/resource and ?only_cpu_and_memory=true give.
func (p *Provider) GetCPUAndMemoryStats(ctx context.Context) (*statsapi.Summary, error) {
	return p.summary(ctx, true)
}

func (p *Provider) summary(ctx context.Context, cpuAndMemoryOnly bool) (*statsapi.Summary, error) {
	node, err := p.nodeStats(ctx, cpuAndMemoryOnly)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{nodeKey: true}
	pods, err := p.podStats(ctx, cpuAndMemoryOnly, seen)
	if err != nil {
		return nil, err
	}
	p.forget(seen)
	return &statsapi.Summary{Node: node, Pods: pods}, nil
}

func (p *Provider) nodeStats(ctx context.Context, cpuAndMemoryOnly bool) (statsapi.NodeStats, error) {
	now := time.Now()
	ns := statsapi.NodeStats{NodeName: p.opts.NodeName, StartTime: metav1.NewTime(p.host.bootTime())}
	usage, err := p.host.cpuUsage()
	if err != nil {
		return ns, err
	}
	ns.CPU = &statsapi.CPUStats{Time: metav1.NewTime(now), UsageCoreNanoSeconds: ptr(usage), UsageNanoCores: p.rate(nodeKey, now.UnixNano(), usage)}
	mem, err := p.host.memory()
	if err != nil {
		return ns, err
	}
	ns.Memory = &statsapi.MemoryStats{
		Time: metav1.NewTime(now), UsageBytes: ptr(mem.usage), WorkingSetBytes: ptr(mem.workingSet), RSSBytes: ptr(mem.rss),
		PageFaults: ptr(mem.pageFaults), MajorPageFaults: ptr(mem.majorPageFaults),
	}
	if mem.total > 0 {
		// Upstream: capacity less working set.
		ns.Memory.AvailableBytes = ptr(sub(mem.total, mem.workingSet))
	}
	if cpuAndMemoryOnly {
		return ns, nil
	}
	if p.opts.FsPath != "" {
		ns.Fs = statfs(p.opts.FsPath, now)
	}
	if p.opts.Images != nil {
		fs, err := p.opts.Images.ImageFsInfo(ctx)
		if err == nil && len(fs.GetImageFilesystems()) > 0 {
			ns.Runtime = &statsapi.RuntimeStats{ImageFs: imageFs(fs.ImageFilesystems[0])}
			if len(fs.GetContainerFilesystems()) > 0 {
				ns.Runtime.ContainerFs = imageFs(fs.ContainerFilesystems[0])
			} else {
				ns.Runtime.ContainerFs = ns.Runtime.ImageFs
			}
		} else if err != nil {
			p.opts.Logger.Debug("image filesystem stats", "err", err)
		}
	}
	return ns, nil
}

// podStats covers the ready sandboxes, the newest per pod, with their
// running containers, as upstream's CRI stats provider does.
func (p *Provider) podStats(ctx context.Context, cpuAndMemoryOnly bool, seen map[string]bool) ([]statsapi.PodStats, error) {
	sandboxes, err := p.opts.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}})
	if err != nil {
		return nil, fmt.Errorf("listing pod sandboxes: %w", err)
	}
	newest := map[string]*runtimeapi.PodSandbox{}
	for _, sb := range sandboxes {
		uid := sb.GetMetadata().GetUid()
		if cur, ok := newest[uid]; !ok || sb.CreatedAt > cur.CreatedAt {
			newest[uid] = sb
		}
	}
	containers, err := p.opts.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	created, sandboxOf := map[string]int64{}, map[string]string{}
	for _, c := range containers {
		created[c.Id], sandboxOf[c.Id] = c.CreatedAt, c.PodSandboxId
	}
	cstats, err := p.opts.Runtime.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{})
	if err != nil {
		return nil, fmt.Errorf("listing container stats: %w", err)
	}
	bySandbox := map[string][]*runtimeapi.ContainerStats{}
	for _, cs := range cstats {
		id := cs.GetAttributes().GetId()
		if sb, ok := sandboxOf[id]; ok { // else not running any more
			bySandbox[sb] = append(bySandbox[sb], cs)
			seen[id] = true
		}
	}
	// Sandbox figures where the runtime has them (pod cgroup, network);
	// else the pod's CPU and memory are its containers' sums.
	sbStats := map[string]*runtimeapi.PodSandboxStats{}
	if list, err := p.opts.Runtime.ListPodSandboxStats(ctx, &runtimeapi.PodSandboxStatsFilter{}); err == nil {
		for _, s := range list {
			sbStats[s.GetAttributes().GetId()] = s
		}
	}

	out := make([]statsapi.PodStats, 0, len(newest))
	for _, sb := range newest {
		seen[sb.Id] = true
		md := sb.GetMetadata()
		ps := statsapi.PodStats{
			PodRef:    statsapi.PodReference{Name: md.GetName(), Namespace: md.GetNamespace(), UID: md.GetUid()},
			StartTime: metav1.NewTime(time.Unix(0, sb.CreatedAt)),
		}
		var cpuSum, memSum, wsSum, rssSum uint64
		var nanoSum *uint64
		var at int64
		for _, cs := range bySandbox[sb.Id] {
			c := p.containerStats(cs, created[cs.GetAttributes().GetId()], cpuAndMemoryOnly)
			ps.Containers = append(ps.Containers, c)
			cpuSum += val(c.CPU.UsageCoreNanoSeconds)
			if c.CPU.UsageNanoCores != nil {
				nanoSum = ptr(val(nanoSum) + *c.CPU.UsageNanoCores)
			}
			memSum += val(c.Memory.UsageBytes)
			wsSum += val(c.Memory.WorkingSetBytes)
			rssSum += val(c.Memory.RSSBytes)
			at = max(at, c.CPU.Time.UnixNano())
		}
		if at == 0 {
			at = time.Now().UnixNano()
		}
		ps.CPU = &statsapi.CPUStats{Time: metav1.NewTime(time.Unix(0, at)), UsageCoreNanoSeconds: ptr(cpuSum), UsageNanoCores: nanoSum}
		ps.Memory = &statsapi.MemoryStats{Time: metav1.NewTime(time.Unix(0, at)), UsageBytes: ptr(memSum), WorkingSetBytes: ptr(wsSum), RSSBytes: ptr(rssSum)}
		if s := sbStats[sb.Id].GetLinux(); s != nil {
			if cpu := s.GetCpu(); cpu.GetUsageCoreNanoSeconds() != nil {
				ps.CPU = p.cpuStats(sb.Id, cpu)
			}
			if mem := s.GetMemory(); mem.GetWorkingSetBytes() != nil {
				ps.Memory = memoryStats(mem)
			}
			if !cpuAndMemoryOnly {
				ps.Network = networkStats(s.GetNetwork())
				if n := s.GetProcess().GetProcessCount(); n != nil {
					ps.ProcessStats = &statsapi.ProcessStats{ProcessCount: ptr(n.Value)}
				}
			}
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b statsapi.PodStats) int {
		return cmp.Or(cmp.Compare(a.PodRef.Namespace, b.PodRef.Namespace), cmp.Compare(a.PodRef.Name, b.PodRef.Name))
	})
	return out, nil
}

func (p *Provider) containerStats(cs *runtimeapi.ContainerStats, createdAt int64, cpuAndMemoryOnly bool) statsapi.ContainerStats {
	now := time.Now()
	c := statsapi.ContainerStats{
		Name: cs.GetAttributes().GetMetadata().GetName(),
		// Upstream's summary gives a container's creation time.
		StartTime: metav1.NewTime(time.Unix(0, createdAt)),
	}
	if cpu := cs.GetCpu(); cpu != nil {
		c.CPU = p.cpuStats(cs.GetAttributes().GetId(), cpu)
	} else {
		c.CPU = &statsapi.CPUStats{Time: metav1.NewTime(now), UsageCoreNanoSeconds: ptr(0), UsageNanoCores: ptr(0)}
	}
	if mem := cs.GetMemory(); mem != nil {
		c.Memory = memoryStats(mem)
	} else {
		c.Memory = &statsapi.MemoryStats{Time: metav1.NewTime(now), WorkingSetBytes: ptr(0)}
	}
	if cpuAndMemoryOnly {
		return c
	}
	if wl := cs.GetWritableLayer(); wl != nil {
		c.Rootfs = &statsapi.FsStats{Time: metav1.NewTime(time.Unix(0, wl.Timestamp))}
		if wl.UsedBytes != nil {
			c.Rootfs.UsedBytes = ptr(wl.UsedBytes.Value)
		}
		if wl.InodesUsed != nil {
			c.Rootfs.InodesUsed = ptr(wl.InodesUsed.Value)
		}
	}
	if sw := cs.GetSwap(); sw != nil {
		c.Swap = &statsapi.SwapStats{Time: metav1.NewTime(time.Unix(0, sw.Timestamp))}
		if sw.SwapUsageBytes != nil {
			c.Swap.SwapUsageBytes = ptr(sw.SwapUsageBytes.Value)
		}
		if sw.SwapAvailableBytes != nil {
			c.Swap.SwapAvailableBytes = ptr(sw.SwapAvailableBytes.Value)
		}
	}
	return c
}

// cpuStats converts CRI CPU figures, with usageNanoCores from the
// previous sample when the runtime gives none.
func (p *Provider) cpuStats(id string, cpu *runtimeapi.CpuUsage) *statsapi.CPUStats {
	out := &statsapi.CPUStats{Time: metav1.NewTime(time.Unix(0, cpu.Timestamp))}
	if u := cpu.GetUsageCoreNanoSeconds(); u != nil {
		out.UsageCoreNanoSeconds = ptr(u.Value)
		out.UsageNanoCores = p.rate(id, cpu.Timestamp, u.Value)
	}
	if n := cpu.GetUsageNanoCores(); n != nil {
		out.UsageNanoCores = ptr(n.Value)
	}
	return out
}

// rate records the sample and returns the CPU rate in nanocores since the
// previous one, or nil without a usable previous sample.
func (p *Provider) rate(key string, at int64, usage uint64) *uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev, ok := p.cpu[key]
	if ok && at == prev.at {
		return nil // the same sample again: keep the older one
	}
	p.cpu[key] = cpuSample{at: at, usage: usage}
	if !ok || at < prev.at || usage < prev.usage {
		return nil
	}
	return ptr(uint64(float64(usage-prev.usage) / float64(at-prev.at) * float64(time.Second)))
}

// forget drops the CPU samples of containers and sandboxes that are gone.
func (p *Provider) forget(seen map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key := range p.cpu {
		if !seen[key] {
			delete(p.cpu, key)
		}
	}
}

func memoryStats(mem *runtimeapi.MemoryUsage) *statsapi.MemoryStats {
	return &statsapi.MemoryStats{
		Time:           metav1.NewTime(time.Unix(0, mem.Timestamp)),
		AvailableBytes: opt(mem.AvailableBytes), UsageBytes: opt(mem.UsageBytes), WorkingSetBytes: opt(mem.WorkingSetBytes),
		RSSBytes: opt(mem.RssBytes), PageFaults: opt(mem.PageFaults), MajorPageFaults: opt(mem.MajorPageFaults),
	}
}

func networkStats(n *runtimeapi.NetworkUsage) *statsapi.NetworkStats {
	if n == nil || n.DefaultInterface == nil {
		return nil
	}
	conv := func(i *runtimeapi.NetworkInterfaceUsage) statsapi.InterfaceStats {
		return statsapi.InterfaceStats{Name: i.Name, RxBytes: opt(i.RxBytes), RxErrors: opt(i.RxErrors), TxBytes: opt(i.TxBytes), TxErrors: opt(i.TxErrors)}
	}
	out := &statsapi.NetworkStats{Time: metav1.NewTime(time.Unix(0, n.Timestamp)), InterfaceStats: conv(n.DefaultInterface)}
	for _, i := range n.Interfaces {
		out.Interfaces = append(out.Interfaces, conv(i))
	}
	return out
}

func imageFs(fs *runtimeapi.FilesystemUsage) *statsapi.FsStats {
	out := statfs(fs.GetFsId().GetMountpoint(), time.Unix(0, fs.Timestamp))
	if out == nil {
		out = &statsapi.FsStats{Time: metav1.NewTime(time.Unix(0, fs.Timestamp))}
	}
	out.UsedBytes, out.InodesUsed = opt(fs.UsedBytes), opt(fs.InodesUsed)
	return out
}

// statfs gives a filesystem's capacity, free space and inodes; nil when
// the path cannot be read.
func statfs(path string, at time.Time) *statsapi.FsStats {
	var st unix.Statfs_t
	if path == "" || unix.Statfs(path, &st) != nil {
		return nil
	}
	bs := uint64(st.Bsize)
	return &statsapi.FsStats{
		Time:           metav1.NewTime(at),
		CapacityBytes:  ptr(st.Blocks * bs),
		AvailableBytes: ptr(st.Bavail * bs),
		UsedBytes:      ptr((st.Blocks - st.Bfree) * bs),
		Inodes:         ptr(st.Files),
		InodesFree:     ptr(st.Ffree),
		InodesUsed:     ptr(st.Files - st.Ffree),
	}
}

func ptr(v uint64) *uint64 { return &v }

func val(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

func opt(v *runtimeapi.UInt64Value) *uint64 {
	if v == nil {
		return nil
	}
	return ptr(v.Value)
}
