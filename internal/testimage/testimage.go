package testimage

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/imagearchive"
)

// BusyboxPath is the static busybox the image is built from.
var BusyboxPath = "/bin/busybox"

// Image returns the busybox image named name (e.g.
// "gatehouse.test/busybox:1") for this host's architecture.
func Image(name string) (imagearchive.Image, error) {
	files, err := Files()
	if err != nil {
		return imagearchive.Image{}, err
	}
	return imagearchive.Image{
		Name:         name,
		Architecture: runtime.GOARCH,
		Files:        files,
		Cmd:          []string{"sh"},
		Env:          []string{"PATH=/bin"},
	}, nil
}

// Files returns the image's files: busybox, its applet links, /etc and /tmp.
func Files() ([]imagearchive.File, error) {
	const hint = "install Debian's busybox-static (hack/install-test-deps.sh does)"
	data, err := os.ReadFile(BusyboxPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no %s: %s", BusyboxPath, hint)
	}
	if err != nil {
		return nil, err
	}
	if err := checkStatic(data); err != nil {
		return nil, fmt.Errorf("%s: %w; %s", BusyboxPath, err, hint)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", BusyboxPath, err)
	}
	files := []imagearchive.File{
		{Path: "bin/busybox", Mode: 0o755, Data: data},
		{Path: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Path: "etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Path: "root", Mode: fs.ModeDir | 0o700},
		{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		files = append(files, imagearchive.File{Path: "bin/" + applet, Mode: fs.ModeSymlink, Linkname: "busybox"})
	}
	return files, nil
}

// checkStatic refuses a dynamically linked busybox (Debian's "busybox"
// package rather than "busybox-static"): it would not run in an image
// without its libraries.
func checkStatic(data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("busybox is dynamically linked")
		}
	}
	return nil
}

// WriteOCI writes the busybox image named name as an OCI image layout tar.
func WriteOCI(w io.Writer, name string) (*imagearchive.Blobs, error) {
	img, err := Image(name)
	if err != nil {
		return nil, err
	}
	return imagearchive.WriteOCI(w, img)
}

// WriteDocker writes the busybox image named name as a docker-archive.
func WriteDocker(w io.Writer, name string) (*imagearchive.Blobs, error) {
	img, err := Image(name)
	if err != nil {
		return nil, err
	}
	return imagearchive.WriteDocker(w, img)
}
