#!/usr/bin/env bash
# Runs the control-plane benchmarks against the built binary and prints the
# figures recorded in bench/README.md.
#   make bench                 # everything
#   bench/run.sh startup       # one part: startup | podcreate | constraints | offline | trace
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${GATEHOUSE_BIN:-bin/gatehouse}
parts=${*:-startup podcreate constraints offline trace}

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
	"$@" --kubeconfig "$dir/kubeconfig" || true
	kill $pid; wait $pid 2>/dev/null || true
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
		;;
	offline)
		echo "== gatehouse check (1,000 Pods, 20 policies) and gatehouse test (50 templates x 4 cases)"
		go run ./bench/offline --bin "$bin" --runs 5
		;;
	*) echo "unknown part $part (startup, podcreate, constraints, offline, trace)" >&2; exit 2 ;;
	esac
done
