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

# Nothing else yet: the node-agent tests will add containerd, runc and
# containernetworking-plugins here.
: "${apt_updated}"
