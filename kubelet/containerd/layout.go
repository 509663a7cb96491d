package containerd

import "path/filepath"

// maxSocketPath is the longest unix socket path that fits sun_path (108
// bytes with its terminating NUL).
const maxSocketPath = 107

// Layout is where one Gatehouse's containerd keeps its files, all under the
// data dir so that several Gatehouses (and the system's own containerd)
// never share state:
//
//	<data-dir>/containerd/config.toml      written at every start
//	<data-dir>/containerd/containerd.sock  gRPC (CRI and containerd's API); .ttrpc beside it
//	<data-dir>/containerd/containerd.pid   the running containerd, for the next start
//	<data-dir>/containerd/containerd.log   its log
//	<data-dir>/containerd/root/            images, snapshots, metadata
//	<data-dir>/containerd/state/           tasks, sandboxes, network namespaces
//	<data-dir>/containerd/certs.d/         registry hosts (<host>/hosts.toml)
//	<data-dir>/cni/net.d/                  the CNI conflist
//	<data-dir>/cni/ipam/                   host-local's address leases
type Layout struct{ DataDir string }

func (l Layout) Dir() string        { return filepath.Join(l.DataDir, "containerd") }
func (l Layout) ConfigFile() string { return filepath.Join(l.Dir(), "config.toml") }
func (l Layout) Socket() string     { return filepath.Join(l.Dir(), "containerd.sock") }
func (l Layout) PidFile() string    { return filepath.Join(l.Dir(), "containerd.pid") }
func (l Layout) LogFile() string    { return filepath.Join(l.Dir(), "containerd.log") }
func (l Layout) Root() string       { return filepath.Join(l.Dir(), "root") }
func (l Layout) State() string      { return filepath.Join(l.Dir(), "state") }
func (l Layout) HostsDir() string   { return filepath.Join(l.Dir(), "certs.d") }
func (l Layout) CNIConfDir() string { return filepath.Join(l.DataDir, "cni", "net.d") }
func (l Layout) IPAMDir() string    { return filepath.Join(l.DataDir, "cni", "ipam") }

// Endpoint is the socket as a CRI endpoint: unix://<socket>.
func (l Layout) Endpoint() string { return "unix://" + l.Socket() }
