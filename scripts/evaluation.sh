#!/usr/bin/env bash
# `make evaluation`: the paper's evaluation on this machine, in one run. Starts a dev node on a
# free port (sealing every second, with the single-state transaction pool: the fork-aware one
# dropped weight-block uploads after a few megabytes here) for the
# on-chain versus off-chain measurement and stops it (always), then measures the rest with no
# node running and writes docs/evaluation/ (report.md, results.json, SVG plots) with
# `smartvm bench --report`.
#   scripts/evaluation.sh NODE SMARTVM OUT_DIR ANCHORS.json WEIGHT_FETCH.txt FASHION_DIR
set -euo pipefail
NODE=$1 SMARTVM=$2 OUT=$3 ANCHORS=$4 FETCH=$5 FASHION=$6
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LOG=$(mktemp /tmp/smartvm-evaluation-node.XXXXXX.log)
"$NODE" --dev --dev-block-time 1000 --pool-type single-state --rpc-port "$PORT" >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 180); do
  if curl -sf -H 'Content-Type: application/json' \
      -d '{"id":1,"jsonrpc":"2.0","method":"chain_getHeader","params":[]}' \
      "http://127.0.0.1:$PORT" >/dev/null; then
    break
  fi
  kill -0 $PID 2>/dev/null || { echo "the dev node exited; its log:"; tail -20 "$LOG"; exit 1; }
  sleep 1
done
echo "== dev node serving on ws://127.0.0.1:$PORT"
CHAIN="$(dirname "$ANCHORS")/chain.json"
"$SMARTVM" bench --url "ws://127.0.0.1:$PORT" --chain-results "$CHAIN" --fashion "$FASHION"
kill $PID
wait $PID 2>/dev/null || true
"$SMARTVM" bench --report "$OUT" --anchors "$ANCHORS" --weight-fetch "$FETCH" --fashion "$FASHION" \
  --chain-results "$CHAIN"
