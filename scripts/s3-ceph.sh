#!/usr/bin/env bash
# A real S3 server for tests: a one-node Ceph cluster (mon + mgr + one
# bluestore OSD on a sparse file) with its RADOS Gateway, all on loopback,
# all under one directory. Debian 12's packages (Ceph 16.2 "pacific").
#
#   scripts/s3-ceph.sh start DIR    bring it up (or bring it back up), wait
#                                   until an S3 PUT/GET works, write DIR/s3.env
#   scripts/s3-ceph.sh stop DIR     stop every daemon it started; keep the data
#   scripts/s3-ceph.sh purge DIR    stop, then delete DIR
#   scripts/s3-ceph.sh status DIR   which daemons run; exit 1 if any is down
#
# DIR/s3.env (shell and dotenv syntax):
#   S3_ENDPOINT=http://127.0.0.1:PORT  S3_ACCESS_KEY=...  S3_SECRET_KEY=...
#   S3_REGION=us-east-1 (radosgw accepts any region name for SigV4)
#
# Environment (all optional; a cluster keeps the ports and store it was
# made with, in DIR/settings):
#   S3_CEPH_RGW_PORT   radosgw's port             (default 7480)
#   S3_CEPH_MON_PORT   the monitor's (msgr2) port (default 3300); the OSD
#                      takes free ports in 6800-7300, as Ceph does
#   S3_CEPH_STORE      bluestore | memstore       (default bluestore, on a
#                      sparse 10 GiB file DIR/osd.0/block)
#   S3_CEPH_NO_MGR=1   start no ceph-mgr (saves ~300 MB of RSS; radosgw does
#                      not need it, `ceph -s` then warns "no active mgr")
#   S3_CEPH_TIMEOUT    seconds to wait for each step (default 120)
#
# Idempotent: `start` on a running cluster only checks S3 and prints
# s3.env; `start` on a stopped one starts its daemons on the same data (and
# the same keys); `stop` on a stopped one does nothing. It installs missing
# Debian packages itself (apt-get, with sudo when not root). Everything
# listens on 127.0.0.1 only; everything it writes is under DIR. Inspect the
# cluster with: ceph --conf DIR/ceph.conf -s
set -euo pipefail

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
DIR=$2
case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac

RGW_PORT=${S3_CEPH_RGW_PORT:-7480}
MON_PORT=${S3_CEPH_MON_PORT:-3300}
STORE=${S3_CEPH_STORE:-bluestore}
TIMEOUT=${S3_CEPH_TIMEOUT:-120}
CONF=$DIR/ceph.conf
# a cluster keeps the ports and store it was made with
# shellcheck disable=SC1091
[ -s "$DIR/settings" ] && . "$DIR/settings"
DAEMONS="mon.a mgr.x osd.0 client.rgw.a"

log() { printf '[s3-ceph %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck disable=SC2154 # rc is set inside the trap
trap 'rc=$?; [ $rc = 0 ] || [ "$cmd" = status ] || log "failed (exit $rc) at line $LINENO: $BASH_COMMAND; logs in $DIR/log"' EXIT

ceph_() { timeout 30 ceph --conf "$CONF" "$@"; }

ensure_packages() {
    local missing=()
    local p
    for p in ceph-mon ceph-osd ceph-mgr radosgw ceph-common curl uuid-runtime; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]} (apt-get)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    # refresh the lists only when apt does not know the packages yet
    apt-cache show "${missing[@]}" >/dev/null 2>&1 ||
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

pid_of() { # pid of a running daemon by its name (mon.a ...), else nothing
    local f=$DIR/run/$1.pid pid
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    # the pid file could be stale and the pid reused: check the command line
    if [ -r /proc/"$pid"/cmdline ] && tr '\0' ' ' </proc/"$pid"/cmdline | grep -q -- "--conf $CONF"; then
        echo "$pid"
    fi
}

