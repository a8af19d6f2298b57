#!/usr/bin/env bash
# Stele beside PostgreSQL 15 and SQLite, on the same events and the same 20 queries,
# answers cross-checked. One command, from the repository root or anywhere:
#
#   scripts/bench-peers.sh                 # 1,000,000 events (≈ 600 bytes of JSON each)
#   scripts/bench-peers.sh --quick         # 100,000 events, 10 repetitions per query
#   scripts/bench-peers.sh --events 10000000 --systems stele --stele-loads 1 --skip-build
#                                          # Stele alone at scale (restart, memory; ≈ 25 GB free)
#
# Installs what it needs (postgresql-15 with apt-get when absent and postgres is among
# --systems; psycopg from PyPI into a venv under target/bench-peers/), checks the free disk
# space (2.5 KB an event), builds the daemon and loadgen (unless --skip-build),
# then runs scripts/peers/bench.py, which starts and stops every system itself on
# loopback, in target/bench-peers/run/. Results: target/bench-peers/results.md and
# results.json. Exit 1 when any query's answers differ between the systems.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=target/bench-peers
VENV=$OUT/venv
PIDS=$OUT/children.pids
PGBIN=/usr/lib/postgresql/15/bin
STELE=target/release/stele
LOADGEN=target/release/examples/loadgen
SKIP_BUILD=0
SYSTEMS=stele,postgres,sqlite
prev=
for a in "$@"; do
    [[ $a == --skip-build ]] && SKIP_BUILD=1
    [[ $a == -h || $a == --help ]] && exec python3 scripts/peers/bench.py --help
    [[ $prev == --systems ]] && SYSTEMS=$a
    [[ $a == --systems=* ]] && SYSTEMS=${a#--systems=}
    [[ $a == --out=* ]] && OUT=${a#--out=}
    [[ $prev == --out ]] && OUT=$a
    [[ $a == --stele=* ]] && STELE=${a#--stele=}
    [[ $prev == --stele ]] && STELE=$a
    [[ $a == --loadgen=* ]] && LOADGEN=${a#--loadgen=}
    [[ $prev == --loadgen ]] && LOADGEN=$a
    prev=$a
done
PIDS=$OUT/children.pids
WANT_PG=0
[[ ,$SYSTEMS, == *,postgres,* || ,$SYSTEMS, == *,pg,* ]] && WANT_PG=1
mkdir -p "$OUT"
# The options and the free disk space, before anything is installed or built.
python3 scripts/peers/bench.py --preflight "$@"
export BENCH_PEERS_PREFLIGHT_DONE=1

cleanup() {
    # Whatever the driver left running (it stops everything itself; this is for a kill).
    if [[ -f $PIDS ]]; then
        while read -r pid; do
            [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
        done < "$PIDS"
        rm -f "$PIDS"
    fi
    if [[ -f $OUT/run/pg/data/postmaster.pid ]]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$OUT/run/pg/data" stop -m immediate \
            >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $WANT_PG == 1 ]] && [[ ! -x $PGBIN/postgres || ! -x $PGBIN/pgbench ]]; then
    echo "bench-peers: installing postgresql-15 (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql-15 postgresql-contrib-15 >/dev/null 2>&1 ||
        apt-get install -y -qq postgresql-15 >/dev/null
fi
if [[ $WANT_PG == 1 ]] && ! id postgres >/dev/null 2>&1; then
    echo "bench-peers: no postgres user (the postgresql-15 package creates it)" >&2
    exit 1
fi
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import sqlite3' 2>/dev/null; then
    echo "bench-peers: installing python3-venv (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
PY=python3
if [[ $WANT_PG == 0 ]]; then
    : # psycopg only talks to PostgreSQL: the system python3 (sqlite3 included) runs the rest
elif [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import psycopg' 2>/dev/null; then
    echo "bench-peers: creating $VENV with psycopg[binary] (PyPI)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'psycopg[binary]>=3.1'
fi
[[ $WANT_PG == 1 ]] && PY=$VENV/bin/python
if [[ $SKIP_BUILD == 0 ]]; then
    # Two commands: built together, cargo would unify the loadgen's dev-dependency
    # features (test failpoints) into the daemon (README, "HTTP (load generator)").
    cargo build --release --bin stele
    cargo build --release --example loadgen
fi
for f in "$STELE" "$LOADGEN"; do
    [[ -x $f ]] || { echo "bench-peers: $f missing (run without --skip-build)" >&2; exit 1; }
done
"$PY" scripts/peers/bench.py "$@"
