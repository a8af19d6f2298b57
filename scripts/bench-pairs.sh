#!/usr/bin/env bash
# Two builds of the daemon, loaded alternately with the same events: the before/after
# comparison README's performance tables cite as "alternating pairs". One command:
#
#   scripts/bench-pairs.sh BEFORE_BIN AFTER_BIN [--events N] [--rounds R] [--workload FILE]
#
# Each round runs BEFORE then AFTER, each on a fresh data directory under
# target/bench-pairs/: start `stele serve` on loopback with its embedded defaults, POST
# the first N events of the workload over one connection (1,000 a request), wait until
# /metrics says the index lag is 0, wait 5 s more (merges), read the daemon's CPU time
# (utime + stime) and RssAnon from /proc, stop it cleanly (SIGTERM), and measure the
# directories with du. Alternating the builds within minutes is what makes the figures
# comparable on a machine whose speed drifts (see README "Performance").
#
# The workload is the peer benchmark's (`loadgen gen`, fixed seed; ≈ 600 bytes of JSON an
# event): by default target/bench-peers/work/events-1000000-359966.ndjson, made by
# `scripts/bench-peers.sh` (or pass --workload; --events must not exceed its lines).
# Prints one markdown table row per run and writes them to target/bench-pairs/results.md.
set -euo pipefail

cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { sed -n 2,18p "$0" >&2; exit 2; }
BEFORE=$1 AFTER=$2
shift 2
EVENTS=1000000 ROUNDS=2 WORKLOAD=target/bench-peers/work/events-1000000-359966.ndjson
while [[ $# -gt 0 ]]; do
    case $1 in
        --events) EVENTS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --workload) WORKLOAD=$2; shift 2 ;;
        *) echo "bench-pairs: unknown argument $1" >&2; exit 2 ;;
    esac
done
for f in "$BEFORE" "$AFTER"; do
    [[ -x $f ]] || { echo "bench-pairs: $f is not an executable" >&2; exit 2; }
done
[[ -r $WORKLOAD ]] || {
    echo "bench-pairs: no workload at $WORKLOAD (run scripts/bench-peers.sh once, or pass --workload)" >&2
    exit 2
}
OUT=target/bench-pairs
mkdir -p "$OUT"
PORT=$((18500 + RANDOM % 400))
PID=
trap '[[ -n $PID ]] && kill -TERM $PID 2>/dev/null; wait 2>/dev/null || true' EXIT

metric() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

run() { # LABEL BIN
    local label=$1 bin=$2 dir=$OUT/$1
    rm -rf "$dir"
    mkdir -p "$dir"
    "$bin" serve --listen "127.0.0.1:$PORT" --data-dir "$dir/data" > "$dir/log" 2>&1 &
    PID=$!
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null && break; sleep 0.1; done
    local rate
    rate=$(python3 - "$PORT" "$WORKLOAD" "$EVENTS" <<'EOF'
import http.client, itertools, sys, time
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
t0, done = time.time(), 0
with open(path, "rb") as f:
    while done < n:
        lines = list(itertools.islice(f, min(1000, n - done)))
        if not lines:
            sys.exit(f"the workload has only {done} events")
        c.request("POST", "/v1/events", body=b"".join(lines),
                  headers={"Content-Type": "application/x-ndjson"})
        r = c.getresponse()
        body = r.read()
        if r.status != 201:
            sys.exit(f"POST answered {r.status}: {body[:300]!r}")
        done += len(lines)
print(f"{done / (time.time() - t0):.0f}")
EOF
)
    for _ in $(seq 600); do [[ $(metric stele_index_lag_events) == 0 ]] && break; sleep 1; done
    sleep 5
    local ticks cpu anon
    ticks=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
    cpu=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }')
    anon=$(awk '/^RssAnon/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status")
    kill -TERM $PID
    wait $PID || true
    PID=
    local kv text seg
    kv=$(du -sb "$dir/data/index/kv" | cut -f1)
    text=$(du -sb "$dir/data/index/text" | cut -f1)
    seg=$(du -sb "$dir/data/segments" | cut -f1)
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$rate" "$cpu" "$anon" \
        "$((kv / 1000000))" "$((text / 1000000))" "$((seg / 1000000))" | tee -a "$OUT/results.md"
}

{
    echo "Alternating pairs, $EVENTS events of $WORKLOAD, $(date -u +'%Y-%m-%d %H:%M UTC'), $(nproc) CPUs"
    echo "before: $BEFORE; after: $AFTER"
    echo
    echo "| run | events/s (1 connection) | daemon CPU s | RssAnon MB | index/kv MB | index/text MB | segments MB |"
    echo "|---|---|---|---|---|---|---|"
} | tee "$OUT/results.md"
for r in $(seq "$ROUNDS"); do
    run "before-$r" "$BEFORE"
    run "after-$r" "$AFTER"
done
