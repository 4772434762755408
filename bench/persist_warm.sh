#!/bin/bash
# G13 steady state: one ferrotile server (this checkout's build, or another one given as a
# copy of python/ put first on PYTHONPATH), one array pushed RUNS times in a row with
# `ferrotile-loadgen push --window 64 --noise` (persist=true&mode=append), frames/s and server
# CPU per frame (utime+stime of the server's process tree, /proc) per run. The first run fills
# the in-memory replay buffer (fresh memory); the later ones are steady state.
#
# usage: bench/persist_warm.sh SIZE_BYTES SECONDS RUNS [PYTHONPATH_OF_ANOTHER_BUILD]
# environment: WINDOW (frames awaiting their ack, default 64), FILL (the load generator's frame
# bytes, default --noise; e.g. FILL="--photons 2" for compressible photon counts), PERSIST
# (default true; false: streamed only), REDIS=1 (two workers sharing a redis-server started on a
# free port; its CPU is not counted)
# (from the repository root, after `make build` and `cargo build --release -p ferrotile-loadgen`)
set -euo pipefail
SIZE=$1; SECS=$2; RUNS=$3; PP=${4:-}
LG=${CARGO_TARGET_DIR:-$HOME/.cache/ferrotile/target}/release/ferrotile-loadgen
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LOG=$(mktemp -d)
CACHE=()
if [ "${REDIS:-}" = 1 ]; then
    RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no > "$LOG/redis.log" 2>&1 &
    RPID=$!
    CACHE=(--cache "redis://127.0.0.1:$RPORT/0" --workers 2)
fi
PYTHONPATH=$PP setsid .venv/bin/python -m ferrotile serve catalog --temp --api-key secret \
    --port "$PORT" "${CACHE[@]}" > "$LOG/server.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; [ -z "${RPID:-}" ] || kill "$RPID"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.2; done
cpu() {  # clock ticks of the server's processes (not threads: a process's figure covers them)
    local total=0 ticks
    for p in $(pstree -pT "$PID" | grep -o '([0-9]*)' | tr -d '()'); do
        ticks=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
        total=$((total + ticks))
    done
    echo "$total"
}
KEY=warm$SIZE
"$LG" put --url "http://127.0.0.1:$PORT" --key "$KEY" --size "$SIZE" --create --rate 1 \
    --duration 0 --api-key secret > /dev/null 2>&1
for r in $(seq "$RUNS"); do
    c0=$(cpu)
    out=$("$LG" push --url "ws://127.0.0.1:$PORT/api/v1/stream/push/$KEY?persist=${PERSIST:-true}&mode=append" \
        --size "$SIZE" --api-key secret --max --window "${WINDOW:-64}" ${FILL:---noise} --duration "$SECS" 2>&1)
    c1=$(cpu)
    ok=$(echo "$out" | awk '$1=="ok"{print $2}')
    sec=$(echo "$out" | awk '$1=="seconds"{print $2}')
    python3 -c "ok, s, c = $ok, $sec, ($c1 - $c0) / $(getconf CLK_TCK); \
print(f'${PP:-this build} run $r: {ok} frames {ok / s:8.1f}/s  server CPU {c / max(ok, 1) * 1e6:9.0f} us/frame')"
done