wait_for() { # wait_for WHAT CMD...: retry CMD until it succeeds or TIMEOUT
    local what=$1 t0=$SECONDS
    shift
    until "$@" >/dev/null 2>&1; do
        if [ $((SECONDS - t0)) -ge "$TIMEOUT" ]; then
            log "timed out after ${TIMEOUT}s waiting for $what; logs in $DIR/log"
            tail -n 20 "$DIR"/log/*.log >&2 || true
            exit 1
        fi
        sleep 0.5
    done
}

write_conf() {
    local fsid=$1
    cat >"$CONF" <<EOF
# written by scripts/s3-ceph.sh: a one-node test cluster, loopback only
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $DIR/keyring
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = true
mon cluster log file = $DIR/log/cluster.log
crash dir = $DIR/crash
# one OSD: pools of one replica, no failure domain, few placement groups
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
mon allow pool size one = true
mon warn on pool no redundancy = false
mon allow pool delete = true
# faster map updates (pool creation by radosgw waits on them)
paxos propose interval = 0.1
paxos min wait = 0.01
mon data avail warn = 2
mon data avail crit = 1
mon osd full ratio = .99
mon osd backfillfull ratio = .99
mon osd nearfull ratio = .99
osd failsafe full ratio = .999
# small memory
mon memory target = 268435456
osd memory target = 939524096
bluestore cache autotune = false
bluestore cache size = 67108864
rocksdb cache size = 33554432
osd op num shards = 1
osd op num threads per shard = 2
# a radosgw that died leaves watches that block the next one's first
# bucket creation until they time out (default 30 s)
osd client watch timeout = 10
# no cephadm, no crash module, no telemetry
mgr initial modules = iostat
mgr standby modules = false

[mon]
mon data = $DIR/mon.\$id

[mgr]
mgr data = $DIR/mgr.\$id
keyring = $DIR/mgr.\$id/keyring

[osd]
osd data = $DIR/osd.\$id
keyring = $DIR/osd.\$id/keyring
osd objectstore = $STORE
bluestore block create = true
bluestore block size = 10737418240
bluestore fsck on mount = false
memstore device bytes = 2147483648

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $DIR/rgw.a
keyring = $DIR/rgw.a/keyring
rgw dns name = 127.0.0.1
rgw enable usage log = false
rgw thread pool size = 64
# (no "rgw lc debug interval": it keeps lifecycle workers busy, and radosgw
# then takes 5-15 s to stop)
EOF
}

bootstrap() {
    log "creating a new cluster in $DIR ($STORE)"
    mkdir -p "$DIR"/{run,log,crash,mon.a,mgr.x,osd.0,rgw.a}
    local fsid
    fsid=$(uuidgen)
    write_conf "$fsid"
    printf 'RGW_PORT=%s\nMON_PORT=%s\nSTORE=%s\n' "$RGW_PORT" "$MON_PORT" "$STORE" >"$DIR/settings"
    ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool "$DIR/keyring" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
    ceph-mon --conf "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" 2>>"$DIR/log/mkfs.log"
    start_mon
    # the OSD: an id, a data directory and key, then its key in the cluster
    local uuid id
    uuid=$(uuidgen)
    id=$(ceph_ osd new "$uuid")
    [ "$id" = 0 ] || die "expected osd id 0, got $id"
    ceph-osd --conf "$CONF" -i 0 --no-mon-config --mkfs --mkkey --osd-uuid "$uuid" 2>>"$DIR/log/mkfs.log" >/dev/null
    ceph_ auth add osd.0 osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
        -i "$DIR/osd.0/keyring" >/dev/null 2>&1
    ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
        -o "$DIR/mgr.x/keyring" 2>/dev/null
    ceph_ auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' mgr 'allow rw' \
        -o "$DIR/rgw.a/keyring" 2>/dev/null
    touch "$DIR/.bootstrapped"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_mon() {
    [ -n "$(pid_of mon.a)" ] && return 0
    port_free "$MON_PORT" || die "127.0.0.1:$MON_PORT is taken: set S3_CEPH_MON_PORT"
    ceph-mon --conf "$CONF" -i a 9>&- 2>>"$DIR/log/daemons.err"
    log "waiting for the monitor"
    wait_for "the monitor" ceph_ mon stat
}

start_daemons() {
    start_mon
    if [ "${S3_CEPH_NO_MGR:-0}" != 1 ] && [ -z "$(pid_of mgr.x)" ]; then
        ceph-mgr --conf "$CONF" -i x --keyring "$DIR/mgr.x/keyring" 9>&- 2>>"$DIR/log/daemons.err"
    fi
    if [ -z "$(pid_of osd.0)" ]; then
        ceph-osd --conf "$CONF" -i 0 --keyring "$DIR/osd.0/keyring" 9>&- 2>>"$DIR/log/daemons.err"
    fi
    log "waiting for osd.0"
    wait_for "osd.0 up" sh -c "ceph --conf '$CONF' osd dump 2>/dev/null | grep -q '^osd.0 up'"
    if [ -z "$(pid_of client.rgw.a)" ]; then
        port_free "$RGW_PORT" || die "127.0.0.1:$RGW_PORT is taken: set S3_CEPH_RGW_PORT"
        radosgw --conf "$CONF" -n client.rgw.a --keyring "$DIR/rgw.a/keyring" 9>&- 2>>"$DIR/log/daemons.err"
    fi
    log "waiting for radosgw"
    wait_for "radosgw on 127.0.0.1:$RGW_PORT" curl -sf -o /dev/null "http://127.0.0.1:$RGW_PORT/"
}

ensure_user() {
    if [ ! -s "$DIR/s3.env" ]; then
        local ak sk
        ak=$(od -An -tx1 -N10 /dev/urandom | tr -d ' \n' | tr a-f A-F)
        sk=$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')
        wait_for "radosgw-admin user create" timeout 60 radosgw-admin --conf "$CONF" \
            -n client.admin user create --uid=stele --display-name=stele \
            --access-key="$ak" --secret-key="$sk"
        cat >"$DIR/s3.env.tmp" <<EOF
S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
S3_ACCESS_KEY=$ak
S3_SECRET_KEY=$sk
S3_REGION=us-east-1
EOF
        mv "$DIR/s3.env.tmp" "$DIR/s3.env"
    fi
}

s3curl() { # curl with SigV4; radosgw wants x-amz-content-sha256 on every request
    local hash=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 # sha256("")
    [ -n "${BODY:-}" ] && hash=$(printf %s "$BODY" | sha256sum | cut -d' ' -f1)
    curl -sf --aws-sigv4 "aws:amz:$S3_REGION:s3" -u "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
        -H "x-amz-content-sha256: $hash" ${BODY:+--data-binary "$BODY"} "$@"
}

s3_check() { # create a bucket, PUT, GET and compare, DELETE
    # shellcheck disable=SC1091
    . "$DIR/s3.env"
    local b=$S3_ENDPOINT/s3-ceph-ready got
    BODY='' s3curl -X PUT "$b" -o /dev/null || BODY='' s3curl -I "$b" -o /dev/null || return 1
    BODY="ready $(date +%s%N)"
    s3curl -X PUT "$b/probe" -o /dev/null || return 1
    got=$(BODY='' s3curl "$b/probe") || return 1
    [ "$got" = "$BODY" ] || return 1
    BODY='' s3curl -X DELETE "$b/probe" -o /dev/null || return 1
    BODY='' s3curl -X DELETE "$b" -o /dev/null # leave the account empty
}

do_start() {
    ensure_packages
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"
    flock -w "$TIMEOUT" 9 || die "another s3-ceph.sh holds $DIR/.lock"
    local t0=$SECONDS
    if [ ! -e "$DIR/.bootstrapped" ]; then
        # a half-made cluster from an interrupted start: begin again
        stop_daemons
        find "$DIR" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
        bootstrap
    fi
    start_daemons
    ensure_user
    log "waiting for an S3 PUT/GET round trip"
    wait_for "an S3 PUT/GET round trip" s3_check
    log "S3 ready in $((SECONDS - t0))s: $DIR/s3.env"
    cat "$DIR/s3.env"
}

running() { # a zombie (exited, not yet reaped by PID 1) counts as stopped
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

stop_pids() { # stop_pids SECONDS PID...: SIGTERM, wait, then SIGKILL
    local secs=$1 pid alive
    shift
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 $((secs * 10))); do
        alive=0
        for pid in "$@"; do running "$pid" && alive=1; done
        [ $alive = 0 ] && return 0
        sleep 0.1
    done
    for pid in "$@"; do running "$pid" && kill -KILL "$pid" 2>/dev/null; done
    for pid in "$@"; do
        for _ in $(seq 1 50); do running "$pid" || break; sleep 0.1; done
    done
}

stop_daemons() {
    local d pid pids=()
    # radosgw first, and let it finish: a radosgw that is killed leaves its
    # watches on the control objects, and the next radosgw's first bucket
    # creation then waits for them to time out (osd client watch timeout)
    pid=$(pid_of client.rgw.a)
    [ -n "$pid" ] && stop_pids 15 "$pid"
    for d in osd.0 mgr.x mon.a; do
        pid=$(pid_of "$d")
        [ -n "$pid" ] && pids+=("$pid")
    done
    # the others take ~2 s; bluestore and the monitor's RocksDB survive a kill
    [ ${#pids[@]} -gt 0 ] && stop_pids 5 "${pids[@]}"
    rm -f "$DIR"/run/*.pid "$DIR"/run/*.asok
}

do_status() {
    local d pid down=0
    for d in $DAEMONS; do
        pid=$(pid_of "$d")
        if [ -n "$pid" ]; then
            printf '%-14s pid %-8s rss %s kB\n' "$d" "$pid" "$(awk '/VmRSS/{print $2}' /proc/"$pid"/status)"
        else
            printf '%-14s down\n' "$d"
            [ "$d" = mgr.x ] && [ "${S3_CEPH_NO_MGR:-0}" = 1 ] || down=1
        fi
    done
    return $down
}

case $cmd in
start) do_start ;;
stop) [ -d "$DIR" ] && stop_daemons; log "stopped" ;;
purge) [ -d "$DIR" ] && stop_daemons && rm -rf "$DIR"; log "purged" ;;
status) do_status ;;
*) usage ;;
esac
