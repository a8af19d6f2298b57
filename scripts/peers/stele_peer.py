"""Stele in the peer benchmark: a fresh `stele serve` (embedded defaults, loopback, a
data directory under the run directory), NDJSON ingest of the workload in 1,000-event
requests over N keep-alive connections, /readyz watched during ingest, how long after
the last 201 the last event is found by a filter and by full text, bytes on disk, and
the query client (http.client keep-alive, answers parsed as JSON)."""

import http.client
import itertools
import json
import os
import re
import threading
import time
from urllib.parse import urlencode

from common import dir_bytes, iso_of_us, log, pct, spawn, stop

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Stele:
    def __init__(self, binary, data_dir, log_path, timed_query=None):
        """Starts `stele serve` and waits until it is ready. With `timed_query` (a path),
        times the start instead (self.start_times: seconds from the spawn until the
        daemon says where it listens, until /readyz first answers 200, and until
        `timed_query` first answers 200), polling every 10 ms."""
        self.data_dir = data_dir
        os.makedirs(data_dir, exist_ok=True)
        self.log_path = log_path
        t0 = time.perf_counter()
        self.proc = spawn([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
                          stdin=open(os.devnull), stdout=open(os.devnull, "w"),
                          stderr=open(log_path, "w"), env={**os.environ, "RUST_LOG": "info"})
        poll = 0.05 if timed_query is None else 0.01
        self.addr = self._wait_addr(poll)
        self.host, port = self.addr.rsplit(":", 1)
        self.port = int(port)
        if timed_query is None:
            self._wait_ready()
            return
        listening = time.perf_counter() - t0
        self._wait_ready(poll=0.01, tries=60_000)
        ready = time.perf_counter() - t0
        c = self.conn()
        while True:
            try:
                st, body = self.get(c, timed_query)
            except OSError:
                st, body, c = None, b"", self.conn()
            if st == 200:
                break
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"stele: {timed_query} not answered 600 s after a restart")
            time.sleep(0.01)
        first = time.perf_counter() - t0
        c.close()
        self.first_answer = json.loads(body)
        self.start_times = {"listening_s": round(listening, 3), "ready_s": round(ready, 3),
                            "first_query_s": round(first, 3)}

    def _wait_addr(self, poll=0.05, timeout=600):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"stele serve exited {self.proc.returncode}; see {self.log_path}")
            with open(self.log_path, errors="replace") as f:
                m = re.search(r"Listening on (\S+)", ANSI.sub("", f.read()))
            if m:
                return m.group(1).rstrip(".,")
            time.sleep(poll)
        raise RuntimeError(f"stele serve did not say where it listens; see {self.log_path}")

    def conn(self):
        # 600 s: a cold statistics question over 10,000,000 events stays well inside it.
        return http.client.HTTPConnection(self.host, self.port, timeout=600)

    def get(self, c, path):
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()

    def _wait_ready(self, poll=0.1, tries=1200):
        c = self.conn()
        for _ in range(tries):
            try:
                if self.get(c, "/readyz")[0] == 200:
                    return
            except OSError:
                c = self.conn()
            time.sleep(poll)
        raise RuntimeError("stele never became ready")

    def stop(self, grace=60):
        code = stop(self.proc, grace=grace)
        if code not in (0, None):
            log(f"stele exited {code} at shutdown; see {self.log_path}")
        return code

    def memory(self):
        """The daemon's memory from /proc/PID/status, in bytes: VmRSS (now), VmHWM (peak
        since the start or since reset_peak), RssAnon (heap) and RssFile (mapped files:
        the log's segments, tantivy's and sled's files)."""
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[k] = int(v.split()[0]) * 1024
        return out

    def reset_peak(self):
        """Sets VmHWM back to the current RSS (Linux: `5` into /proc/PID/clear_refs),
        so the next peak read is the peak of what follows; False when refused."""
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def reported_memory(self):
        """What the daemon itself reports of its bounded in-memory structures in /metrics
        (it reports their sizes, not their bounds)."""
        fams = {"stats_partials_bytes": "stele_stats_partials_bytes",
                "stats_partials_entries": "stele_stats_partials_entries",
                "intel_tracked_bytes": "stele_intel_tracked_bytes",
                "detector_tracked": "stele_detector_tracked",
                "archive_cache_bytes": "stele_archive_cache_bytes"}
        return {k: self.metric_sum(v) for k, v in fams.items()}

    def settle(self, max_s=300.0, window=2.0, busy=0.05):
        """Waits until the daemon is idle (under 5 % of a CPU over 2 s: background index
        merges done), as PostgreSQL is after its VACUUM and CHECKPOINT; the seconds waited."""
        tick = os.sysconf("SC_CLK_TCK")

        def cpu():
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick

        t0 = time.perf_counter()
        while time.perf_counter() - t0 < max_s:
            c0 = cpu()
            time.sleep(window)
            if (cpu() - c0) / window < busy:
                break
        return round(time.perf_counter() - t0, 1)

    def sizes(self):
        """Bytes on disk by top-level entry of the data directory (segments, sled, tantivy...)."""
        out = {}
        for e in sorted(os.listdir(self.data_dir)):
            p = os.path.join(self.data_dir, e)
            if e == "index" and os.path.isdir(p):
                # index/kv is sled, index/text is tantivy
                for sub in sorted(os.listdir(p)):
                    sp = os.path.join(p, sub)
                    name = {"kv": "sled", "text": "tantivy"}.get(sub, f"index/{sub}")
                    out[name] = dir_bytes(sp) if os.path.isdir(sp) else os.path.getsize(sp)
            else:
                out[e] = dir_bytes(p) if os.path.isdir(p) else os.path.getsize(p)
        # The writer zero-fills the active segment ahead of itself (README, "Performance"):
        # those blocks hold no event yet, so they are shown apart and not counted per event.
        if "segments" in out:
            durable = self.metric_sum("stele_segment_bytes")
            if durable is not None and durable < out["segments"]:
                out["zero_fill"] = out["segments"] - durable
                out["segments"] = durable
        return out

    def metric_sum(self, name):
        """The sum of a gauge family's samples in /metrics, or None."""
        c = self.conn()
        try:
            status, body = self.get(c, "/metrics")
        finally:
            c.close()
        if status != 200:
            return None
        total, seen = 0, False
        for line in body.decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += int(float(line.rsplit(" ", 1)[1]))
                seen = True
        return total if seen else None

    def ingest(self, path, conns, batch, probe, events, wait_s=3600):
        """Posts every line of `path` (`events` lines) in bodies of `batch` lines over
        `conns` connections; waits at most `wait_s` for the last event to be searchable.
        Also the rate in each tenth of the load (whether the ingest rate holds)."""
        lock = threading.Lock()
        f = open(path, "rb")
        lat, errors, last_ack = [], [], [0.0]
        posted = [0]
        tenths = []  # the times the acknowledged events passed each tenth of `events`

        def worker():
            c = self.conn()
            while True:
                with lock:
                    lines = list(itertools.islice(f, batch))
                if not lines or errors:
                    return
                body = b"".join(lines)
                t0 = time.perf_counter()
                c.request("POST", "/v1/events", body=body,
                          headers={"Content-Type": "application/x-ndjson"})
                r = c.getresponse()
                data = r.read()
                t1 = time.perf_counter()
                if r.status != 201:
                    errors.append(f"{r.status}: {data[:300]!r}")
                    return
                with lock:
                    lat.append(t1 - t0)
                    posted[0] += len(lines)
                    last_ack[0] = max(last_ack[0], t1)
                    while len(tenths) < 10 and posted[0] * 10 >= events * (len(tenths) + 1):
                        tenths.append(t1)

        watch = ReadyWatch(self)
        watch.start()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        f.close()
        if errors:
            watch.stop()
            raise RuntimeError(f"stele ingest refused: {errors[0]}")
        secs = last_ack[0] - t0
        watch.after = last_ack[0]
        seen = self.probe_visible(probe, last_ack[0], wait_s)
        # With several connections the file's last event need not be the last appended:
        # also wait for /readyz to report index lag 0 (everything acknowledged indexed).
        while watch.lag0_at is None and time.perf_counter() - last_ack[0] < wait_s:
            time.sleep(0.05)
        watch.stop()
        per_tenth = []
        for i, t in enumerate(tenths):
            n = events * (i + 1) // 10 - events * i // 10
            dt = t - (tenths[i - 1] if i else t0)
            per_tenth.append(round(n / dt, 1) if dt > 0 else None)
        return {
            "connections": conns, "events": posted[0], "seconds": round(secs, 3),
            "events_per_s": round(posted[0] / secs, 1),
            "request_p50_ms": round(pct(lat, 0.5) * 1e3, 2),
            "request_p99_ms": round(pct(lat, 0.99) * 1e3, 2),
            "searchable_filter_s": seen["filter"], "searchable_text_s": seen["text"],
            "index_lag0_s": round(watch.lag0_at - last_ack[0], 3)
            if watch.lag0_at is not None else None,
            "readyz_non200_seconds": len(watch.bad_seconds),
            "readyz_polls": watch.polls, "readyz_non200_first": watch.reasons,
            "events_per_s_by_tenth": per_tenth,
        }

    def probe_visible(self, probe, acked, timeout=3600):
        """Seconds from the last 201 until the last event is found by a filter
        (action + its exact µs time) and by full text (a word of it + its time)."""
        ts = probe["ts"]
        win = {"since": iso_of_us(ts), "until": iso_of_us(ts + 1), "limit": 1000}
        paths = {
            "filter": "/v1/events?" + urlencode({"action": probe["action"], **win}),
            "text": "/v1/search?" + urlencode({"q": f'"{probe["word"]}"', **win}),
        }
        found = {}
        c = self.conn()
        needle = json.dumps(probe["id"]).encode()
        while len(found) < len(paths):
            for k, p in paths.items():
                if k not in found:
                    st, body = self.get(c, p)
                    if st == 200 and needle in body:
                        found[k] = round(time.perf_counter() - acked, 3)
            if time.perf_counter() - acked > timeout:
                raise RuntimeError(f"the last event was not searchable within {timeout} s")
            time.sleep(0.01)
        return found

    def query_runner(self):
        c = self.conn()

        def run(q):
            t0 = time.perf_counter()
            c.request("GET", q.stele)
            r = c.getresponse()
            body = r.read()
            # The answer received, before the client decodes its JSON (reported apart).
            run.last_read_ms = (time.perf_counter() - t0) * 1e3
            if r.status != 200:
                raise RuntimeError(f"stele {q.name}: {r.status} {body[:300]!r}")
            return json.loads(body)
        run.last_read_ms = None
        return run


class ReadyWatch(threading.Thread):
    """Polls /readyz five times a second; remembers the seconds with a non-200, and
    when the index lag (`state.lag_events`) was first 0 after `after`."""

    def __init__(self, stele):
        super().__init__(daemon=True)
        self.stele, self.halt = stele, threading.Event()
        self.bad_seconds, self.polls, self.reasons = set(), 0, []
        self.after, self.lag0_at = None, None

    def run(self):
        c = self.stele.conn()
        t0 = time.monotonic()
        while not self.halt.is_set():
            try:
                st, body = self.stele.get(c, "/readyz")
            except OSError as e:
                st, body, c = None, str(e).encode(), self.stele.conn()
            self.polls += 1
            now = time.perf_counter()
            if self.after is not None and self.lag0_at is None and now >= self.after:
                try:
                    if json.loads(body)["state"]["lag_events"] == 0:
                        self.lag0_at = now
                except (ValueError, KeyError, TypeError):
                    pass
            if st != 200:
                self.bad_seconds.add(int(time.monotonic() - t0))
                if len(self.reasons) < 3:
                    self.reasons.append(f"{st}: {body[:300].decode(errors='replace')}")
            self.halt.wait(0.2)

    def stop(self):
        self.halt.set()
        self.join()
