// Package testimage builds a small busybox image from the host's
// /bin/busybox (Debian's busybox-static), for the node agent's tests and
// the README's walkthrough: no registry is reachable from our machines, so
// the images that tests run are made here. It also pushes that image to a
// registry over plain HTTP (the registry API, no external tools), for the
// tests that prove real pulls work.
//
//	f, _ := os.Create("busybox.tar")
//	_, err := testimage.WriteOCI(f, "gatehouse.test/busybox:1")
//
// The image has /bin/busybox, a symlink in /bin for every applet that this
// busybox reports (sh, echo, sleep, cat, env, wget, ls, …), a minimal
// /etc/passwd and /etc/group, /tmp, PATH=/bin and Cmd ["sh"].
package testimage
