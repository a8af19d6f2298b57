#!/usr/bin/env bash
# scripts/bench-archive.sh: the archive's figures (docs/perf-archive.md) in one
# command, against a one-node Ceph RGW that it starts and purges itself.
#
#   cargo build --release --bin stele --example loadgen
#   scripts/bench-archive.sh                     # 1,000,000 events, memstore
#   EVENTS=200000 scripts/bench-archive.sh       # quicker
#   S3_CEPH_STORE=bluestore scripts/bench-archive.sh   # objects on a disk
#
# 1. Upload throughput: `stele serve` with [archive] (poll_secs = 1) and
#    [log] segment_bytes_max = 16 MiB, EVENTS events posted by
#    `loadgen batch --events`; /readyz state.archive polled every 0.5 s:
#    MB/s uploaded while ingesting and after, time from the last ack until
#    every sealed segment is archived.
# 2. Cost to ingest while uploading: the same ingest (EVENTS2 events) into
#    fresh daemons with [archive] off and on, alternating (off, on) x PAIRS:
#    events/s, request latency, the daemon's CPU (utime+stime).
# 1b. Catch-up: the same data directory restarted with [archive] on an
#    empty bucket: every sealed segment at once, with no ingest beside it.
# 3. Restore: `stele restore --from s3://…` of (1)'s archive, then the first
#    `stele serve` on it until /readyz is 200 and until the indexes are level.
#
# Figure 4 (Parquet bytes per event) is `cargo run --release --example
# parquet_size`, not part of this script.
#
# Settings (environment):
#   EVENTS=1000000  EVENTS2=$EVENTS  PAIRS=2 (0: no figure 2)  SEED=357918
#   S3_CEPH_STORE=memstore (or bluestore)   S3_CEPH_MON_PORT=33300
#   S3_CEPH_RGW_PORT=37480   STELE_PORT=37070
#   BENCH_DIR=<a new mktemp -d under /tmp>: data directories, logs, samples
#     (the disk measured: every acknowledgement waits for an fdatasync there)
#   BENCH_CEPH_DIR=$BENCH_DIR/ceph: the cluster (memstore keeps objects in
#     RAM anyway; a tmpfs such as /dev/shm/… spares a full disk)
#   BENCH_KEEP=1: keep BENCH_DIR (the cluster is purged regardless)
#
# Needs: python3, curl, and the Ceph packages scripts/s3-ceph.sh installs;
# boto3 for scripts/s3-bucket.py. Everything listens on 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
EVENTS=${EVENTS:-1000000}
EVENTS2=${EVENTS2:-$EVENTS}
PAIRS=${PAIRS:-2}
SEED=${SEED:-357918}
STORE=${S3_CEPH_STORE:-memstore}
MON_PORT=${S3_CEPH_MON_PORT:-33300}
RGW_PORT=${S3_CEPH_RGW_PORT:-37480}
STELE_PORT=${STELE_PORT:-37070}
STELE=$ROOT/target/release/stele
LOADGEN=$ROOT/target/release/examples/loadgen
for b in "$STELE" "$LOADGEN"; do
    [ -x "$b" ] || { echo "bench-archive: $b is missing: cargo build --release --bin stele --example loadgen" >&2; exit 2; }
done
WORK=${BENCH_DIR:-$(mktemp -d /tmp/bench-archive.XXXXXX)}
mkdir -p "$WORK"
CEPH_DIR=${BENCH_CEPH_DIR:-$WORK/ceph}
ADDR=127.0.0.1:$STELE_PORT
RESULTS=$WORK/results.txt
: >"$RESULTS"

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

