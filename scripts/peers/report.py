"""The results: the cross-check of every query's answers across the three systems, and
the Markdown table (printed, and written with the raw JSON to the output directory)."""

import json
import math
import os

from queries import PG_DOC, same, summary

SYSTEMS = [("stele", "Stele"), ("pg", "PostgreSQL 15"), ("sqlite", "SQLite")]


def cross_check(queries, answers):
    """Mismatches (query name, text) between Stele's answer and each peer's that ran."""
    bad = []
    for q in queries:
        ref = answers["stele"][q.name]
        for sys, title in SYSTEMS[1:]:
            if sys not in answers:
                continue
            got = answers[sys][q.name]
            if not same(q, ref, got):
                bad.append((q.name, f"{q.name}: Stele {_show(ref)} but {title} {_show(got)}"))
    return bad


def sanity(queries, answers, params, stele):
    """Failures (query name, text) of Stele's answers checked on their own (what holds
    whatever the peers say; the only check when Stele runs alone)."""
    bad = []
    by = {q.name: q for q in queries}
    a = answers

    def fail(name, text):
        bad.append((name, f"{name}: {text}"))

    if a["count_all"] != params["events"]:
        fail("count_all", f"Stele counts {a['count_all']} events, {params['events']} were loaded")
    if a["get_by_id"] != [params["id"]]:
        fail("get_by_id", f"Stele answers {_show(a['get_by_id'])} for id {params['id']!r}")
    for q in queries:
        if q.kind == "page" and q.name != "get_by_id":
            limit = 1000 if q.name == "hour" else 100
            if not 0 < len(a[q.name]) <= limit:
                fail(q.name, f"Stele's page holds {len(a[q.name])} events (1 to {limit} expected)")
    counts = [c for _, c in a["top_users"]]
    if not 0 < len(counts) <= 10 or counts != sorted(counts, reverse=True):
        fail("top_users", f"Stele's top users are not 1 to 10 decreasing counts: {counts}")
    facet = dict(a["facet_action"])
    hist_total = sum(c for _, c in a["per_day"])
    if hist_total != sum(facet.values()) or not 0 < hist_total <= params["events"]:
        fail("per_day", f"Stele's 30-day histogram holds {hist_total} events, its facet by "
                        f"action {sum(facet.values())} (of {params['events']})")
    ca = params["count_pair"]["action"]
    if not a["count_30d"] <= facet.get(ca, 0):
        fail("count_30d", f"Stele counts {a['count_30d']} events of one tenant and action "
                          f"{ca!r}, more than the facet's {facet.get(ca, 0)} of that action")
    rs = stele.get("restart")
    if rs and not rs.get("first_answer_same"):
        q = by[rs["first_query"]]
        fail(q.name, "Stele's first answer after the restart differs from the one before")
    return bad


def _show(a):
    if isinstance(a, list) and len(a) > 6:
        return f"[{len(a)} items: {a[:3]} ... {a[-2:]}]"
    return repr(a)


def _ms(v):
    return "—" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def _n(v):
    return "—" if v is None else f"{v:,.0f}"


def _mb(v):
    if v is None:
        return "—"
    return f"{v / 1e6:,.0f} MB" if v >= 10e6 else f"{v / 1e6:.2f} MB"


