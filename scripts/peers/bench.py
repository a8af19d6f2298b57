"""The peer benchmark's driver (run through scripts/bench-peers.sh): generates the
workload once, loads it into Stele, PostgreSQL 15 and SQLite one after the other (each
started here and stopped here, in the run directory under target/), runs the same 20
queries against each with the same Python client, cross-checks every answer, and writes
the Markdown table and raw JSON. Exit 1 on any mismatch or failure."""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import queries as Q  # noqa: E402
import report  # noqa: E402
import workload  # noqa: E402
from common import log, pct, set_pidfile, stop_all  # noqa: E402

EVENT_BYTES = 350  # EventGen's sized(): ≈600 bytes of JSON per event


def options():
    a = argparse.ArgumentParser(description=__doc__)
    a.add_argument("--events", type=int, help="events (default 1,000,000; --quick 100,000)")
    a.add_argument("--quick", action="store_true", help="100,000 events, 10 repetitions")
    a.add_argument("--seed", type=int, default=0x57E1E)
    a.add_argument("--reps", type=int, help="timed repetitions per query (default 20, quick 10)")
    a.add_argument("--single-secs", type=float, help="seconds of single-event load (10; quick 5)")
    a.add_argument("--out", default="target/bench-peers")
    a.add_argument("--stele", default="target/release/stele")
    a.add_argument("--loadgen", default="target/release/examples/loadgen")
    a.add_argument("--systems", default="stele,postgres,sqlite",
                   help="comma-separated among stele,postgres,sqlite (default all three; "
                        "stele is always run; with stele alone nothing is cross-checked, "
                        "Stele's answers are checked for sanity)")
    a.add_argument("--stele-loads", default="1,4",
                   help="batched-ingest connection counts, each into a fresh daemon "
                        "(default 1,4); 1 is required: that daemon answers the queries; "
                        "the single-event load runs on the 4-connection daemon, so only with 4")
    a.add_argument("--skip-build", action="store_true", help="(handled by bench-peers.sh)")
    a.add_argument("--preflight", action="store_true",
                   help="(bench-peers.sh) check the options and the free disk space, then exit")
    o = a.parse_args()
    o.events = o.events or (100_000 if o.quick else 1_000_000)
    o.reps = o.reps or (10 if o.quick else 20)
    o.single_secs = o.single_secs or (5.0 if o.quick else 10.0)
    names = {"stele": "stele", "postgres": "pg", "pg": "pg", "sqlite": "sqlite"}
    asked = [x.strip().lower() for x in o.systems.split(",") if x.strip()]
    bad = [x for x in asked if x not in names]
    if bad or "stele" not in asked:
        a.error(f"--systems {o.systems!r}: a comma-separated list among stele,postgres,sqlite "
                "that includes stele")
    o.peers = [k for k in ("pg", "sqlite") if k in {names[x] for x in asked}]
    try:
        loads = [int(x) for x in o.stele_loads.split(",") if x.strip()]
    except ValueError:
        loads = []
    if 1 not in loads or any(n < 1 for n in loads) or len(set(loads)) != len(loads):
        a.error(f"--stele-loads {o.stele_loads!r}: distinct connection counts, 1 among them")
    # The other loads first (as before: 4, then 1), the queried 1-connection daemon last.
    o.loads = [n for n in loads if n != 1] + [1]
    # How long the loader waits for the last event to be searchable, and for the daemon
    # to be idle after its load: an hour (5 min idle) or more at 10,000,000 events.
    o.wait_s = max(3600, o.events // 1000)
    o.settle_s = max(300, o.events // 10_000)
    return o


# Bytes of disk an event needs at the peak (measured at 1,000,000 events): the NDJSON
# workload ≈ 600, PostgreSQL's COPY file ≈ 410, Stele's data ≈ 1,130 (+ the merges'
# transient copies); the systems run one at a time and each is deleted after its turn.
DISK_PER_EVENT = 2500


def check_disk(o, work):
    """Fails early when the output directory's filesystem has less free space than the
    run needs (2.5 KB an event, less the workload files already there to be reused)."""
    need = DISK_PER_EVENT * o.events
    have = 0
    nd = os.path.join(work, f"events-{o.events}-{o.seed}.ndjson")
    for f in (nd, nd + ".copy"):
        if os.path.exists(f):
            have += os.path.getsize(f)
    probe = work
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe)
    free = st.f_bavail * st.f_frsize
    gb = lambda b: f"{b / 1e9:.1f} GB"  # noqa: E731
    msg = (f"{o.events:,} events need about {gb(need)} ({DISK_PER_EVENT} bytes an event: "
           f"workload files, then one system's data at a time)"
           + (f", of which {gb(have)} of workload files are already there" if have else "")
           + f"; {gb(free)} free in {probe}")
    log(f"disk: {msg}")
    if free + have < need:
        raise SystemExit(f"bench-peers: not enough disk space: {msg}. Free {gb(need - have - free)} "
                         f"more, or point --out at a larger filesystem.")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(o, work):
    """The workload file, the COPY file (only when PostgreSQL runs) and the query values
    (reused when unchanged)."""
    nd = os.path.join(work, f"events-{o.events}-{o.seed}.ndjson")
    workload.generate(o.loadgen, nd, o.events, o.seed, EVENT_BYTES)
    cp, pj = nd + ".copy", nd + ".params.json"
    need_cp = "pg" in o.peers
    cp_ok = not need_cp or (os.path.exists(cp) and os.path.getmtime(cp) >= os.path.getmtime(nd))
    if not (cp_ok and os.path.exists(pj)
            and os.path.getmtime(pj) >= os.path.getmtime(nd)):
        log("workload: one pass for the " + ("COPY file and the " if need_cp else "")
            + "query values")
        t0 = time.time()
        params = workload.scan(nd, cp if need_cp else None, o.events, o.seed)
        with open(pj, "w") as f:
            json.dump(params, f, indent=1)
        log(f"workload: scanned in {time.time() - t0:.0f} s")
    with open(pj) as f:
        return nd, cp, json.load(f)


def time_queries(system, runner, norm, qs, reps, warm=3):
    out, answers = {}, {}
    for q in qs:
        for _ in range(warm):
            runner(q)
        lat, read = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            raw = runner(q)
            lat.append((time.perf_counter() - t0) * 1e3)
            if getattr(runner, "last_read_ms", None) is not None:
                read.append(runner.last_read_ms)
        answers[q.name] = norm(q, raw)
        out[q.name] = {"p50_ms": round(pct(lat, 0.5), 3), "p95_ms": round(pct(lat, 0.95), 3)}
        if read:
            out[q.name]["p50_ms_before_json_decoding"] = round(pct(read, 0.5), 3)
    log(f"{system}: {len(qs)} queries × {reps} timed")
    return out, answers


def run_stele(o, run_dir, nd, params, qs):
    from stele_peer import Stele
    res = {}
    for conns in o.loads:
        if conns == 1:
            break
        # Several connections first, each into a fresh daemon deleted after its turn; the
        # 4-connection one then takes the single-event load too.
        d = Stele(o.stele, os.path.join(run_dir, f"stele{conns}"),
                  os.path.join(run_dir, f"stele{conns}.log"))
        try:
            log(f"stele: ingest over {conns} connections")
            res[f"ingest_{conns}"] = d.ingest(nd, conns, 1000, params["probe"], o.events,
                                              o.wait_s)
            log(f"stele: {res[f'ingest_{conns}']}")
            if conns == 4:
                log("stele: single events, 64 connections (loadgen single)")
                res["single"] = single(o, d)
        finally:
            d.stop()
            shutil.rmtree(d.data_dir, ignore_errors=True)
    d = Stele(o.stele, os.path.join(run_dir, "stele1"), os.path.join(run_dir, "stele1.log"))
    mem = res["memory"] = {}
    try:
        log("stele: ingest over 1 connection (this daemon answers the queries)")
        res["ingest_1"] = d.ingest(nd, 1, 1000, params["probe"], o.events, o.wait_s)
        log(f"stele: {res['ingest_1']}")
        mem["after_ingest"] = d.memory()
        res["settle_s"] = d.settle(max_s=o.settle_s)
        log(f"stele: idle {res['settle_s']} s after the index caught up")
        # The peak through the load and the index merges that follow it.
        mem["load"] = d.memory()
        res["sizes"] = d.sizes()
        res["sizes"]["total"] = sum(v for k, v in res["sizes"].items() if k != "zero_fill")
        mem["peak_reset"] = d.reset_peak()
        res["queries"], answers = time_queries("stele", d.query_runner(), Q.norm_stele, qs, o.reps)
        mem["queries"] = d.memory()
        d.settle(max_s=60)
        mem["rest"] = d.memory()
        mem["reported"] = d.reported_memory()
        log(f"stele: memory {mem}")
        # Restart to ready: a clean stop (SIGTERM, waited for), then the same data directory.
        first = qs[1]
        t0 = time.perf_counter()
        code = d.stop(grace=600)
        res["restart"] = {"stop_s": round(time.perf_counter() - t0, 3), "exit_code": code,
                          "first_query": first.name}
        d = Stele(o.stele, d.data_dir, os.path.join(run_dir, "stele1-restart.log"),
                  timed_query=first.stele)
        res["restart"].update(d.start_times)
        res["restart"]["first_answer_same"] = (Q.norm_stele(first, d.first_answer)
                                               == answers[first.name])
        mem["restarted"] = d.memory()
        log(f"stele: restart {res['restart']}")
    finally:
        d.stop()
    shutil.rmtree(d.data_dir, ignore_errors=True)
    return res, answers


def single(o, d):
    out = subprocess.run([o.loadgen, "single", "--addr", d.addr, "--seed", str(o.seed + 1),
                          "--duration", str(o.single_secs), "--warmup", "2",
                          "--event-bytes", str(EVENT_BYTES), "--json"],
                         capture_output=True, text=True, check=True).stdout
    j = json.loads(out.strip().splitlines()[-1])
    lat = j["request_latency"]
    return {"clients": 64, "per_s": j["requests_per_s"],
            "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"]}


