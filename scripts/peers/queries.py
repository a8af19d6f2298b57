"""The 20 queries, each written three times (Stele URL, PostgreSQL SQL, SQLite SQL),
and how an answer is reduced to what must be equal across the systems.

Order is total everywhere: Stele orders a page by event time then seq (newest first
`(time desc, seq desc)`, oldest first `(time asc, seq asc)`: src/index/text/timed.rs);
the SQL tables carry `seq` (the event's line in the workload, which is Stele's arrival
order with one ingest connection) and order by `ts, seq` the same way. Stele's `until`
is exclusive and `since` inclusive (src/index/text/mod.rs `time_bounds`): `ts >= since
AND ts < until`."""

from urllib.parse import quote, urlencode

from common import dt_of_us, iso_of_us, us_of_iso

# The document of PostgreSQL's full-text index (and of its queries: the same expression,
# so the GIN index serves them). jsonb_to_tsvector takes the scalar values of changes
# and metadata, never their keys, as Stele does.
PG_DOC = (
    "(to_tsvector('simple', coalesce(description,'') || ' ' || coalesce(entity_name,'') || ' ' "
    "|| coalesce(user_name,'') || ' ' || coalesce(user_agent,'')) "
    "|| jsonb_to_tsvector('simple', coalesce(changes,'[]'::jsonb), '[\"string\",\"numeric\",\"boolean\"]') "
    "|| jsonb_to_tsvector('simple', coalesce(metadata,'{}'::jsonb), '[\"string\",\"numeric\",\"boolean\"]'))"
)
FTS_IN = "seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)"
NEW = "ORDER BY ts DESC, seq DESC"
OLD = "ORDER BY ts ASC, seq ASC"


class Query:
    def __init__(self, name, label, kind, stele, pg, lite):
        self.name, self.label, self.kind = name, label, kind
        self.stele = stele          # path and query string
        self.pg = pg                # (sql with %s, args); times as datetimes
        self.lite = lite            # (sql with ?, args); times as µs


def _url(path, **params):
    return path + ("?" + urlencode(params) if params else "")


def _page(name, label, where, args, lite_where=None, lite_args=None, order=NEW, limit=100,
          offset=0, stele=None):
    """A page of whole events from both SQL engines."""
    lw = lite_where if lite_where is not None else where.replace("%s", "?")
    la = lite_args if lite_args is not None else args
    tail = f" {order} LIMIT {limit}" + (f" OFFSET {offset}" if offset else "")
    pg = (f"SELECT * FROM events WHERE {where}{tail}", args)
    lite = (f"SELECT * FROM events WHERE {lw}{tail}", la)
    return Query(name, label, "page", stele, pg, lite)


