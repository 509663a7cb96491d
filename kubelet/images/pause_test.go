package images

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestPauseELFParses(t *testing.T) {
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		t.Run(arch, func(t *testing.T) {
			data, err := PauseELF(arch)
			if err != nil {
				t.Fatal(err)
			}
			f, err := elf.NewFile(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("not a valid ELF file: %v", err)
			}
			if f.Machine != machine || f.Type != elf.ET_EXEC || f.Class != elf.ELFCLASS64 {
				t.Errorf("machine %v type %v class %v", f.Machine, f.Type, f.Class)
			}
			if want := uint64(elfBase + codeOffset); f.Entry != want {
				t.Errorf("entry = %#x, want %#x", f.Entry, want)
			}
			load := f.Progs[0]
			if load.Type != elf.PT_LOAD || load.Filesz != uint64(len(data)) || load.Flags != elf.PF_R|elf.PF_X {
				t.Errorf("PT_LOAD = %+v, file is %d bytes", load.ProgHeader, len(data))
			}
			if f.Progs[1].Type != elf.PT_GNU_STACK || f.Progs[1].Flags&elf.PF_X != 0 {
				t.Errorf("second program header = %+v, want a non-executable PT_GNU_STACK", f.Progs[1].ProgHeader)
			}
		})
	}
	if _, err := PauseELF("riscv64"); err == nil {
		t.Error("PauseELF(riscv64) gave no error")
	}
}

// TestPauseRuns executes the program on this host: it must stay alive
// (sleeping, not spinning) and die on SIGKILL.
func TestPauseRuns(t *testing.T) {
	data, err := PauseELF(runtime.GOARCH)
	if err != nil {
		t.Skipf("no pause program for this host: %v", err)
	}
	path := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	if err := cmd.Start(); err != nil {
		t.Fatalf("exec %s: %v", path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("pause exited on its own: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	// Sleeping in the syscall, it uses next to no CPU.
	if cpu := processCPU(t, cmd.Process.Pid); cpu > 50*time.Millisecond {
		t.Errorf("pause used %v of CPU in 300 ms: it spins instead of sleeping", cpu)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("pause ended with %v, want killed by SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pause still running 5 s after SIGKILL")
	}
}

// processCPU reads user+system time of pid from /proc/<pid>/stat.
func processCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	rest := data[bytes.LastIndexByte(data, ')')+2:]
	fields := bytes.Fields(rest)
	var utime, stime int64
	for i, p := range map[int]*int64{11: &utime, 12: &stime} {
		for _, c := range fields[i] {
			*p = *p*10 + int64(c-'0')
		}
	}
	// USER_HZ is 100 on Linux.
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
