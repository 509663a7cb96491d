// Package containerdtest runs a real containerd for tests, the way
// net/http/httptest runs a server: in a temporary data dir, on its own
// bridge and pod range, with everything it leaves behind (shims, mounts,
// the bridge, cgroups) removed when the test ends.
//
//	func TestPod(t *testing.T) {
//		node := containerdtest.Start(t)
//		rt := node.Runtime(t) // a cri-client RuntimeService
//		…
//	}
//
// Tests that use it need root. They are skipped, with the reason, when not
// run as root; as root, a missing containerd, runc or CNI plugin fails the
// test, naming hack/install-test-deps.sh.
package containerdtest