def run_pg(o, run_dir, cp, qs):
    from pg_peer import Postgres
    root = os.path.join(run_dir, "pg")
    pg = Postgres(root, free_port())
    try:
        res = {"load": pg.load(cp)}
        res["sizes"] = pg.sizes()
        res["queries"], answers = time_queries("postgres", pg.query_runner(), Q.norm_sql, qs,
                                               o.reps)
        bench_dir = os.path.join(root, "pgbench")
        os.makedirs(bench_dir, exist_ok=True)
        log("postgres: single-row INSERTs, 64 connections (pgbench)")
        res["single"] = pg.single_inserts(64, o.single_secs, bench_dir)
    finally:
        pg.stop()
    shutil.rmtree(root, ignore_errors=True)
    return res, answers


def run_sqlite(o, run_dir, nd, qs):
    from sqlite_peer import Lite
    root = os.path.join(run_dir, "sqlite")
    li = Lite(root)
    try:
        res = {"load": li.load(nd)}
        res["sizes"] = li.sizes()
        res["queries"], answers = time_queries("sqlite", li.query_runner(), Q.norm_sql, qs,
                                               o.reps)
        with open(nd) as f:
            line = f.readline()
        res["single"] = li.single_inserts(o.single_secs, line)
    finally:
        li.close()
    shutil.rmtree(root, ignore_errors=True)
    return res, answers


