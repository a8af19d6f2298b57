#!/usr/bin/env python3
"""Statistics over archived day files (src/archive/parquet.rs), computed by DuckDB,
printed as JSON in the shape and with the semantics of Stele's `GET /v1/stats`, so an
integration test can compare the two for the same days.  Needs duckdb (pip install
duckdb).

    scripts/parquet-stats.py PATH... [--since T] [--until T] [--interval day]
                             [--stele-records exclude|include|only] [--tenant T]
                             [--group-by f1,f2] [--top N] [--now T]

PATH: a day file, a directory (its *.parquet files, recursively) or a glob.
T: RFC 3339 (2026-11-23T10:00:00Z) or a UTC date (2026-11-23, its midnight).

How it maps to /v1/stats (src/server/read.rs `stats`, src/index/text/stats.rs):

* Without --group-by: the full object of `GET /v1/stats?interval=day` with the same
  window:  total, last_24h, by_action, by_category, by_entity_type, by_severity,
  by_status, by_source ([{"<field>": value, "count": n}]), interval, histogram
  ([{"start": RFC 3339 µs "Z", "count": n}], non-empty buckets only; counts by day with
  the default --interval day, which must be passed to the API: its default is hour),
  top_users ([{"user_id", "count"}], the first 10), active_users, error_rate,
  failure_rate, error_severity_rate, by_risk ({low, medium, high, unscored}).
  --top N cuts every list, as the API's `top`.
* With --group-by f1,f2: `GET /v1/stats?group_by=f1,f2` (e.g. `tenant`, which the full
  object does not group by):  {"total", "groups": [{"field", "values": [{"value",
  "count"}], "distinct", "missing", "truncated"}]}, at most --top values (default 100).
* Window: --since inclusive, --until exclusive, on the event time: `timestamp`, or
  `received_at` for an event posted without one (query::event_time).
* Stele's own records (`ingested_by` = "stele", e.g. audit_access) are left out, as
  the API does by default (`stele_records=exclude`); --stele-records include|only as
  the API's parameter.  Events without provenance (format version 1) are kept.
* --tenant T: the API's exact `tenant` filter (an API key scoped to tenants gets the
  same through its scope).
* Missing values are not counted in a list (the group's `missing` says how many).
* Values are counted as the API's filters compare them: letter case folded (each
  character's Unicode lower case), each group shown as its most frequent spelling
  (ties: the smallest); `tenant` exactly.  Lists are ranked by count descending, then
  value ascending (code point order, which is the API's byte order).
* Rates are shares of the total (0.0 for none): failure_rate = status failure,
  error_severity_rate = severity error or critical; error_rate = failure_rate.
* last_24h counts event times at or after --now minus 24 h (default: the current time).

Not mirrored: full-text `q`, filters other than the window and tenant, relative times
(24h, 7d), retention's dropped seqs (an archive holds sealed days only).  The same day
given twice is counted twice.
"""
import argparse
import datetime
import glob
import json
import os
import sys

import duckdb

GROUP_FIELDS = [  # src/index/text/stats.rs group_fields(): the table's Stat rows
    "action", "actor", "tenant", "category", "source", "status", "severity",
    "entity_type", "entity_id", "user_id", "user_name", "ingested_by",
    "process_name", "process_id", "batch_id",
]
EXACT_FIELDS = {"tenant"}  # counted exactly (Indexed::ExactKeyword), the others folded
FULL_GROUPS = ["action", "category", "entity_type", "severity", "status", "source"]
TOP_USERS = 10  # query::TOP_USERS
TOP_DEFAULT = 100  # query::shape::TOP_DEFAULT
INTERVALS = {"minute": 60_000_000, "hour": 3_600_000_000, "day": 86_400_000_000}
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def micros(text):
    """RFC 3339 or YYYY-MM-DD (UTC midnight) to unix µs."""
    if len(text) == 10:
        day = datetime.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc)
        return (day - EPOCH) // datetime.timedelta(microseconds=1)
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if t.tzinfo is None:
        raise SystemExit(f"{text!r}: give a UTC offset (Z or +hh:mm)")
    return (t - EPOCH) // datetime.timedelta(microseconds=1)


def rfc3339(us):
    """event::format_micros: RFC 3339 UTC with six fractional digits."""
    t = EPOCH + datetime.timedelta(microseconds=us)
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}.{t.microsecond:06d}Z")


def fold(s):
    """query::fold_case: ASCII lower case, or each character's Unicode lower case."""
    if s.isascii():
        return s.lower()
    return "".join(c.lower() for c in s)


