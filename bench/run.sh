#!/usr/bin/env bash
# Runs the control-plane benchmarks against the built binary and prints the
# figures recorded in bench/README.md.
#   make bench                 # everything
#   bench/run.sh startup       # one part: startup | podcreate | constraints | offline | trace | node | services | probes
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${GATEHOUSE_BIN:-bin/gatehouse}
parts=${*:-startup podcreate constraints offline trace node services probes}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# with_gatehouse DIR ARGS... -- CMD...: runs CMD against a fresh instance.
with_gatehouse() {
	local dir; dir=$(mktemp -d)
	local args=()
	while [ "$1" != "--" ]; do args+=("$1"); shift; done
	shift
	"$bin" up --node=false --data-dir "$dir" --api-port "$(port)" --etcd-client-port "$(port)" --etcd-peer-port "$(port)" \
		--controller-manager-port "$(port)" --scheduler-port "$(port)" --kubelet-port "$(port)" "${args[@]}" >"$dir/stdout" 2>"$dir/stderr" &
	local pid=$!
	for _ in $(seq 1 600); do grep -q ready "$dir/stdout" 2>/dev/null && break; sleep 0.1; done
	if ! grep -q ready "$dir/stdout"; then cat "$dir/stderr"; kill $pid; return 1; fi
	local before; before=$(cpu_seconds $pid)
	"$@" --kubeconfig "$dir/kubeconfig" || true
	echo "server CPU during the run: $(awk -v a="$before" -v b="$(cpu_seconds $pid)" 'BEGIN {printf "%.1f s", b-a}')"
	kill $pid; wait $pid 2>/dev/null || true
	rm -rf "$dir"
}

# cpu_seconds PID: user+system CPU the process used so far.
cpu_seconds() {
	awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"
}

# with_node RUNTIME -- CMD...: runs CMD against a fresh control plane with
# one node agent, run apart (gatehouse node) so its memory can be read;
# on containerd the test busybox image is loaded first.
with_node() {
	local runtime=$1; shift 2
	local dir; dir=$(mktemp -d)
	# A /20 per node (upstream's default is a /24, 254 addresses): room for
	# the 1,000 pods of the scale run.
	"$bin" up --node=false --data-dir "$dir" --api-port "$(port)" --etcd-client-port "$(port)" --etcd-peer-port "$(port)" \
		--controller-manager-port "$(port)" --scheduler-port "$(port)" --kube-controller-manager-arg node-cidr-mask-size=20 \
		>"$dir/stdout" 2>"$dir/stderr" &
	local pid=$!
	for _ in $(seq 1 600); do grep -q ready "$dir/stdout" 2>/dev/null && break; sleep 0.1; done
	"$bin" kubeconfig --data-dir "$dir" --node bench-node >"$dir/node.conf"
	"$bin" node --kubeconfig "$dir/node.conf" --data-dir "$dir/node" --runtime "$runtime" --bind-address 127.0.0.1 \
		--kubelet-port "$(port)" --node-ip 127.0.0.1 --max-pods 1100 >"$dir/node.out" 2>&1 &
	local npid=$!
	for _ in $(seq 1 600); do grep -q "ready" "$dir/node.out" 2>/dev/null && break; sleep 0.1; done
	if [ "$runtime" != simulated ]; then
		go run ./hack/busybox-image -o "$dir/busybox.tar" gatehouse.test/busybox:1 >/dev/null
		"$bin" images load --data-dir "$dir/node" "$dir/busybox.tar"
	fi
	sleep 5
	echo "node agent RSS, idle: $(awk '/VmRSS/ {print $2/1024 " MB"}' /proc/$npid/status)"
	"$@" --kubeconfig "$dir/kubeconfig" || true
	# Whatever the harness left (it failed, it was interrupted) is deleted
	# through the node agent, so no container outlives the run.
	kubectl --kubeconfig "$dir/kubeconfig" get namespaces -o name 2>/dev/null | grep bench- |
		xargs -r kubectl --kubeconfig "$dir/kubeconfig" delete --wait=true --timeout=120s >/dev/null 2>&1 || true
	echo "node agent RSS after: $(awk '/VmRSS/ {print $2/1024 " MB"}' /proc/$npid/status), peak $(awk '/VmHWM/ {print $2/1024 " MB"}' /proc/$npid/status)"
	kill $npid; wait $npid 2>/dev/null || true
	kill $pid; wait $pid 2>/dev/null || true
	ip link delete gatehouse0 2>/dev/null || true
	rm -rf "$dir"
}

