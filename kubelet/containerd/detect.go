package containerd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// InstallHint is how to get what Gatehouse needs to run real containers on
// Debian and Ubuntu.
const InstallHint = "apt-get install containerd runc containernetworking-plugins"

// cniBinDirs are where distributions put the CNI plugins: Debian's
// containernetworking-plugins, then the upstream tarball's place.
var cniBinDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// Found is where the binaries a real node needs are.
type Found struct {
	Containerd string
	// Shim is containerd-shim-runc-v2, which containerd looks up in PATH.
	Shim      string
	Runc      string
	CNIBinDir string
}

// MissingError says, in one line, what is missing and how to get it; the
// caller falls back to the simulated runtime and prints it.
type MissingError struct{ What string }

func (e *MissingError) Error() string {
	return e.What + "; to run real containers: " + InstallHint
}

// Detect finds containerd, its runc shim, runc and the CNI plugins in PATH
// and the usual places. The error, a *MissingError, names the first thing
// missing.
func Detect() (Found, error) {
	f := find("")
	return f, f.check()
}

// find fills in what it finds; containerd is looked up unless given.
func find(containerd string) Found {
	f := Found{Containerd: containerd}
	if f.Containerd == "" {
		f.Containerd, _ = lookPath("containerd")
	}
	// containerd finds the shim in PATH or next to itself.
	if p, err := lookPath("containerd-shim-runc-v2"); err == nil {
		f.Shim = p
	} else if f.Containerd != "" {
		next := filepath.Join(filepath.Dir(f.Containerd), "containerd-shim-runc-v2")
		if _, err := os.Stat(next); err == nil {
			f.Shim = next
		}
	}
	f.Runc, _ = lookPath("runc")
	f.CNIBinDir, _ = detectCNIBinDir()
	return f
}

// check returns a *MissingError for the first thing not found.
func (f Found) check() error {
	switch {
	case f.Containerd == "":
		return &MissingError{"no containerd binary in PATH"}
	case f.Shim == "":
		return &MissingError{"containerd is at " + f.Containerd + " but containerd-shim-runc-v2 is not in PATH"}
	case f.Runc == "":
		return &MissingError{"containerd is at " + f.Containerd + " but runc is not in PATH"}
	case f.CNIBinDir == "":
		return &MissingError{"no CNI plugins (" + strings.Join(cniPlugins, ", ") + ") in " + strings.Join(cniBinDirs, " or ")}
	}
	return nil
}

// lookPath is exec.LookPath that also searches the sbin directories, which
// a non-login root shell's PATH may lack (Debian installs runc in
// /usr/sbin).
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// detectCNIBinDir returns the first of cniBinDirs that holds the plugins
// Gatehouse's conflist uses, plus loopback, which containerd's CRI plugin
// sets up in every pod by itself.
func detectCNIBinDir() (string, error) {
	for _, dir := range cniBinDirs {
		if err := checkCNIPlugins(dir); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no CNI plugins (%s) in %s", strings.Join(cniPlugins, ", "), strings.Join(cniBinDirs, " or "))
}

// cniPlugins are the plugin binaries the node's network needs.
var cniPlugins = []string{"bridge", "host-local", "portmap", "loopback"}

func checkCNIPlugins(dir string) error {
	var missing []string
	for _, p := range cniPlugins {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("CNI plugin dir %s lacks %s", dir, strings.Join(missing, ", "))
	}
	return nil
}