NOTES = [
    "How the answers were made equal (every query's answer is cross-checked; a mismatch fails the run):",
    "- order: Stele pages by (event time, seq), newest first descending on both, oldest first "
    "ascending (src/index/text/timed.rs); the tables carry `seq` = the event's line in the "
    "workload, which is Stele's arrival order with the one ingest connection of the queried "
    "daemon, and SQL orders by `ts, seq` the same way; `since` inclusive, `until` exclusive. "
    "The workload has 2 % of events arriving up to an hour late and 1 % sharing the previous "
    "event's microsecond, so both the time order and the tie-break are exercised.",
    "- full text: Stele's bare words search description, entity_name, user_agent, user_name, "
    "changes (`field old new`) and metadata values with tantivy's default tokenizer (runs of "
    "alphanumerics, lower-cased); PostgreSQL indexes the same fields (to_tsvector('simple') of "
    "the text columns || jsonb_to_tsvector('simple', changes / metadata, [string, numeric, "
    "boolean])), SQLite a contentless FTS5 table over the same text (unicode61, no diacritic "
    "folding). PostgreSQL's parser keeps paths, hosts, e-mails and hyphenated words whole, "
    "so the words and the phrase are drawn only from words that never touch such a character "
    "anywhere in the data (only whitespace or , ( ) [ ] \" beside them), where all three "
    "tokenizers cut alike.",
    "- top 10 users: counts compared in order, names above the last count (ties at the cut may "
    "differ); facets compared as sets of (value, count).",
    "- speedup = best peer's p50 ÷ Stele's p50 (> 1: Stele faster). Client: one Python "
    "process for all three (http.client keep-alive; psycopg 3; sqlite3), 3 warm-ups then the "
    "timed repetitions, one query at a time. SQLite's single-event figure is one writer "
    "(SQLite serializes writers). Each system is queried at rest: Stele once its daemon is "
    "idle (index merges done after the load), PostgreSQL after VACUUM (ANALYZE) and a "
    "CHECKPOINT, SQLite after ANALYZE and a WAL checkpoint.",
]


