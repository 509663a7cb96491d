#!/usr/bin/env bash
# Checks and installs what `make test` needs on a fresh machine of our kind,
# installing only what is missing so repeated runs cost nothing.
set -euo pipefail

# kubectl: machines of our kind ship v1.32 at /usr/bin/kubectl. Debian's own
# package (kubernetes-client) is v1.20, too old for the admission APIs the
# tests use, so a missing kubectl is reported rather than replaced by it.
if ! command -v kubectl >/dev/null 2>&1; then
	echo "install-test-deps: kubectl (>= v1.30) is not on PATH; the end-to-end tests drive the real kubectl" >&2
	exit 1
fi

apt_updated=false
apt_install() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-test-deps: missing $*; run as root to install them" >&2
		exit 1
	fi
	if ! $apt_updated; then
		apt-get update -qq
		apt_updated=true
	fi
	echo "install-test-deps: installing $*" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# The node agent's tests run real containers: containerd (Debian's 1.6) and
# runc, the CNI plugins (bridge, host-local, portmap, loopback), iptables
# for the bridge plugin's masquerading and portmap, busybox-static as the
# content of the test image, and docker-registry (distribution) as a plain
# HTTP registry on loopback for the pull tests. Each is checked by the file
# the tests use, so a machine that has it from elsewhere is left alone.
missing=()
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v runc >/dev/null 2>&1 || missing+=(runc)
if [ ! -x /usr/lib/cni/bridge ] && [ ! -x /opt/cni/bin/bridge ]; then
	missing+=(containernetworking-plugins)
fi
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables)
# nft programs the node's Service routing (table ip gatehouse).
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
	apt_install "${missing[@]}"
fi

# Debian's containerd package enables and starts the system containerd (and
# docker-registry its own registry on :5000) when the init system runs
# services. The tests start their own, so those are not needed; they are
# left as the package set them.