def table(r):
    """The Markdown report of results `r` (see bench.py for its shape): Stele's column,
    and each peer's that ran with Stele ÷ the best of them (none when Stele ran alone)."""
    st = r["stele"]
    peers = [(k, t) for k, t in SYSTEMS[1:] if k in r]
    pg, li = r.get("pg"), r.get("sqlite")
    n = r["config"]["events"]
    title = " vs ".join(["Stele", *(t for _, t in peers)])
    head = "| measure | Stele |" + "".join(f" {t} |" for _, t in peers)
    if peers:
        head += " Stele ÷ best peer (ingest: vs load incl. index build) |"
    lines = [f"## {title} ({n:,} events, {'quick' if r['config']['quick'] else 'full'} run)",
             "", head, "|---|---|" + "---|" * (len(peers) + (1 if peers else 0))]

    def row(name, stele_cell, cells, ratio):
        """A row: the peers' cells by key (only those that ran), the ratio if any peer."""
        def c(x):
            return f" {x} |" if x else " |"
        out = f"| {name} |" + c(stele_cell) + "".join(c(cells.get(k, "—")) for k, _ in peers)
        return out + (c(ratio) if peers else "")

    # Stele indexes as it ingests: its rate is set against the peers' loads with their
    # index builds (the raw COPY / insert rates are in the cells).
    best = max([x["load"]["load_events_per_s_incl_indexes"] for x in (pg, li) if x] or [0])
    loads = [1] + sorted(int(k[len("ingest_"):]) for k in st
                         if k.startswith("ingest_") and k != "ingest_1")
    for conns in loads:
        ing = st[f"ingest_{conns}"]
        name = (f"batched ingest, {conns} connection{'s' if conns > 1 else ''} (events/s)")
        stele_cell = (f"**{_n(ing['events_per_s'])}**; searchable after last ack: filter "
                      f"{ing['searchable_filter_s']:.2f} s, full text {ing['searchable_text_s']:.2f} s, "
                      f"index lag 0 {ing['index_lag0_s']:.2f} s; "
                      f"/readyz non-200: {ing['readyz_non200_seconds']} s")
        cells = {}
        if conns == 1 and pg:
            pl = pg["load"]
            cells["pg"] = (f"COPY {_n(pl['copy_events_per_s'])} (+ indexes {pl['index_seconds']:.1f} s: "
                           f"{_n(pl['load_events_per_s_incl_indexes'])} incl.; then VACUUM ANALYZE "
                           f"{pl.get('vacuum_analyze_seconds', 0):.1f} s)")
        if conns == 1 and li:
            ll = li["load"]
            cells["sqlite"] = (f"1,000 rows + FTS a txn: {_n(ll['load_events_per_s'])} (+ indexes "
                               f"{ll['index_seconds']:.1f} s: {_n(ll['load_events_per_s_incl_indexes'])} incl.)")
        lines.append(row(name, stele_cell, cells, f"{ing['events_per_s'] / best:.2f}×"
                         if best else "—"))
    for conns in loads:
        tenths = st[f"ingest_{conns}"].get("events_per_s_by_tenth")
        if tenths:
            known = [x for x in tenths if x]
            lines.append(row(f"batched ingest, {conns} connection{'s' if conns > 1 else ''}: "
                             "rate in each tenth of the load (events/s)",
                             " / ".join(_n(x) for x in tenths)
                             + (f" (last tenth ÷ median {known[-1] / sorted(known)[len(known) // 2]:.2f})"
                                if known else ""),
                             {}, "—"))
    ss = st.get("single")
    cells = {}
    if pg:
        ps = pg["single"]
        cells["pg"] = f"{_n(ps['tps'])}, {_ms(ps['p50_ms'])} / {_ms(ps['p99_ms'])} (pgbench, 64 conns)"
    if li:
        ls = li["single"]
        cells["sqlite"] = f"{_n(ls['tps'])}, {_ms(ls['p50_ms'])} / {_ms(ls['p99_ms'])} (1 writer)"
    bsingle = max([x["single"]["tps"] for x in (pg, li) if x] or [0])
    if ss or peers:
        lines.append(row("single event per request/transaction: per s, p50 / p99 ms",
                         f"{_n(ss['per_s'])}, {_ms(ss['p50_ms'])} / {_ms(ss['p99_ms'])} (64 conns)"
                         if ss else "— (not run: only on the 4-connection daemon, --stele-loads)",
                         cells, f"{ss['per_s'] / bsingle:.2f}×" if ss and bsingle else "—"))
    lines.append(row("**query** (p50 / p95 ms at the client; Stele: (p50 before the client decodes "
                     "the JSON))", "", {k: "" for k, _ in peers}, "**p50 speedup**"))
    speedups = []
    for qr in r["queries"]:
        s = qr["stele"]
        cells = {k: f"{_ms(qr[k]['p50_ms'])} / {_ms(qr[k]['p95_ms'])}" for k, _ in peers}
        ratio = ""
        if peers:
            peer = min(qr[k]["p50_ms"] for k, _ in peers)
            sp = peer / s["p50_ms"] if s["p50_ms"] > 0 else float("inf")
            speedups.append(sp)
            ratio = f"{sp:.2f}×"
        mark = "" if qr["agree"] else " **MISMATCH**"
        lines.append(row(f"{qr['n']}. {qr['label']} ({qr['answer']}){mark}",
                         f"{_ms(s['p50_ms'])} / {_ms(s['p95_ms'])} "
                         f"({_ms(s.get('p50_ms_before_json_decoding'))})", cells, ratio))
    if peers:
        faster = sum(1 for x in speedups if x > 1)
        gm = math.exp(sum(math.log(x) for x in speedups) / len(speedups))
        lines.append(row("Stele faster than the best peer (p50)",
                         f"**{faster} of {len(speedups)}**", {k: "" for k, _ in peers},
                         f"geometric mean **{gm:.2f}×**"))
        r["summary"] = {"faster": faster, "of": len(speedups), "geomean_speedup": round(gm, 3)}
    sz = st["sizes"]
    parts = ", ".join(f"{k} {v / n:.0f}" for k, v in sz.items()
                      if k not in ("total", "zero_fill") and v)
    if sz.get("zero_fill"):
        parts += f"; not counted: the active segment's zero-fill {sz['zero_fill'] / n:.0f}"
    cells = {}
    if pg:
        pz = pg["sizes"]
        cells["pg"] = (f"{pz['total'] / n:.0f} (table {pz['table'] / n:.0f}, TOAST "
                       f"{pz['toast'] / n:.0f}, indexes {pz['indexes'] / n:.0f})")
    if li:
        lz = li["sizes"]
        cells["sqlite"] = (f"{lz['total'] / n:.0f} (table {lz['table'] / n:.0f}, indexes "
                           f"{lz['indexes'] / n:.0f}, FTS {lz['fts'] / n:.0f})")
    ratio = "—"
    if peers:
        least = min(r[k]["sizes"]["total"] for k, _ in peers)
        ratio = (f"{least / sz['total']:.2f}× smaller" if sz["total"] <= least
                 else f"{sz['total'] / least:.2f}× larger")
    lines.append(row("bytes on disk per event", f"{sz['total'] / n:.0f} ({parts})", cells, ratio))
    rs = st.get("restart")
    if rs:
        lines.append(row(
            "restart to ready (clean stop, then `stele serve` on the same data)",
            f"stop {rs['stop_s']:.2f} s (exit {rs['exit_code']}); /readyz 200 after "
            f"**{rs['ready_s']:.2f} s** (listening {rs['listening_s']:.2f} s); first query "
            f"(2. {rs['first_query']}) answered after **{rs['first_query_s']:.2f} s**"
            f"{'' if rs.get('first_answer_same') else ', **answer differs from before**'}",
            {}, "—"))
    mem = st.get("memory") or {}
    if mem.get("load"):
        def rss(m, key):
            return (f"{_mb(m.get(key))} (heap {_mb(m.get('RssAnon'))}, "
                    f"mapped files {_mb(m.get('RssFile'))})")
        q = mem["queries"]
        qcell = (f"peak {_mb(q.get('VmHWM'))}" if mem.get("peak_reset")
                 else f"peak since the start {_mb(q.get('VmHWM'))} (VmHWM could not be reset)")
        rest = mem["rest"]
        cell = (f"load (ingest + merges): peak **{_mb(mem['load'].get('VmHWM'))}**; "
                f"queries: {qcell}; at rest after the queries: **{rss(rest, 'VmRSS')}**")
        if mem.get("restarted"):
            cell += (f"; after the restart and its first query: "
                     f"{_mb(mem['restarted'].get('VmRSS'))}")
        lines.append(row("daemon memory (RSS from /proc/PID/status)", cell, {}, "—"))
        rep = mem.get("reported") or {}
        if any(v is not None for v in rep.values()):
            lines.append(row(
                "daemon-reported bounded memory after the queries (/metrics)",
                f"statistics partials {_mb(rep.get('stats_partials_bytes'))} "
                f"({_n(rep.get('stats_partials_entries'))} segments; LRU bound 64 MiB); "
                f"tracked runs {_mb(rep.get('intel_tracked_bytes'))} (bound runs_max + "
                f"batches_max, default 100,000 each); detectors tracking "
                f"{_n(rep.get('detector_tracked'))} keys (bound 100,000 users + 100,000 IPs + "
                f"10,000 scopes + 100,000 findings, ≈ 136 MB of heap when all are full)",
                {}, "—"))
    c = r["config"]
    lines += ["", f"Run {c['date']}, {c['cpus']} CPUs, 1-minute load average {c['loadavg_start']:.1f} "
              f"at the start and {c['loadavg_end']:.1f} at the end (the systems run one at a time; "
              f"anything above {c['cpus']} is other work sharing the machine); wall time "
              f"{r['wall_seconds']:.0f} s. Stele's queried daemon was idle "
              f"{st.get('settle_s', 0):.0f} s after its index caught up (merges).", "",
              *r.get("notes", [])]
    return "\n".join(lines) + "\n"


def appendix(r):
    """The exact queries: Stele's URL, PostgreSQL's and SQLite's SQL with their arguments."""
    lines = ["", "### The 20 queries", "",
             f"`DOC` below is PostgreSQL's full-text document (the GIN index's expression): "
             f"`{PG_DOC}`", ""]
    systems = r["config"].get("systems", ["stele", "pg", "sqlite"])
    if systems == ["stele"]:
        lines = ["", "### The 20 queries", ""]
    for qr in r["queries"]:
        pg = qr["pg_sql"].replace(PG_DOC, "DOC")
        lines.append(f"{qr['n']}. **{qr['label']}** — Stele `GET {qr['stele_url']}`")
        if "pg" in systems:
            lines.append(f"   - PostgreSQL: `{pg}` with `{qr['pg_args']}`")
        if "sqlite" in systems:
            lines.append(f"   - SQLite: `{qr['sqlite_sql']}` with `{qr['sqlite_args']}`")
    return "\n".join(lines) + "\n"


def write(r, out_dir, md):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(r, f, indent=1, default=str)


def answer_text(q, a):
    return summary(q, a)
