#!/usr/bin/env bash
# Times `make run` from its start to the first answered RPC call, as a new user would see it,
# then stops the node with Ctrl-C (SIGINT) and checks it exited. Run it once after
# `rm -rf "$CARGO_TARGET_DIR/debug"` for the cold figure and again for the warm one.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${RPC_PORT:-9955}"
log="${1:-$(mktemp -t make-run.XXXXXX.log)}"
rpc() {
  curl -sf -H 'Content-Type: application/json' \
    -d "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"$1\",\"params\":[]}" "http://127.0.0.1:$port"
}
start=$(date +%s)
setsid make run RPC_PORT="$port" >"$log" 2>&1 &
group=$!
trap 'kill -INT -"$group" 2>/dev/null || true' EXIT
until rpc system_health >/dev/null 2>&1; do
  if ! kill -0 "$group" 2>/dev/null; then
    echo "make run exited before serving RPC; its log: $log" >&2
    exit 1
  fi
  sleep 1
done
served=$(date +%s)
echo "make run -> RPC served in $((served - start)) s (log: $log)"
echo "system_chain: $(rpc system_chain)"
kill -INT -"$group"
wait "$group" || true
trap - EXIT
echo "node stopped by SIGINT"
