package images

import (
	"encoding/binary"
	"fmt"
	"io"
	"runtime"

	"github.com/gatehouse-dev/gatehouse/internal/imagearchive"
)

// PauseVersion is bumped whenever the pause program or its image changes,
// so that a node never keeps an old image under the same name.
const PauseVersion = "1"

// PauseImage is the pod sandbox image containerd is configured with.
const PauseImage = "gatehouse.dev/pause:" + PauseVersion

// The program is the whole ELF file: a 64-byte header, two program headers
// (the loadable segment and PT_GNU_STACK, asking for a non-executable
// stack), then the code. It is mapped at elfBase; the entry point is the
// first instruction.
const (
	elfBase       = 0x400000
	elfHeaderSize = 64
	progHdrSize   = 56
	codeOffset    = elfHeaderSize + 2*progHdrSize
)

// pauseCode holds, per GOARCH, the ELF machine number and the machine code
// of an endless loop around a syscall that sleeps until a signal arrives.
//
// Upstream's pause also handles SIGINT/SIGTERM and reaps zombies. Neither
// is needed here: as PID 1 of the sandbox's PID namespace, signals without
// a handler are ignored except SIGKILL, which is what containerd sends to
// stop a sandbox; and no process is ever started in the sandbox container
// itself (app containers get their own PID namespace unless the pod shares
// one, which the node agent does not ask for yet), so it has no children to
// reap.
var pauseCode = map[string]struct {
	machine uint16
	code    []byte
}{
	"amd64": {
		machine: 62, // EM_X86_64
		code: []byte{
			0xb8, 0x22, 0x00, 0x00, 0x00, // loop: mov eax, 34 (pause)
			0x0f, 0x05, //                        syscall
			0xeb, 0xf7, //                        jmp loop
		},
	},
	"arm64": {
		machine: 183, // EM_AARCH64
		// arm64 has no pause syscall: ppoll(NULL, 0, NULL, NULL) blocks
		// the same way, until a signal.
		code: le32(
			0xd2800000, // loop: mov x0, #0
			0xd2800001, //       mov x1, #0
			0xd2800002, //       mov x2, #0
			0xd2800003, //       mov x3, #0
			0xd2800928, //       mov x8, #73 (ppoll)
			0xd4000001, //       svc #0
			0x17fffffa, //       b loop
		),
	},
}

func le32(words ...uint32) []byte {
	var b []byte
	for _, w := range words {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return b
}

// PauseELF returns the pause program for arch (a GOARCH: amd64 or arm64),
// a static ELF executable of under 200 bytes.
func PauseELF(arch string) ([]byte, error) {
	pc, ok := pauseCode[arch]
	if !ok {
		return nil, fmt.Errorf("no pause program for architecture %q: Gatehouse builds it for amd64 and arm64 only", arch)
	}
	size := uint64(codeOffset + len(pc.code))
	le := binary.LittleEndian
	b := make([]byte, 0, size)
	// ELF header.
	b = append(b, 0x7f, 'E', 'L', 'F',
		2,                      // ELFCLASS64
		1,                      // little endian
		1,                      // EV_CURRENT
		0,                      // System V ABI
		0, 0, 0, 0, 0, 0, 0, 0) // ABI version and padding
	b = le.AppendUint16(b, 2) // ET_EXEC
	b = le.AppendUint16(b, pc.machine)
	b = le.AppendUint32(b, 1) // EV_CURRENT
	b = le.AppendUint64(b, elfBase+codeOffset)
	b = le.AppendUint64(b, elfHeaderSize) // program headers right after
	b = le.AppendUint64(b, 0)             // no section headers
	b = le.AppendUint32(b, 0)             // flags
	b = le.AppendUint16(b, elfHeaderSize)
	b = le.AppendUint16(b, progHdrSize)
	b = le.AppendUint16(b, 2) // program header count
	b = le.AppendUint16(b, 0) // section header size, count, names index
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	// PT_LOAD: the whole file, readable and executable.
	b = le.AppendUint32(b, 1)
	b = le.AppendUint32(b, 5) // PF_R|PF_X
	b = le.AppendUint64(b, 0)
	b = le.AppendUint64(b, elfBase)
	b = le.AppendUint64(b, elfBase)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, 0x10000) // 64 KiB: valid for every page size
	// PT_GNU_STACK: read-write, not executable.
	b = le.AppendUint32(b, 0x6474e551)
	b = le.AppendUint32(b, 6) // PF_R|PF_W
	for range 5 {
		b = le.AppendUint64(b, 0)
	}
	b = le.AppendUint64(b, 16)
	return append(b, pc.code...), nil
}

// PauseArchive writes the pause image for arch as an OCI image layout tar:
// one layer holding /pause, Entrypoint ["/pause"], named PauseImage.
func PauseArchive(w io.Writer, arch string) (*imagearchive.Blobs, error) {
	elf, err := PauseELF(arch)
	if err != nil {
		return nil, err
	}
	return imagearchive.WriteOCI(w, imagearchive.Image{
		Name:         PauseImage,
		Architecture: arch,
		Files:        []imagearchive.File{{Path: "pause", Mode: 0o755, Data: elf}},
		Entrypoint:   []string{"/pause"},
	})
}

// hostArch is the architecture the pause image is built for: the node's,
// which is Gatehouse's own.
var hostArch = runtime.GOARCH
