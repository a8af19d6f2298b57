"""The results: the cross-check of every query's answers across the three systems, and
the Markdown table (printed, and written with the raw JSON to the output directory)."""

import json
import math
import os

from queries import PG_DOC, same, summary

SYSTEMS = [("stele", "Stele"), ("pg", "PostgreSQL 15"), ("sqlite", "SQLite")]


def cross_check(queries, answers):
    """Mismatches (query name, text) between Stele's answer and each peer's."""
    bad = []
    for q in queries:
        ref = answers["stele"][q.name]
        for sys, title in SYSTEMS[1:]:
            got = answers[sys][q.name]
            if not same(q, ref, got):
                bad.append((q.name, f"{q.name}: Stele {_show(ref)} but {title} {_show(got)}"))
    return bad


def _show(a):
    if isinstance(a, list) and len(a) > 6:
        return f"[{len(a)} items: {a[:3]} ... {a[-2:]}]"
    return repr(a)


def _ms(v):
    return "—" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def _n(v):
    return "—" if v is None else f"{v:,.0f}"


def table(r):
    """The Markdown report of results `r` (see bench.py for its shape)."""
    st, pg, li = r["stele"], r["pg"], r["sqlite"]
    lines = [f"## Stele vs PostgreSQL 15 vs SQLite ({r['config']['events']:,} events, "
             f"{'quick' if r['config']['quick'] else 'full'} run)", "",
             "| measure | Stele | PostgreSQL 15 | SQLite | Stele ÷ best peer (ingest: vs load incl. index build) |",
             "|---|---|---|---|---|"]
    i1, i4 = st["ingest_1"], st["ingest_4"]
    pl, ll = pg["load"], li["load"]
    # Stele indexes as it ingests: its rate is set against the peers' loads with their
    # index builds (the raw COPY / insert rates are in the cells).
    best = max(pl["load_events_per_s_incl_indexes"], ll["load_events_per_s_incl_indexes"])
    for ing, name in ((i1, "batched ingest, 1 connection (events/s)"),
                      (i4, "batched ingest, 4 connections (events/s)")):
        stele_cell = (f"**{_n(ing['events_per_s'])}**; searchable after last ack: filter "
                      f"{ing['searchable_filter_s']:.2f} s, full text {ing['searchable_text_s']:.2f} s, "
                      f"index lag 0 {ing['index_lag0_s']:.2f} s; "
                      f"/readyz non-200: {ing['readyz_non200_seconds']} s")
        if ing is i1:
            pg_cell = (f"COPY {_n(pl['copy_events_per_s'])} (+ indexes {pl['index_seconds']:.1f} s: "
                       f"{_n(pl['load_events_per_s_incl_indexes'])} incl.; then VACUUM ANALYZE "
                       f"{pl.get('vacuum_analyze_seconds', 0):.1f} s)")
            li_cell = (f"1,000 rows + FTS a txn: {_n(ll['load_events_per_s'])} (+ indexes "
                       f"{ll['index_seconds']:.1f} s: {_n(ll['load_events_per_s_incl_indexes'])} incl.)")
        else:
            pg_cell = li_cell = "—"
        lines.append(f"| {name} | {stele_cell} | {pg_cell} | {li_cell} | "
                     f"{ing['events_per_s'] / best:.2f}× |")
    ss, ps, ls = st["single"], pg["single"], li["single"]
    bsingle = max(ps["tps"], ls["tps"])
    lines.append(f"| single event per request/transaction: per s, p50 / p99 ms | "
                 f"{_n(ss['per_s'])}, {_ms(ss['p50_ms'])} / {_ms(ss['p99_ms'])} (64 conns) | "
                 f"{_n(ps['tps'])}, {_ms(ps['p50_ms'])} / {_ms(ps['p99_ms'])} (pgbench, 64 conns) | "
                 f"{_n(ls['tps'])}, {_ms(ls['p50_ms'])} / {_ms(ls['p99_ms'])} (1 writer) | "
                 f"{ss['per_s'] / bsingle:.2f}× |")
    lines.append("| **query** (p50 / p95 ms at the client; Stele: (p50 before the client decodes "
                 "the JSON)) | | | | **p50 speedup** |")
    speedups = []
    for qr in r["queries"]:
        s, p, l = qr["stele"], qr["pg"], qr["sqlite"]
        peer = min(p["p50_ms"], l["p50_ms"])
        sp = peer / s["p50_ms"] if s["p50_ms"] > 0 else float("inf")
        speedups.append(sp)
        mark = "" if qr["agree"] else " **MISMATCH**"
        lines.append(f"| {qr['n']}. {qr['label']} ({qr['answer']}){mark} | "
                     f"{_ms(s['p50_ms'])} / {_ms(s['p95_ms'])} ({_ms(s.get('p50_ms_before_json_decoding'))}) | "
                     f"{_ms(p['p50_ms'])} / {_ms(p['p95_ms'])} | "
                     f"{_ms(l['p50_ms'])} / {_ms(l['p95_ms'])} | {sp:.2f}× |")
    faster = sum(1 for x in speedups if x > 1)
    gm = math.exp(sum(math.log(x) for x in speedups) / len(speedups))
    lines.append(f"| Stele faster than the best peer (p50) | **{faster} of {len(speedups)}** | | | "
                 f"geometric mean **{gm:.2f}×** |")
    n = r["config"]["events"]
    sz, pz, lz = st["sizes"], pg["sizes"], li["sizes"]
    parts = ", ".join(f"{k} {v / n:.0f}" for k, v in sz.items()
                      if k not in ("total", "zero_fill") and v)
    if sz.get("zero_fill"):
        parts += f"; not counted: the active segment's zero-fill {sz['zero_fill'] / n:.0f}"
    lines.append(f"| bytes on disk per event | {sz['total'] / n:.0f} ({parts}) | "
                 f"{pz['total'] / n:.0f} (table {pz['table'] / n:.0f}, TOAST {pz['toast'] / n:.0f}, "
                 f"indexes {pz['indexes'] / n:.0f}) | {lz['total'] / n:.0f} (table "
                 f"{lz['table'] / n:.0f}, indexes {lz['indexes'] / n:.0f}, FTS {lz['fts'] / n:.0f}) | "
                 f"{min(pz['total'], lz['total']) / sz['total']:.2f}× smaller |"
                 if sz["total"] <= min(pz["total"], lz["total"]) else
                 f"| bytes on disk per event | {sz['total'] / n:.0f} ({parts}) | "
                 f"{pz['total'] / n:.0f} (table {pz['table'] / n:.0f}, TOAST {pz['toast'] / n:.0f}, "
                 f"indexes {pz['indexes'] / n:.0f}) | {lz['total'] / n:.0f} (table "
                 f"{lz['table'] / n:.0f}, indexes {lz['indexes'] / n:.0f}, FTS {lz['fts'] / n:.0f}) | "
                 f"{sz['total'] / min(pz['total'], lz['total']):.2f}× larger |")
    r["summary"] = {"faster": faster, "of": len(speedups), "geomean_speedup": round(gm, 3)}
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
    for qr in r["queries"]:
        pg = qr["pg_sql"].replace(PG_DOC, "DOC")
        lines += [f"{qr['n']}. **{qr['label']}** — Stele `GET {qr['stele_url']}`",
                  f"   - PostgreSQL: `{pg}` with `{qr['pg_args']}`",
                  f"   - SQLite: `{qr['sqlite_sql']}` with `{qr['sqlite_args']}`"]
    return "\n".join(lines) + "\n"


def write(r, out_dir, md):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(r, f, indent=1, default=str)


def answer_text(q, a):
    return summary(q, a)
