"""Shared helpers of the peer benchmark: logging, time conversions, percentiles,
child processes (started and always stopped by their own pid), directory sizes.

Owns nothing about any one system; every other module imports from here."""

import datetime as _dt
import os
import signal
import subprocess
import sys
import time

EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
HOUR_US = 3_600_000_000
DAY_US = 86_400_000_000
SEVERITIES = ["debug", "info", "notice", "warning", "error", "critical"]
SEV_RANK = {s: i for i, s in enumerate(SEVERITIES)}

# Pids of the children still running: written to a file the shell's trap reads,
# so that even a killed driver leaves no daemon behind.
_PIDFILE = None
_CHILDREN = {}


def log(msg):
    print(f"[bench-peers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def us_of_iso(s):
    """Unix µs of an RFC 3339 time (as Stele writes it: `...T..:..:..[.ffffff]Z`)."""
    d = _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    delta = d - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def dt_of_us(us):
    return EPOCH + _dt.timedelta(microseconds=us)


def iso_of_us(us):
    return dt_of_us(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pct(values, q):
    """The q-quantile (0..1) of `values` by nearest rank."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q * len(s) + 0.5)) - 1))
    return s[k]


def dir_bytes(path):
    """Bytes the files under `path` occupy on disk (allocated blocks, as du counts:
    a file zero-filled ahead of its writer counts whole)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def set_pidfile(path):
    global _PIDFILE
    _PIDFILE = path
    _write_pids()


def _write_pids():
    if _PIDFILE:
        with open(_PIDFILE, "w") as f:
            f.write("".join(f"{p}\n" for p in _CHILDREN))


def spawn(args, **kw):
    """Starts a child in its own process group and remembers its pid."""
    p = subprocess.Popen(args, start_new_session=True, **kw)
    _CHILDREN[p.pid] = p
    _write_pids()
    return p


def stop(p, grace=30.0):
    """SIGTERM, then SIGKILL after `grace` seconds; forgets the pid."""
    if p is None:
        return None
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    _CHILDREN.pop(p.pid, None)
    _write_pids()
    return p.returncode


def stop_all():
    for p in list(_CHILDREN.values()):
        stop(p, grace=10.0)


def run(args, **kw):
    """Runs a command to completion, failing loudly."""
    r = subprocess.run(args, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} exited {r.returncode}")
    return r