NOTES_STELE = [
    "- restart to ready: after the queries the queried daemon is stopped cleanly (SIGTERM, "
    "waited for), then `stele serve` is started again on the same data directory; the seconds "
    "from the spawn until `/readyz` first answers 200 and until query 2 first answers 200 "
    "(polled every 10 ms), and whether that answer equals the one before the restart.",
    "- memory: the daemon's /proc/PID/status. Load: VmHWM (peak RSS) from the start through "
    "the ingest and the index merges until idle; queries: VmHWM reset before the queries "
    "(`5` into /proc/PID/clear_refs), read after them; at rest: VmRSS once idle after the "
    "queries. RSS counts the mapped log, tantivy and sled files as well (RssFile, which the "
    "kernel can drop); RssAnon is the heap. The daemon reports the sizes of its bounded "
    "in-memory structures in /metrics (stele_stats_partials_bytes: an LRU bounded at 64 MiB, "
    "README \"Statistics from per-segment partials\"; stele_intel_tracked_bytes: at most "
    "runs_max + batches_max runs; stele_archive_cache_bytes is on disk), not their bounds.",
]

NOTES_ALONE = [
    "Stele alone (`--systems stele`): no peer, so nothing is cross-checked; Stele's answers "
    "are checked for sanity instead (a run fails on any): the count of everything equals the "
    "events loaded, get by id returns that id, every page is non-empty and within its limit, "
    "the top users' counts do not increase, the 30-day histogram's total equals the facet's "
    "total and the 30-day tenant + action count is at most that action's facet count, and the "
    "first query after the restart answers as before it.",
    "- Client: one Python process (http.client keep-alive), 3 warm-ups then the timed "
    "repetitions, one query at a time, once the daemon is idle (index merges done after "
    "the load).",
]


def main():
    o = options()
    out = os.path.abspath(o.out)
    work, run_dir = os.path.join(out, "work"), os.path.join(out, "run")
    if o.preflight or not os.environ.get("BENCH_PEERS_PREFLIGHT_DONE"):
        check_disk(o, work)
    if o.preflight:
        return 0
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(work, exist_ok=True)
    os.makedirs(run_dir, exist_ok=True)
    set_pidfile(os.path.join(out, "children.pids"))
    started = time.time()
    try:
        nd, cp, params = prepare(o, work)
        qs = Q.build(params)
        log(f"query values: {json.dumps({k: v for k, v in params.items() if k != 'words'})}")
        r = {"config": {"events": o.events, "seed": o.seed, "quick": o.quick, "reps": o.reps,
                        "systems": ["stele", *o.peers], "stele_loads": o.loads,
                        "warmups": 3, "single_secs": o.single_secs, "cpus": os.cpu_count(),
                        "loadavg_start": os.getloadavg()[0],
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
             "params": params}
        answers = {}
        r["stele"], answers["stele"] = run_stele(o, run_dir, nd, params, qs)
        if "pg" in o.peers:
            r["pg"], answers["pg"] = run_pg(o, run_dir, cp, qs)
        if "sqlite" in o.peers:
            r["sqlite"], answers["sqlite"] = run_sqlite(o, run_dir, nd, qs)
    finally:
        stop_all()
    bad = report.cross_check(qs, answers) + report.sanity(qs, answers["stele"], params, r["stele"])
    bad_names = {n for n, _ in bad}
    r["queries"] = []
    for i, q in enumerate(qs, 1):
        r["queries"].append({
            "n": i, "name": q.name, "label": q.label, "agree": q.name not in bad_names,
            "answer": report.answer_text(q, answers["stele"][q.name]),
            "stele_url": q.stele, "pg_sql": q.pg[0], "pg_args": q.pg[1],
            "sqlite_sql": q.lite[0], "sqlite_args": q.lite[1],
            **{s: r[s]["queries"][q.name] for s in ("stele", *o.peers)}})
    r["mismatches"] = [t for _, t in bad]
    r["config"]["loadavg_end"] = os.getloadavg()[0]
    r["notes"] = (NOTES if o.peers else NOTES_ALONE) + NOTES_STELE
    r["wall_seconds"] = round(time.time() - started, 1)
    md = report.table(r) + report.appendix(r)
    report.write(r, out, md)
    print(md)
    print(f"(wall time {r['wall_seconds']:.0f} s; results in {out}/results.md and results.json)")
    if bad:
        for _, t in bad:
            print(f"MISMATCH {t}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
