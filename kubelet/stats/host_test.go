package stats

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const meminfo = "MemTotal:       1000 kB\nMemFree:         400 kB\nInactive(file):   100 kB\nAnonPages:       200 kB\n"

func TestHostFigures(t *testing.T) {
	tests := []struct {
		name       string
		files      map[string]string
		cpu        uint64
		usage, ws  uint64
		rss, total uint64
	}{
		{
			name: "cgroup v1 root",
			files: map[string]string{
				"sys/fs/cgroup/cpuacct/cpuacct.usage":        "123456789\n",
				"sys/fs/cgroup/memory/memory.usage_in_bytes": "5000\n",
				"sys/fs/cgroup/memory/memory.stat":           "inactive_file 1\ntotal_inactive_file 1500\ntotal_rss 700\ntotal_pgfault 9\n",
				"proc/meminfo":                               meminfo,
				"proc/stat":                                  "cpu 1 2 3 4 5 6 7 8 9 10\nbtime 1700000000\n",
			},
			cpu: 123456789, usage: 5000, ws: 3500, rss: 700, total: 1000 * 1024,
		},
		{
			name: "cgroup v2 root: cpu.stat, memory from /proc/meminfo",
			files: map[string]string{
				"sys/fs/cgroup/cpu.stat": "usage_usec 2000\nuser_usec 1500\n",
				"proc/meminfo":           meminfo,
			},
			cpu: 2_000_000, usage: 600 * 1024, ws: 500 * 1024, rss: 200 * 1024, total: 1000 * 1024,
		},
		{
			name: "no cgroup: /proc/stat busy ticks",
			files: map[string]string{
				// user nice system idle iowait irq softirq steal
				"proc/stat":    "cpu  10 20 30 1000 50 1 2 3 0 0\ncpu0 10 20 30 1000 50 1 2 3 0 0\n",
				"proc/meminfo": meminfo,
			},
			cpu: 66 * uint64(10*time.Millisecond), usage: 600 * 1024, ws: 500 * 1024, rss: 200 * 1024, total: 1000 * 1024,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := host{writeTree(t, tt.files)}
			cpu, err := h.cpuUsage()
			if err != nil || cpu != tt.cpu {
				t.Errorf("cpuUsage = %d, %v; want %d", cpu, err, tt.cpu)
			}
			m, err := h.memory()
			if err != nil {
				t.Fatal(err)
			}
			if m.usage != tt.usage || m.workingSet != tt.ws || m.rss != tt.rss || m.total != tt.total {
				t.Errorf("memory = %+v; want usage %d, working set %d, rss %d, total %d", m, tt.usage, tt.ws, tt.rss, tt.total)
			}
		})
	}
}

func TestHostFiguresMissing(t *testing.T) {
	h := host{t.TempDir()}
	if _, err := h.cpuUsage(); err == nil {
		t.Error("cpuUsage without any source: no error")
	}
	if _, err := h.memory(); err == nil {
		t.Error("memory without /proc/meminfo: no error")
	}
	if !h.bootTime().IsZero() {
		t.Error("bootTime without /proc/stat is not zero")
	}
}
