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
    a.add_argument("--skip-build", action="store_true", help="(handled by bench-peers.sh)")
    o = a.parse_args()
    o.events = o.events or (100_000 if o.quick else 1_000_000)
    o.reps = o.reps or (10 if o.quick else 20)
    o.single_secs = o.single_secs or (5.0 if o.quick else 10.0)
    return o


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(o, work):
    """The workload file, the COPY file and the query values (reused when unchanged)."""
    nd = os.path.join(work, f"events-{o.events}-{o.seed}.ndjson")
    workload.generate(o.loadgen, nd, o.events, o.seed, EVENT_BYTES)
    cp, pj = nd + ".copy", nd + ".params.json"
    if not (os.path.exists(cp) and os.path.exists(pj)
            and os.path.getmtime(pj) >= os.path.getmtime(nd)):
        log("workload: one pass for the COPY file and the query values")
        t0 = time.time()
        params = workload.scan(nd, cp, o.events, o.seed)
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
    # Four connections first, on a daemon that then takes the single-event load too.
    d = Stele(o.stele, os.path.join(run_dir, "stele4"), os.path.join(run_dir, "stele4.log"))
    try:
        log("stele: ingest over 4 connections")
        res["ingest_4"] = d.ingest(nd, 4, 1000, params["probe"])
        log(f"stele: {res['ingest_4']}")
        log("stele: single events, 64 connections (loadgen single)")
        out = subprocess.run([o.loadgen, "single", "--addr", d.addr, "--seed", str(o.seed + 1),
                              "--duration", str(o.single_secs), "--warmup", "2",
                              "--event-bytes", str(EVENT_BYTES), "--json"],
                             capture_output=True, text=True, check=True).stdout
        j = json.loads(out.strip().splitlines()[-1])
        lat = j["request_latency"]
        res["single"] = {"clients": 64, "per_s": j["requests_per_s"],
                         "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"]}
    finally:
        d.stop()
    shutil.rmtree(d.data_dir, ignore_errors=True)
    d = Stele(o.stele, os.path.join(run_dir, "stele1"), os.path.join(run_dir, "stele1.log"))
    try:
        log("stele: ingest over 1 connection (this daemon answers the queries)")
        res["ingest_1"] = d.ingest(nd, 1, 1000, params["probe"])
        log(f"stele: {res['ingest_1']}")
        res["settle_s"] = d.settle()
        log(f"stele: idle {res['settle_s']} s after the index caught up")
        res["sizes"] = d.sizes()
        res["sizes"]["total"] = sum(v for k, v in res["sizes"].items() if k != "zero_fill")
        res["queries"], answers = time_queries("stele", d.query_runner(), Q.norm_stele, qs, o.reps)
    finally:
        d.stop()
    shutil.rmtree(d.data_dir, ignore_errors=True)
    return res, answers


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


def main():
    o = options()
    out = os.path.abspath(o.out)
    work, run_dir = os.path.join(out, "work"), os.path.join(out, "run")
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
                        "warmups": 3, "single_secs": o.single_secs, "cpus": os.cpu_count(),
                        "loadavg_start": os.getloadavg()[0],
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
             "params": params}
        answers = {}
        r["stele"], answers["stele"] = run_stele(o, run_dir, nd, params, qs)
        r["pg"], answers["pg"] = run_pg(o, run_dir, cp, qs)
        r["sqlite"], answers["sqlite"] = run_sqlite(o, run_dir, nd, qs)
    finally:
        stop_all()
    bad = report.cross_check(qs, answers)
    bad_names = {n for n, _ in bad}
    r["queries"] = []
    for i, q in enumerate(qs, 1):
        r["queries"].append({
            "n": i, "name": q.name, "label": q.label, "agree": q.name not in bad_names,
            "answer": report.answer_text(q, answers["stele"][q.name]),
            "stele_url": q.stele, "pg_sql": q.pg[0], "pg_args": q.pg[1],
            "sqlite_sql": q.lite[0], "sqlite_args": q.lite[1],
            **{s: r[s]["queries"][q.name] for s in ("stele", "pg", "sqlite")}})
    r["mismatches"] = [t for _, t in bad]
    r["config"]["loadavg_end"] = os.getloadavg()[0]
    r["notes"] = NOTES
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