def build(p):
    """The 20 queries for the query values `p` (workload.choose)."""
    s, u = p["window"]
    ds, du = dt_of_us(s), dt_of_us(u)
    win = {"since": iso_of_us(s), "until": iso_of_us(u)}
    h0, h1 = p["hour"]
    et, ei = p["entity"]
    ht, hi = p["history_entity"]
    t3 = p["three"]
    sev3 = ["debug", "info", "notice", "warning", "error", "critical"].index(t3["min_sev"])
    wc, wr, ph = p["word_common"], p["word_rare"], p["phrase"]
    ct, ca = p["count_pair"]["tenant"], p["count_pair"]["action"]
    q = []
    q.append(Query("get_by_id", f"get by id", "page", f"/v1/events/{quote(p['id'], safe='')}",
                   ("SELECT * FROM events WHERE id = %s", [p["id"]]),
                   ("SELECT * FROM events WHERE id = ?", [p["id"]])))
    q.append(_page("tenant", "newest 100, one tenant", "tenant = %s", [p["tenant"]],
                   stele=_url("/v1/events", tenant=p["tenant"], limit=100)))
    q.append(_page("action", "newest 100, one action", "action = %s", [p["action"]],
                   stele=_url("/v1/events", action=p["action"], limit=100)))
    q.append(_page("user", "newest 100, one user", "user_id = %s", [p["user"]],
                   stele=_url("/v1/events", user_id=p["user"], limit=100)))
    q.append(_page("entity", "newest 100, one entity", "entity_type = %s AND entity_id = %s",
                   [et, ei], stele=_url("/v1/events", entity_type=et, entity_id=ei, limit=100)))
    q.append(_page("min_severity", "newest 100, severity >= error", "sev >= 4", [],
                   stele=_url("/v1/events", min_severity="error", limit=100)))
    q.append(_page("hour", "one hour, oldest 1000", "ts >= %s AND ts < %s",
                   [dt_of_us(h0), dt_of_us(h1)], "ts >= ? AND ts < ?", [h0, h1], order=OLD,
                   limit=1000, stele=_url("/v1/events", since=iso_of_us(h0),
                                          until=iso_of_us(h1), order="asc", limit=1000)))
    q.append(_page("three_filters", "newest 100, tenant + action + min severity",
                   "tenant = %s AND action = %s AND sev >= %s", [t3["tenant"], t3["action"], sev3],
                   stele=_url("/v1/events", tenant=t3["tenant"], action=t3["action"],
                              min_severity=t3["min_sev"], limit=100)))
    q.append(_page("timeline", "user timeline, newest 100", "user_id = %s", [p["timeline_user"]],
                   stele=_url(f"/v1/users/{quote(p['timeline_user'], safe='')}/events", limit=100)))
    q.append(_page("history", "entity history, oldest 100", "entity_type = %s AND entity_id = %s",
                   [ht, hi], order=OLD,
                   stele=_url(f"/v1/entities/{quote(ht, safe='')}/{quote(hi, safe='')}/history",
                              limit=100)))
    q.append(_page("fts_common", f"full text '{wc}' (common), newest 100",
                   f"{PG_DOC} @@ to_tsquery('simple', %s)", [wc], FTS_IN, [f'"{wc}"'],
                   stele=_url("/v1/search", q=wc, limit=100)))
    q.append(_page("fts_rare", f"full text '{wr}' (rare), newest 100",
                   f"{PG_DOC} @@ to_tsquery('simple', %s)", [wr], FTS_IN, [f'"{wr}"'],
                   stele=_url("/v1/search", q=wr, limit=100)))
    q.append(_page("fts_phrase", f"full text phrase \"{ph}\", newest 100",
                   f"{PG_DOC} @@ phraseto_tsquery('simple', %s)", [ph], FTS_IN, [f'"{ph}"'],
                   stele=_url("/v1/search", q=f'"{ph}"', limit=100)))
    q.append(_page("fts_tenant", f"full text '{wc}' + tenant, newest 100",
                   f"{PG_DOC} @@ to_tsquery('simple', %s) AND tenant = %s", [wc, p["word_tenant"]],
                   f"{FTS_IN} AND tenant = ?", [f'"{wc}"', p["word_tenant"]],
                   stele=_url("/v1/search", q=wc, tenant=p["word_tenant"], limit=100)))
    q.append(_page("offset", "tenant, page at offset 1000", "tenant = %s", [p["offset_tenant"]],
                   offset=1000,
                   stele=_url("/v1/events", tenant=p["offset_tenant"], offset=1000, limit=100)))
    q.append(Query("count_all", "count of everything", "count", "/v1/count",
                   ("SELECT count(*) FROM events", []), ("SELECT count(*) FROM events", [])))
    q.append(Query("count_30d", "count, 30 days, tenant + action", "count",
                   _url("/v1/count", tenant=ct, action=ca, **win),
                   ("SELECT count(*) FROM events WHERE tenant = %s AND action = %s "
                    "AND ts >= %s AND ts < %s", [ct, ca, ds, du]),
                   ("SELECT count(*) FROM events WHERE tenant = ? AND action = ? "
                    "AND ts >= ? AND ts < ?", [ct, ca, s, u])))
    q.append(Query("facet_action", "facet: count by action, 30 days", "groups",
                   _url("/v1/fields/action/values", **win),
                   ("SELECT action, count(*) FROM events WHERE ts >= %s AND ts < %s "
                    "GROUP BY action ORDER BY 2 DESC, 1", [ds, du]),
                   ("SELECT action, count(*) FROM events WHERE ts >= ? AND ts < ? "
                    "GROUP BY action ORDER BY 2 DESC, 1", [s, u])))
    q.append(Query("top_users", "top 10 users, 30 days", "top",
                   _url("/v1/fields/user_id/values", top=10, **win),
                   ("SELECT user_id, count(*) FROM events WHERE ts >= %s AND ts < %s "
                    "AND user_id IS NOT NULL GROUP BY user_id ORDER BY 2 DESC, 1 LIMIT 10",
                    [ds, du]),
                   ("SELECT user_id, count(*) FROM events WHERE ts >= ? AND ts < ? "
                    "AND user_id IS NOT NULL GROUP BY user_id ORDER BY 2 DESC, 1 LIMIT 10",
                    [s, u])))
    q.append(Query("per_day", "statistics: count per day, 30 days", "hist",
                   _url("/v1/stats", interval="day", include="histogram", **win),
                   ("SELECT date_trunc('day', ts), count(*) FROM events "
                    "WHERE ts >= %s AND ts < %s GROUP BY 1 ORDER BY 1", [ds, du]),
                   ("SELECT ts / 86400000000 * 86400000000, count(*) FROM events "
                    "WHERE ts >= ? AND ts < ? GROUP BY 1 ORDER BY 1", [s, u])))
    assert len(q) == 20
    return q


def _us(v):
    """A bucket start as unix µs: µs already, a datetime, or RFC 3339 text."""
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return us_of_iso(v)
    from common import EPOCH
    d = v - EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def norm_stele(q, body):
    """What must be equal, from Stele's JSON answer."""
    if q.kind == "page":
        evs = body["events"] if "events" in body else [body]
        return [e["id"] for e in evs]
    if q.kind == "count":
        return body["count"]
    if q.kind in ("groups", "top"):
        vals = body["values"] if isinstance(body, dict) else body
        return [(v["value"], v["count"]) for v in vals]
    if q.kind == "hist":
        return [(_us(b["start"]), b["count"]) for b in body["histogram"]]
    raise ValueError(q.kind)


def norm_sql(q, rows):
    if q.kind == "page":
        return [r[1] for r in rows]
    if q.kind == "count":
        return rows[0][0]
    if q.kind in ("groups", "top"):
        return [(r[0], r[1]) for r in rows]
    if q.kind == "hist":
        return [(_us(r[0]), r[1]) for r in rows if r[1]]
    raise ValueError(q.kind)


def same(q, a, b):
    """Whether two normalized answers agree. Groups compare as sets of (value, count);
    a top-N compares its counts in order and the values above the last count (values
    tied at the cut may legitimately differ)."""
    if q.kind == "groups":
        return sorted(a) == sorted(b)
    if q.kind == "top":
        if [c for _, c in a] != [c for _, c in b]:
            return False
        cut = a[-1][1] if a else 0
        return sorted(x for x in a if x[1] > cut) == sorted(x for x in b if x[1] > cut)
    return a == b


def summary(q, a):
    """A short description of an answer for the report (size, first items)."""
    if q.kind == "page":
        return f"{len(a)} events"
    if q.kind == "count":
        return f"{a}"
    if q.kind == "hist":
        return f"{len(a)} buckets, {sum(c for _, c in a)} events"
    return f"{len(a)} groups"
