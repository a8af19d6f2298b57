#!/usr/bin/env bash
# Statistics over time windows that end inside the data, not only at its end: what README's
# "Windows that cut a large merged segment" table measures. One command:
#
#   scripts/bench-windows.sh DATA_DIR BIN [BIN...] [--since DAY] [--until DAY,DAY,...] [--reps N]
#
# DATA_DIR holds a loaded Stele data directory (for the README figures: the 10,000,000 events
# of the peer workload posted over one connection, 1,000 a request, as `scripts/bench-peers.sh`
# loads them, then left idle). For each BIN in turn: start `stele serve` on loopback on that
# directory (its embedded defaults), wait for /readyz, and for each `until` ask three questions
# over since..until — the facet of `action`, the top 10 users, the count per day — once cold,
# then N timed repetitions on one keep-alive connection; print p50 / p95 in ms at the client and
# the daemon's partials counters; stop it cleanly. Pass the builds twice (A B A B) to alternate
# them on a machine whose speed drifts. The data directory is only read (and its indexes
# checkpointed at each stop).
set -euo pipefail

cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { sed -n 2,15p "$0" >&2; exit 2; }
DATA=$1
shift
BINS=() SINCE=2026-11-05 UNTIL=2026-12-05T00,2026-12-04T12,2026-12-04T00,2026-12-01T00,2026-11-25T00,2026-11-15T00 REPS=30
while [[ $# -gt 0 ]]; do
    case $1 in
        --since) SINCE=$2; shift 2 ;;
        --until) UNTIL=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        *) BINS+=("$1"); shift ;;
    esac
done
[[ -d $DATA ]] || { echo "no data directory $DATA" >&2; exit 2; }
PORT=18660
for BIN in "${BINS[@]}"; do
    "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" > "$DATA.bench-windows.log" 2>&1 &
    PID=$!
    trap 'kill $PID 2>/dev/null || true' EXIT
    for _ in $(seq 600); do
        curl -sf "127.0.0.1:$PORT/readyz" > /dev/null && break
        kill -0 $PID || { echo "$BIN exited; see $DATA.bench-windows.log" >&2; exit 1; }
        sleep 0.2
    done
    echo "== $BIN"
    python3 - "$PORT" "$SINCE" "$UNTIL" "$REPS" <<'EOF'
import http.client, sys, time
port, since, untils, reps = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port)

def timed(url):
    c.request("GET", url); r = c.getresponse(); r.read()
    if r.status != 200:
        raise SystemExit(f"{url}: {r.status}")
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); c.request("GET", url); r = c.getresponse(); r.read()
        ts.append((time.perf_counter() - t0) * 1000)
    ts.sort()
    return f"{ts[len(ts) // 2]:.2f} / {ts[min(len(ts) - 1, int(len(ts) * 0.95))]:.2f}"

print("| until | facet action | top 10 users | count per day |")
print("|---|---|---|---|")
for u in untils:
    u = u if "T" in u else u + "T00"
    w = f"since={since}T00%3A00%3A00Z&until={u}%3A00%3A00Z"
    print(f"| {u} | {timed('/v1/fields/action/values?' + w)} | "
          f"{timed('/v1/fields/user_id/values?top=10&' + w)} | "
          f"{timed('/v1/stats?interval=day&include=histogram&' + w)} |")
EOF
    curl -s "127.0.0.1:$PORT/metrics" | grep -E '^stele_stats_partials_(bytes|entries|lookups)' || true
    kill $PID
    wait $PID || true
    trap - EXIT
done
