#!/usr/bin/env bash
# Runs every control-plane benchmark against the built binary and prints the
# figures recorded in bench/README.md. Usage: make bench (or GATEHOUSE_BIN=... bench/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${GATEHOUSE_BIN:-bin/gatehouse}

echo "== startup (5 cold starts on fresh data dirs, RSS after 20 s idle)"
go run ./bench/startup --bin "$bin" --runs 5 --idle 20s

echo "== pod create (no policies)"
dir=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
"$bin" up --node=false --data-dir "$dir" --api-port "$(port)" --etcd-client-port "$(port)" --etcd-peer-port "$(port)" \
	--controller-manager-port "$(port)" --scheduler-port "$(port)" --kubelet-port "$(port)" >"$dir/stdout" 2>"$dir/stderr" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 600); do grep -q ready "$dir/stdout" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$dir/stdout" || { cat "$dir/stderr"; exit 1; }
go run ./bench/podcreate --kubeconfig "$dir/kubeconfig" --concurrency 1,16,64 --count 2000
