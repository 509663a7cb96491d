package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// hostMemory is the node's memory as upstream reports it from the root
// cgroup: usage, working set (usage less inactive file pages, which the
// kernel reclaims first), RSS and page faults.
type hostMemory struct {
	total, usage, workingSet, rss, pageFaults, majorPageFaults uint64
}

// host reads the node's figures under root ("/" but for tests): the root
// cgroup's, as cadvisor reads them for the kubelet, with /proc where the
// root cgroup does not have them (cgroup v2 has no memory.current at the
// root, a v1 host may not mount cpuacct).
type host struct{ root string }

func (h host) path(p string) string { return filepath.Join(h.root, p) }

func (h host) readUint(p string) (uint64, error) {
	data, err := os.ReadFile(h.path(p))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}

// keyed reads "key value" lines (memory.stat, cpu.stat, /proc/meminfo's
// "Key: value kB").
func (h host) keyed(p string) (map[string]uint64, error) {
	data, err := os.ReadFile(h.path(p))
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		if len(f) == 3 && f[2] == "kB" {
			v *= 1024
		}
		out[strings.TrimSuffix(f[0], ":")] = v
	}
	return out, sc.Err()
}

// cpuUsage is the cumulative CPU time of the host in nanoseconds.
func (h host) cpuUsage() (uint64, error) {
	for _, p := range []string{"sys/fs/cgroup/cpuacct/cpuacct.usage", "sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"} {
		if v, err := h.readUint(p); err == nil {
			return v, nil
		}
	}
	if st, err := h.keyed("sys/fs/cgroup/cpu.stat"); err == nil {
		if v, ok := st["usage_usec"]; ok {
			return v * 1000, nil
		}
	}
	return h.procCPU()
}

// procCPU sums the busy columns of /proc/stat's cpu line (user, nice,
// system, irq, softirq, steal), in USER_HZ ticks of 10 ms on Linux.
func (h host) procCPU() (uint64, error) {
	data, err := os.ReadFile(h.path("proc/stat"))
	if err != nil {
		return 0, fmt.Errorf("host CPU usage: %w", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "cpu" {
			continue
		}
		var ticks uint64
		for _, i := range []int{1, 2, 3, 6, 7, 8} {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("host CPU usage: /proc/stat: %w", err)
			}
			ticks += v
		}
		return ticks * uint64(10*time.Millisecond), nil
	}
	return 0, fmt.Errorf("host CPU usage: no cpu line in /proc/stat")
}

func (h host) memory() (hostMemory, error) {
	var m hostMemory
	info, err := h.keyed("proc/meminfo")
	if err != nil {
		return m, fmt.Errorf("host memory: %w", err)
	}
	m.total = info["MemTotal"]
	if usage, err := h.readUint("sys/fs/cgroup/memory/memory.usage_in_bytes"); err == nil {
		st, err := h.keyed("sys/fs/cgroup/memory/memory.stat")
		if err != nil {
			return m, fmt.Errorf("host memory: %w", err)
		}
		m.usage, m.rss = usage, st["total_rss"]
		m.pageFaults, m.majorPageFaults = st["total_pgfault"], st["total_pgmajfault"]
		m.workingSet = sub(usage, st["total_inactive_file"])
		return m, nil
	}
	// cgroup v2 (no memory.current at the root) or no memory cgroup: what
	// cadvisor's machine figures give, from /proc/meminfo.
	m.usage = sub(m.total, info["MemFree"])
	m.workingSet = sub(m.usage, info["Inactive(file)"])
	m.rss = info["AnonPages"]
	if st, err := h.keyed("sys/fs/cgroup/memory.stat"); err == nil {
		m.pageFaults, m.majorPageFaults = st["pgfault"], st["pgmajfault"]
	}
	return m, nil
}

// bootTime is when the host started, from /proc/stat's btime.
func (h host) bootTime() time.Time {
	st, err := h.keyed("proc/stat")
	if err != nil || st["btime"] == 0 {
		return time.Time{}
	}
	return time.Unix(int64(st["btime"]), 0)
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}
