#!/usr/bin/env bash
# Starts a server binary ($1, default target/release/wayfinder) on a fresh
# SQLite database and runs socket_rss.mjs with N ($2, default 2000) sockets.
set -euo pipefail
BIN=${1:-target/release/wayfinder}; N=${2:-2000}
DIR=$(mktemp -d); PORT=${PORT:-18181}
export WAYFINDER_DATA_DIR=$DIR WAYFINDER_DEMO=false WAYFINDER_API_KEY_RATE_LIMIT=0 WAYFINDER_PUBLIC_RATE_LIMIT=0 RUST_LOG=warn
KEY=$("$BIN" org create --name Bench --plan PRO --owner-email b@example.com --json | sed -n 's/.*"apiKey":"\([^"]*\)".*/\1/p' | head -1)
"$BIN" serve --addr 127.0.0.1:$PORT & PID=$!
trap 'kill $PID; rm -rf $DIR' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done
NODE_PATH=${NODE_PATH:-$(cd "$(dirname "$0")/../../.." && pwd)/tests/browser/node_modules} node "$(dirname "$0")/socket_rss.mjs" ws://127.0.0.1:$PORT/graphql "$KEY" $PID $N