def ranked(counts, field):
    """Raw counts per stored value to the API's list: folded (unless exact), ranked."""
    if field not in EXACT_FIELDS:
        groups = {}
        for value, n in counts.items():
            total, shown, shown_n = groups.get(fold(value), (0, None, 0))
            if shown is None or n > shown_n or (n == shown_n and value < shown):
                shown, shown_n = value, n
            groups[fold(value)] = (total + n, shown, shown_n)
        counts = {shown: total for total, shown, _ in groups.values()}
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def files(paths):
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += glob.glob(os.path.join(p, "**", "*.parquet"), recursive=True)
        elif any(c in p for c in "*?["):
            out += glob.glob(p, recursive=True)
        else:
            out.append(p)
    if not out:
        raise SystemExit("no Parquet files found")
    return sorted(set(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--since")
    ap.add_argument("--until")
    ap.add_argument("--interval", choices=INTERVALS, default="day")
    ap.add_argument("--stele-records", choices=["exclude", "include", "only"],
                    default="exclude")
    ap.add_argument("--tenant")
    ap.add_argument("--group-by")
    ap.add_argument("--top", type=int)
    ap.add_argument("--now")
    args = ap.parse_args()
    if args.top is not None and not 1 <= args.top <= 10_000:
        raise SystemExit("--top must be a whole number from 1 to 10000 (query::shape::TOP_MAX)")

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # Event time in unix µs, as the index holds it.
    con.read_parquet(files(args.paths)).create_view("day_files")
    con.execute("CREATE VIEW ev AS SELECT *, epoch_us(coalesce(timestamp, received_at)) AS t "
                "FROM day_files")
    where, params = ["TRUE"], []
    if args.since:
        where.append("t >= ?")
        params.append(micros(args.since))
    if args.until:
        where.append("t < ?")
        params.append(micros(args.until))
    stele = "(ingested_by IS NOT NULL AND lower(ingested_by) = 'stele')"
    if args.stele_records == "exclude":
        where.append(f"NOT {stele}")
    elif args.stele_records == "only":
        where.append(stele)
    if args.tenant is not None:
        where.append("tenant = ?")
        params.append(args.tenant)
    cond = " AND ".join(where)

    def q(sql, after=(), before=()):
        """Runs `sql` with the window's condition; `before`/`after`: the parameters
        placed before/after it in the text."""
        return con.execute(sql.format(cond=cond), list(before) + params + list(after)).fetchall()

    total = q("SELECT count(*) FROM ev WHERE {cond}")[0][0]

    def counts(field):
        rows = q(f'SELECT "{field}", count(*) FROM ev WHERE {{cond}} AND "{field}" IS NOT NULL '
                 f'GROUP BY 1')
        return {v: n for v, n in rows}

    if args.group_by:
        top = args.top or TOP_DEFAULT
        groups = []
        for field in args.group_by.split(","):
            if field not in GROUP_FIELDS:
                raise SystemExit(f"{field!r} is not a field statistics can group by")
            raw = counts(field)
            values = ranked(raw, field)
            groups.append({
                "field": field,
                "values": [{"value": v, "count": n} for v, n in values[:top]],
                "distinct": len(values),
                "missing": total - sum(raw.values()),
                "truncated": len(values) > top,
            })
        json.dump({"total": total, "groups": groups}, sys.stdout, indent=2, ensure_ascii=False)
        print()
        return

    top = args.top  # None: by_* complete, top_users cut at TOP_USERS
    body = {"total": total}
    now = micros(args.now) if args.now else (
        datetime.datetime.now(datetime.timezone.utc) - EPOCH) // datetime.timedelta(microseconds=1)
    body["last_24h"] = q("SELECT count(*) FROM ev WHERE {cond} AND t >= ?",
                         [now - 86_400_000_000])[0][0]
    for field in FULL_GROUPS:
        values = ranked(counts(field), field)[:top]
        body[f"by_{field}"] = [{field: v, "count": n} for v, n in values]
    width = INTERVALS[args.interval]
    body["interval"] = args.interval
    rows = q("SELECT t - (((t % ?) + ?) % ?) AS b, count(*) FROM ev WHERE {cond} "
             "GROUP BY b ORDER BY b", before=[width] * 3)
    body["histogram"] = [{"start": rfc3339(b), "count": n} for b, n in rows]
    users = ranked(counts("user_id"), "user_id")
    body["top_users"] = [{"user_id": v, "count": n}
                         for v, n in users[:top if top is not None else TOP_USERS]]
    body["active_users"] = len(users)
    failures = q("SELECT count(*) FROM ev WHERE {cond} AND status = 'failure'")[0][0]
    severe = q("SELECT count(*) FROM ev WHERE {cond} AND severity IN ('error', 'critical')")[0][0]
    share = (lambda n: n / total) if total else (lambda n: 0.0)
    body["error_rate"] = share(failures)
    body["failure_rate"] = share(failures)
    body["error_severity_rate"] = share(severe)
    levels = q("SELECT CASE WHEN risk_score <= 30 THEN 'low' WHEN risk_score <= 70 "
               "THEN 'medium' ELSE 'high' END, count(*) FROM ev WHERE {cond} "
               "AND risk_score BETWEEN 0 AND 100 GROUP BY 1")
    risk = {"low": 0, "medium": 0, "high": 0}
    risk.update(dict(levels))
    risk["unscored"] = total - sum(risk.values())
    body["by_risk"] = risk
    json.dump(body, sys.stdout, indent=2, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