DAEMON_PID=
POLLER_PID=
BUCKETS=()
cleanup() {
    local rc=$?
    set +e
    [ -n "$POLLER_PID" ] && kill "$POLLER_PID" 2>/dev/null
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
    fi
    for b in "${BUCKETS[@]}"; do python3 "$ROOT/scripts/s3-bucket.py" delete "$b" >/dev/null 2>&1; done
    if [ -d "$CEPH_DIR" ]; then
        log "purging the cluster in $CEPH_DIR"
        "$ROOT/scripts/s3-ceph.sh" purge "$CEPH_DIR" >/dev/null 2>&1
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the store --------------------------------------------------------------
ceph_env=(S3_CEPH_NO_MGR=1 S3_CEPH_MON_PORT="$MON_PORT" S3_CEPH_RGW_PORT="$RGW_PORT")
# Passed to every Ceph daemon and command (they read CEPH_ARGS):
# - memstore_device_bytes: memstore's default 2 GiB would fill up (1M events
#   are ~1.1 GB of segments, and radosgw frees the tails of deleted objects
#   only at garbage collection, 2 h later);
# - mon_data_avail_crit=0: the monitor refuses to start when its disk has
#   1 % or less free (a nearly full build machine); this cluster is thrown away.
export CEPH_ARGS="${CEPH_ARGS:-} --memstore_device_bytes=${MEMSTORE_BYTES:-8589934592} --mon_data_avail_crit=0"
[ "$STORE" = memstore ] && ceph_env+=(S3_CEPH_STORE=memstore)
log "starting a one-node Ceph ($STORE) in $CEPH_DIR, radosgw on 127.0.0.1:$RGW_PORT"
env "${ceph_env[@]}" "$ROOT/scripts/s3-ceph.sh" start "$CEPH_DIR" >"$WORK/ceph-start.log" 2>&1 \
    || { tail -20 "$WORK/ceph-start.log" >&2; exit 1; }
# (through the admin socket: `ceph osd df` needs the mgr, which is left out)
[ "$STORE" = memstore ] && log "memstore_device_bytes of osd.0: $(CEPH_ARGS= timeout 10 ceph --conf "$CEPH_DIR/ceph.conf" daemon osd.0 config get memstore_device_bytes 2>/dev/null | tr -d ' \n' || echo unknown)"
set -a
# shellcheck disable=SC1091
. "$CEPH_DIR/s3.env"
set +a
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY AWS_REGION=$S3_REGION
mkdir -p "$WORK/creds"
printf '%s' "$S3_ACCESS_KEY" >"$WORK/creds/s3-access-key-id"
printf '%s' "$S3_SECRET_KEY" >"$WORK/creds/s3-secret-access-key"
chmod 600 "$WORK/creds"/*

new_bucket() {
    local b="stele-bench-$$-$1"
    python3 "$ROOT/scripts/s3-bucket.py" create "$b" >/dev/null
    BUCKETS+=("$b")
    echo "$b"
}
drop_bucket() {
    python3 "$ROOT/scripts/s3-bucket.py" delete "$1" >/dev/null
    local kept=()
    for b in "${BUCKETS[@]}"; do [ "$b" = "$1" ] || kept+=("$b"); done
    BUCKETS=("${kept[@]}")
}

# ---- a daemon ---------------------------------------------------------------
# write_config NAME DATA_DIR [BUCKET]: a config with [archive] on BUCKET, or off.
write_config() {
    local cfg=$WORK/$1.toml
    cat >"$cfg" <<EOF
listen = "$ADDR"
data_dir = "$2"

[log]
segment_bytes_max = 16777216
EOF
    if [ -n "${3:-}" ]; then
        cat >>"$cfg" <<EOF

[archive]
url = "s3://$3/bench"
node = "bench"
endpoint = "$S3_ENDPOINT"
allow_http = true
poll_secs = 1
credentials_dir = "$WORK/creds"
EOF
    fi
    echo "$cfg"
}

# start_daemon NAME CONFIG: runs `stele serve`, waits for /healthz.
start_daemon() {
    RUST_LOG=warn,stele=info "$STELE" serve --config "$2" >"$WORK/daemon-$1.log" 2>&1 &
    DAEMON_PID=$!
    for _ in $(seq 600); do
        curl -fs "http://$ADDR/healthz" >/dev/null 2>&1 && return 0
        kill -0 "$DAEMON_PID" 2>/dev/null || { tail "$WORK/daemon-$1.log" >&2; exit 1; }
        sleep 0.05
    done
    echo "bench-archive: the daemon did not answer /healthz" >&2
    exit 1
}
stop_daemon() {
    kill -TERM "$DAEMON_PID"
    wait "$DAEMON_PID" || true
    DAEMON_PID=
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$DAEMON_PID/stat"; }

# The poller: one line of /readyz's state every 0.5 s into FILE.
start_poller() {
    python3 - "$ADDR" "$1" <<'EOF' &
import json, sys, time, urllib.request, urllib.error
addr, out = sys.argv[1], sys.argv[2]
with open(out, "w") as f:
    while True:
        t = time.time()
        try:
            try:
                r = urllib.request.urlopen(f"http://{addr}/readyz", timeout=2)
                code, body = r.status, r.read()
            except urllib.error.HTTPError as e:
                code, body = e.code, e.read()
            s = json.loads(body)["state"]
            a = s.get("archive") or {}
            f.write(json.dumps({"t": t, "code": code, "lag": s["lag_events"],
                "last_seq": s["log_last_seq"], "up_bytes": a.get("upload_bytes", 0),
                "uploads": a.get("uploads", 0), "backlog": a.get("backlog_objects", 0),
                "backlog_bytes": a.get("backlog_bytes", 0), "passes": a.get("passes", 0),
                "failures": a.get("failures", 0), "read_backs": a.get("read_backs", 0)}) + "\n")
            f.flush()
        except Exception as e:  # the daemon stopping, a slow answer
            f.write(json.dumps({"t": t, "error": str(e)}) + "\n")
            f.flush()
        time.sleep(max(0.0, 0.5 - (time.time() - t)))
EOF
    POLLER_PID=$!
}
stop_poller() { kill "$POLLER_PID" 2>/dev/null; wait "$POLLER_PID" 2>/dev/null || true; POLLER_PID=; }

# Sealed segment bytes in DATA_DIR (every segment file but the newest).
sealed_bytes() {
    python3 - "$1/segments" <<'EOF'
import os, sys
d = sys.argv[1]
segs = []
for n in os.listdir(d):
    if n.endswith(".seg"):
        day, part = n[:-4].split(".", 1)
        segs.append(((day, int(part)), os.path.getsize(os.path.join(d, n))))
segs.sort()
print(sum(s for _, s in segs[:-1]), len(segs) - 1, sum(s for _, s in segs))
EOF
}

# ingest NAME EVENTS: loadgen batch against the running daemon; prints
# "T0 CPU_TICKS_DELTA" and leaves loadgen's JSON in $WORK/lg-NAME.json.
ingest() {
    local c0 c1 t0
    c0=$(cpu_ticks)
    t0=$(date +%s.%N)
    "$LOADGEN" batch --addr "$ADDR" --events "$2" --warmup 0 --seed "$SEED" --json \
        >"$WORK/lg-$1.json" 2>"$WORK/lg-$1.err" || { tail "$WORK/lg-$1.err" >&2; exit 1; }
    c1=$(cpu_ticks)
    echo "$t0 $((c1 - c0))"
}

HZ=$(getconf CLK_TCK)

# ---- figure 1: upload throughput -------------------------------------------
log "figure 1: $EVENTS events into a daemon archiving to a fresh bucket"
BUCKET=$(new_bucket up)
DATA=$WORK/data-up
mkdir -p "$DATA"
"$STELE" keygen --signing --out "$DATA/signing.key" >/dev/null
start_daemon up "$(write_config up "$DATA" "$BUCKET")"
start_poller "$WORK/samples-up.jsonl"
c_start=$(cpu_ticks)
read -r T0 CPU_INGEST < <(ingest up "$EVENTS")
[ -n "${CPU_INGEST:-}" ] || exit 1
read -r SEALED NSEALED ALLSEG < <(sealed_bytes "$DATA")
log "figure 1: ingest done; waiting until the $NSEALED sealed segments ($SEALED bytes) are archived"
for _ in $(seq 1200); do
    up=$(tail -n 1 "$WORK/samples-up.jsonl" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read()).get("up_bytes", 0))')
    [ "$up" -ge "$SEALED" ] && break
    sleep 0.5
done
sleep 2
c_end=$(cpu_ticks)
stop_poller
stop_daemon
python3 - "$WORK" "$T0" "$SEALED" "$NSEALED" "$ALLSEG" "$CPU_INGEST" "$((c_end - c_start))" "$HZ" "$STORE" <<'EOF' | tee -a "$RESULTS"
import json, sys
work, t0, sealed, nsealed, allseg, cpu_i, cpu_all, hz, store = sys.argv[1:]
t0, sealed, nsealed, allseg, hz = float(t0), int(sealed), int(nsealed), int(allseg), int(hz)
lg = json.loads(open(f"{work}/lg-up.json").read().strip().splitlines()[-1])
events, rate = lg["events"], lg["events_per_s"]
tack = t0 + events / rate
S = [json.loads(l) for l in open(f"{work}/samples-up.jsonl") if '"up_bytes"' in l]
def at(t):  # upload_bytes at time t (the last sample at or before t)
    u = 0
    for s in S:
        if s["t"] <= t: u = s["up_bytes"]
    return u
drained = next((s for s in S if s["up_bytes"] >= sealed), None)
first_up = next((s for s in S if s["up_bytes"] > 0), None)
u_ack, u_end = at(tack), S[-1]["up_bytes"]
busy_b = busy_t = 0.0
for a, b in zip(S, S[1:]):
    if a["backlog"] > 0 or b["up_bytes"] > a["up_bytes"]:
        busy_b += b["up_bytes"] - a["up_bytes"]; busy_t += b["t"] - a["t"]
MB = 1e6
print(f"== figure 1: upload throughput ({store}) ==")
print(f"events acknowledged            {events} in {tack - t0:.1f} s ({rate:.0f} events/s)")
print(f"segments                       {nsealed} sealed ({sealed/MB:.1f} MB) + the open one (not archived: only sealed segments are)")
print(f"sealed segment bytes           {sealed/MB/(tack-t0):.1f} MB/s produced while ingesting")
if first_up:
    print(f"first upload confirmed         {first_up['t'] - t0:.1f} s after the start")
print(f"uploaded while ingesting       {u_ack/MB:.1f} MB = {u_ack/MB/(tack-t0):.1f} MB/s (average over the ingest)")
if drained:
    d = drained["t"] - tack
    print(f"uploaded after the last ack    {(drained['up_bytes']-u_ack)/MB:.1f} MB in {d:.1f} s = {(drained['up_bytes']-u_ack)/MB/max(d,1e-9):.1f} MB/s")
    print(f"last ack -> every sealed segment archived   {d:.1f} s (0.5 s sampling)")
else:
    print("NOT DRAINED: the uploads did not catch up")
if busy_t:
    print(f"upload rate while busy         {busy_b/MB/busy_t:.1f} MB/s (intervals with a backlog or an upload)")
print(f"backlog peak                   {max(s['backlog'] for s in S)} objects, {max(s['backlog_bytes'] for s in S)/MB:.1f} MB")
last = S[-1]
print(f"uploads / failures / read-backs {last['uploads']} / {last['failures']} / {last['read_backs']}")
print(f"daemon CPU                     {int(cpu_i)/hz:.1f} s while loadgen ran (the ingest, then until index lag 0), {int(cpu_all)/hz:.1f} s until drained + 2 s")
print(f"request latency p50/p99/max    {lg['request_latency']['p50_ms']} / {lg['request_latency']['p99_ms']} / {lg['request_latency']['max_ms']} ms")
print()
EOF

# ---- figure 1b: catch-up ----------------------------------------------------
# The same data directory restarted with [archive] on a new, empty bucket:
# every sealed segment is a backlog at once (an archive that was down, or
# switched on late), uploaded with no ingest beside it.
log "figure 1b: the same data directory, [archive] on a new bucket: catching up $NSEALED segments"
BUCKET2=$(new_bucket catchup)
start_poller "$WORK/samples-catchup.jsonl"
l0=$(date +%s.%N)
start_daemon catchup "$(write_config catchup "$DATA" "$BUCKET2")"
c0=$(cpu_ticks)
for _ in $(seq 2400); do
    up=$(tail -n 1 "$WORK/samples-catchup.jsonl" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read()).get("up_bytes", 0))')
    [ "$up" -ge "$SEALED" ] && break
    sleep 0.5
done
c1=$(cpu_ticks)
stop_poller
stop_daemon
drop_bucket "$BUCKET2"
python3 - "$WORK" "$l0" "$SEALED" "$NSEALED" "$((c1 - c0))" "$HZ" "$STORE" <<'EOF' | tee -a "$RESULTS"
import json, sys
work, l0, sealed, nsealed, cpu, hz, store = sys.argv[1:]
l0, sealed, cpu = float(l0), int(sealed), int(cpu) / int(hz)
S = [json.loads(l) for l in open(f"{work}/samples-catchup.jsonl") if '"up_bytes"' in l]
first = next(s for s in S if s["up_bytes"] > 0)
done = next(s for s in S if s["up_bytes"] >= sealed)
MB = 1e6
print(f"== figure 1b: catch-up, {nsealed} segments, no ingest ({store}) ==")
print(f"backlog at the first pass      {max(s['backlog'] for s in S)} objects, {max(s['backlog_bytes'] for s in S)/MB:.1f} MB")
print(f"launch -> all archived         {done['t'] - l0:.1f} s = {sealed/MB/(done['t'] - l0):.1f} MB/s")
print(f"first upload -> all archived   {(done['up_bytes'] - first['up_bytes'])/MB:.1f} MB in {done['t'] - first['t']:.1f} s = {(done['up_bytes'] - first['up_bytes'])/MB/(done['t'] - first['t']):.1f} MB/s")
print(f"daemon CPU while catching up   {cpu:.1f} s = {cpu*1000/(sealed/MB):.1f} ms per MB uploaded")
print()
EOF

# ---- figure 3: restore -------------------------------------------------------
rm -rf "$DATA"
RESTORE=$WORK/restore
log "figure 3: stele restore --from s3://$BUCKET/bench into $RESTORE"
r0=$(date +%s.%N)
"$STELE" restore --from "s3://$BUCKET/bench" --endpoint "$S3_ENDPOINT" "$RESTORE" >"$WORK/restore.out" 2>&1 \
    || { cat "$WORK/restore.out" >&2; exit 1; }
r1=$(date +%s.%N)
start_at=$(date +%s.%N)
RUST_LOG=warn,stele=info "$STELE" serve --config "$(write_config restored "$RESTORE")" >"$WORK/daemon-restored.log" 2>&1 &
DAEMON_PID=$!
ready_at= level_at= listen_at=
for _ in $(seq 12000); do
    now=$(date +%s.%N)
    body=$(curl -s -w '\n%{http_code}' "http://$ADDR/readyz" 2>/dev/null || true)
    code=${body##*$'\n'}
    if [ -n "$code" ] && [ "$code" != 000 ] && [ -z "$listen_at" ]; then listen_at=$now; fi
    if [ "$code" = 200 ] && [ -z "$ready_at" ]; then ready_at=$now; fi
    if [ "$code" = 200 ] && printf '%s' "${body%$'\n'*}" | grep -q '"lag_events":0[,}]'; then level_at=$now; break; fi
    kill -0 "$DAEMON_PID" 2>/dev/null || { tail "$WORK/daemon-restored.log" >&2; exit 1; }
    sleep 0.1
done
stop_daemon
python3 - "$WORK" "$r0" "$r1" "$start_at" "$listen_at" "$ready_at" "$level_at" <<'EOF' | tee -a "$RESULTS"
import re, sys
work, r0, r1, s0, li, re_, lv = sys.argv[1:]
r0, r1, s0, li, re_, lv = map(float, (r0, r1, s0, li, re_, lv))
out = open(f"{work}/restore.out").read()
m = re.search(r"restored (\d+) segments \((\d+) events.*?(\d+) bytes", out)
segs, events, nbytes = int(m[1]), int(m[2]), int(m[3])
per = 1e6 / events
print("== figure 3: restore ==")
print(f"restored                       {segs} segments, {events} events, {nbytes/1e6:.1f} MB")
print(f"stele restore (download+verify) {r1-r0:.1f} s = {(r1-r0)*per:.1f} s per million events ({nbytes/1e6/(r1-r0):.1f} MB/s)")
print(f"first serve: listening         {li-s0:.1f} s after launch")
print(f"first serve: /readyz 200       {re_-s0:.1f} s after launch (lag <= 100000 events)")
print(f"first serve: indexes level     {lv-s0:.1f} s after launch = {(lv-s0)*per:.1f} s per million events")
print(f"restore + indexes level        {(r1-r0)+(lv-s0):.1f} s = {((r1-r0)+(lv-s0))*per:.1f} s per million events")
print()
EOF
rm -rf "$RESTORE"
drop_bucket "$BUCKET"

# ---- figure 2: ingest with the archive off and on ---------------------------
[ "$PAIRS" -gt 0 ] || { log "figure 2 skipped (PAIRS=0)"; echo; cat "$RESULTS"; exit 0; }
runs=()
for p in $(seq "$PAIRS"); do runs+=("off$p" "on$p"); done
log "figure 2: ${runs[*]}, $EVENTS2 events each"
for r in "${runs[@]}"; do
    DATA=$WORK/data-$r
    mkdir -p "$DATA"
    "$STELE" keygen --signing --out "$DATA/signing.key" >/dev/null
    b=
    [ "${r#on}" != "$r" ] && b=$(new_bucket "$r")
    start_daemon "$r" "$(write_config "$r" "$DATA" "$b")"
    cpu=
    read -r _ cpu < <(ingest "$r" "$EVENTS2")
    [ -n "$cpu" ] || exit 1
    echo "$r $cpu" >>"$WORK/cpu.txt"
    stop_daemon
    rm -rf "$DATA"
    [ -n "$b" ] && drop_bucket "$b"
done
python3 - "$WORK" "$HZ" "${runs[@]}" <<'EOF' | tee -a "$RESULTS"
import json, sys
work, hz, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
cpu = dict(l.split() for l in open(f"{work}/cpu.txt"))
print("== figure 2: ingest with the archive off / on ==")
print(f"{'run':6} {'events':>8} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU s':>6} {'CPU s/1M':>8}")
agg = {"off": [], "on": []}
for r in runs:
    lg = json.loads(open(f"{work}/lg-{r}.json").read().strip().splitlines()[-1])
    l = lg["request_latency"]
    c = int(cpu[r]) / hz
    agg["on" if r.startswith("on") else "off"].append((lg["events_per_s"], c * 1e6 / lg["events"]))
    print(f"{r:6} {lg['events']:>8} {lg['events_per_s']:>9.0f} {l['p50_ms']:>7} {l['p99_ms']:>7} {l['max_ms']:>7} {c:>6.1f} {c*1e6/lg['events']:>8.1f}")
mean = lambda xs: sum(xs) / len(xs)
off_r, on_r = mean([a for a, _ in agg["off"]]), mean([a for a, _ in agg["on"]])
off_c, on_c = mean([c for _, c in agg["off"]]), mean([c for _, c in agg["on"]])
print(f"mean   off {off_r:.0f} events/s, on {on_r:.0f} events/s: {100*(on_r/off_r-1):+.1f} %; "
      f"CPU per 1M events off {off_c:.1f} s, on {on_c:.1f} s: {100*(on_c/off_c-1):+.1f} %")
print()
EOF

log "done"
echo
cat "$RESULTS"