for part in $parts; do
	case $part in
	startup)
		echo "== startup (5 first starts on fresh data dirs, RSS after 20 s idle)"
		go run ./bench/startup --bin "$bin" --runs 5 --idle 20s
		echo "== startup (5 restarts on one data dir, RSS after 5 s idle)"
		go run ./bench/startup --bin "$bin" --runs 5 --idle 5s --reuse
		;;
	podcreate)
		echo "== pod create, no policies"
		with_gatehouse -- go run ./bench/podcreate --concurrency 1,16,64 --count 2000
		;;
	constraints)
		echo "== pod create at concurrency 16: no policies, then 16 Gatekeeper constraints (bench/policies/gatekeeper16)"
		with_gatehouse -- go run ./bench/podcreate --concurrency 16 --count 3000
		with_gatehouse --policies bench/policies/gatekeeper16 -- go run ./bench/podcreate --concurrency 16 --count 3000
		echo "== engine: one Pod review against 1, 10, 100 constraints; compile time per template"
		go test ./admission/constraint/ -run '^$' -bench . -benchtime 2s -benchmem
		;;
	trace)
		echo "== pod create at concurrency 16 with 16 Gatekeeper constraints: admission trace on, then off"
		for run in 1 2 3; do
			with_gatehouse --policies bench/policies/gatekeeper16 -- go run ./bench/podcreate --concurrency 16 --count 3000
			with_gatehouse --policies bench/policies/gatekeeper16 --trace=false -- go run ./bench/podcreate --concurrency 16 --count 3000
		done
		echo "== the same with admission policies (VAPs, a MAP: the trace's binding explainers run), both orders"
		for run in 1 2 3; do
			with_gatehouse --policies bench/policies/admission -- go run ./bench/podcreate --concurrency 16 --count 3000
			with_gatehouse --policies bench/policies/admission --trace=false -- go run ./bench/podcreate --concurrency 16 --count 3000
			with_gatehouse --policies bench/policies/admission --trace=false -- go run ./bench/podcreate --concurrency 16 --count 3000
			with_gatehouse --policies bench/policies/admission -- go run ./bench/podcreate --concurrency 16 --count 3000
		done
		;;
	offline)
		echo "== gatehouse check (1,000 Pods, 20 policies) and gatehouse test (50 templates x 4 cases)"
		go run ./bench/offline --bin "$bin" --runs 5
		;;
	node)
		echo "== create to Running on containerd, image present: 1, 10, 50 pods at once; node agent RSS"
		with_node auto -- go run ./bench/podstart --pods ${NODE_PODS:-1,10,50} --runs ${NODE_RUNS:-3}
		echo "== 1,000 pods to Running on the simulated runtime"
		with_node simulated -- go run ./bench/podstart --pods 1000 --runs 1 --image busybox
		;;
	probes)
		echo "== probe overhead: 50 pods on containerd without probes, then each with an httpGet readiness and an exec liveness probe every 1 s"
		with_node auto -- go run ./bench/probes --pods ${PROBE_PODS:-50} --period 1
		echo "== the same with the httpGet readiness probe only"
		with_node auto -- go run ./bench/probes --pods ${PROBE_PODS:-50} --period 1 --exec=false
		;;
	services)
		echo "== Service created to first HTTP answer through its ClusterIP; DNS query latency through kube-dns and against the node's server"
		with_node auto -- go run ./bench/services --services ${SERVICES_RUNS:-20} --queries ${DNS_QUERIES:-2000}
		;;
	*) echo "unknown part $part (startup, podcreate, constraints, offline, trace, node, services, probes)" >&2; exit 2 ;;
	esac
done
