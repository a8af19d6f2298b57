"""The workload: generated once by `loadgen gen` (stele's testkit::EventGen), then read
in one streaming pass that writes PostgreSQL's COPY file and draws every query value
(ids, tenants, users, entities, hours, full-text words) with the fixed seed.

Also owns the mapping of an event to a table row (shared by PostgreSQL and SQLite) and
the text a full-text index holds, exactly as Stele indexes it (src/index/text/writer.rs):
description, entity_name, user_agent, user_name, each change as `field old new` (values
as JSON text) and the scalar values of metadata (never its keys)."""

import collections
import json
import os
import random
import re

from common import DAY_US, HOUR_US, SEV_RANK, log, run, us_of_iso

# Table columns, in order. `seq` is the line number (1-based): with one ingest
# connection it orders events exactly as Stele's seq does.
COLUMNS = [
    ("seq", "bigint"), ("id", "text"), ("ts", "timestamptz"), ("action", "text"),
    ("actor", "text"), ("tenant", "text"), ("category", "text"), ("source", "text"),
    ("status", "text"), ("severity", "text"), ("sev", "smallint"),
    ("entity_type", "text"), ("entity_id", "text"), ("entity_name", "text"),
    ("user_id", "text"), ("user_name", "text"), ("session_id", "text"),
    ("correlation_id", "text"), ("ip", "text"), ("user_agent", "text"),
    ("risk_score", "smallint"), ("duration_ms", "bigint"), ("description", "text"),
    ("changes", "jsonb"), ("metadata", "jsonb"), ("process_name", "text"),
    ("process_id", "text"), ("batch_id", "text"), ("phase", "text"),
    ("items_total", "bigint"), ("items_processed", "bigint"), ("items_failed", "bigint"),
]
NAMES = [c for c, _ in COLUMNS]
PLAIN = [c for c in NAMES if c not in ("seq", "ts", "sev", "changes", "metadata")]
_KNOWN = set(NAMES) - {"seq", "sev"} | {"timestamp"}

# Stele's tokenizer (tantivy's default): runs of alphanumeric characters, lower-cased.
TOKEN = re.compile(r"[^\W_]+")
# A character next to which PostgreSQL's parser may not cut a word the way tantivy
# and FTS5 do (paths, hosts, e-mails, hyphenated words, versions, tags...).
_UNSAFE = r'(?:[^\s\w,()\[\]"]|_)'
UNCLEAN = re.compile(rf"(?<={_UNSAFE})[^\W_]+|[^\W_]+(?={_UNSAFE})")
CANDIDATE = re.compile(r"[a-z]{4,20}")
PAIR = re.compile(r'(?<![^\s,()\[\]"])([A-Za-z]{4,20}) ([A-Za-z]{4,20})(?![^\s,()\[\]"])')
# The generator's output format (bumped when `loadgen gen` changes what it writes).
FORMAT = 2
_COPY_ESC = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def jtext(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def scalars(v, out):
    """The scalar values of a JSON value as Stele's metadata_text has them."""
    if isinstance(v, dict):
        for x in v.values():
            scalars(x, out)
    elif isinstance(v, list):
        for x in v:
            scalars(x, out)
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif v is not None:
        out.append(v if isinstance(v, str) else jtext(v))
    return out


def changes_text(changes):
    """Each change as Stele indexes it: `field old new`, values as JSON text."""
    parts = []
    for c in changes or ():
        old = jtext(c["old"]) if "old" in c else ""
        new = jtext(c["new"]) if "new" in c else ""
        parts.append(f"{c.get('field', '')} {old} {new}")
    return "\n".join(parts)


def fts_columns(ev):
    """The four FTS5 columns: description, names, changes, metadata values."""
    names = "\n".join(ev[k] for k in ("entity_name", "user_name", "user_agent") if ev.get(k))
    meta = "\n".join(scalars(ev.get("metadata"), [])) if ev.get("metadata") else ""
    return (ev.get("description") or "", names, changes_text(ev.get("changes")), meta)


def row_of(ev, seq):
    """The row of event `ev` (parsed JSON) at line `seq`, `ts` in unix µs."""
    unknown = set(ev) - _KNOWN
    if unknown:
        raise ValueError(f"line {seq}: fields the table does not have: {sorted(unknown)}")
    sev = ev.get("severity")
    row = {k: ev.get(k) for k in PLAIN}
    row["seq"] = seq
    row["ts"] = us_of_iso(ev["timestamp"])
    row["sev"] = SEV_RANK[sev] if sev else None
    row["changes"] = jtext(ev["changes"]) if ev.get("changes") else None
    row["metadata"] = jtext(ev["metadata"]) if "metadata" in ev else None
    return row


def copy_line(row, ts_text):
    out = []
    for k in NAMES:
        v = ts_text if k == "ts" else row[k]
        out.append("\\N" if v is None else str(v).translate(_COPY_ESC))
    return "\t".join(out) + "\n"


def generate(loadgen, path, events, seed, event_bytes):
    if os.path.exists(path) and os.path.exists(path + ".meta"):
        with open(path + ".meta") as f:
            meta = json.load(f)
        if meta == {"events": events, "seed": seed, "event_bytes": event_bytes, "format": FORMAT}:
            log(f"workload: reusing {path}")
            return
    log(f"workload: generating {events} events (seed {seed}) into {path}")
    run([loadgen, "gen", "--events", str(events), "--seed", str(seed),
         "--event-bytes", str(event_bytes), "--out", path], stdout=open(os.devnull, "w"))
    with open(path + ".meta", "w") as f:
        json.dump({"events": events, "seed": seed, "event_bytes": event_bytes, "format": FORMAT}, f)


def scan(path, copy_path, events, seed):
    """One pass: the COPY file (unless copy_path is None), a stride sample, word
    statistics; then the query values."""
    stride = max(1, events // 4000)
    df_every = max(1, events // 200_000)
    sample, df, unclean, pairs = [], collections.Counter(), set(), []
    n = 0
    last = None
    # Without a copy_path (PostgreSQL not run) no COPY file is written.
    with open(path, encoding="utf-8") as f, \
            open(copy_path or os.devnull, "w", encoding="utf-8") as out:
        for line in f:
            n += 1
            ev = json.loads(line)
            row = row_of(ev, n)
            if copy_path:
                out.write(copy_line(row, ev["timestamp"]))
            texts = fts_columns(ev)
            for t in texts:
                for w in UNCLEAN.findall(t):
                    # Only words that could be chosen (bounded by the vocabulary).
                    w = w.lower()
                    if CANDIDATE.fullmatch(w):
                        unclean.add(w)
            for c in ev.get("changes") or ():
                for k in ("old", "new"):
                    v = c.get(k, "")
                    if not isinstance(v, (str, int, float, bool)):
                        unclean.update(w for w in map(str.lower, TOKEN.findall(jtext(v)))
                                       if CANDIDATE.fullmatch(w))
            if n % df_every == 0 or (n % stride == 0 and len(pairs) < 2000):
                # Words of the description, its last one left out (the generator cuts
                # the text at a byte count: that word may be a fragment).
                desc = texts[0]
                cut = desc.rfind(" ")
                whole = desc[:cut] if cut > 0 else ""
                if n % df_every == 0:
                    words = {w.lower() for w in TOKEN.findall(whole)}
                    df.update(w for w in words if CANDIDATE.fullmatch(w))
                if n % stride == 0:
                    pairs.extend((a.lower(), b.lower()) for a, b in PAIR.findall(whole))
            if n % stride == 0:
                sample.append(row)
            last = (row, texts)
    if n != events:
        raise RuntimeError(f"{path}: {n} events, expected {events}")
    return choose(sample, df, df_every, unclean, pairs, last, n, seed)


def choose(sample, df, df_every, unclean, pairs, last, n, seed):
    rng = random.Random(seed)
    clean = {w: c for w, c in df.items() if w not in unclean and w not in ("and", "not")}
    if not clean:
        raise RuntimeError("no word that all three tokenizers cut alike")
    by_df = sorted(clean.items(), key=lambda kv: (-kv[1], kv[0]))
    counted = n // df_every
    common = next((w for w, c in by_df if c <= counted * 0.5), by_df[0][0])
    rare_pool = sorted(w for w, c in clean.items() if 2 <= c <= max(3, counted // 20000))
    rare = rng.choice(rare_pool) if rare_pool else by_df[-1][0]
    good_pairs = sorted({p for p in pairs if p[0] in clean and p[1] in clean and p[0] != p[1]})
    if not good_pairs:
        raise RuntimeError("no phrase of two clean words found")
    phrase = " ".join(rng.choice(good_pairs))

    def pick(cond):
        pool = [r for r in sample if cond(r)]
        return rng.choice(pool)

    ts = [r["ts"] for r in sample]
    base = min(ts) // DAY_US * DAY_US
    a = pick(lambda r: r["tenant"])
    b = pick(lambda r: r["user_id"])
    c = pick(lambda r: r["entity_type"] and r["entity_type"] != "user")
    d = pick(lambda r: r["entity_type"] == "user")
    e = pick(lambda r: r["tenant"] and r["sev"] is not None and r["sev"] >= 2)
    f = pick(lambda r: r["tenant"])
    g = pick(lambda r: r["tenant"])
    h = pick(lambda r: r["user_id"] and r["user_id"] != b["user_id"])
    hour = rng.choice(ts) // HOUR_US * HOUR_US
    probe_row, probe_texts = last
    probe_word = next((w.lower() for w in TOKEN.findall(" ".join(probe_texts))
                       if 3 <= len(w) < 40 and w.lower() not in ("and", "or", "not")), None)
    return {
        "events": n,
        "id": pick(lambda r: True)["id"],
        "tenant": a["tenant"],
        "action": pick(lambda r: True)["action"],
        "user": b["user_id"],
        "entity": [c["entity_type"], c["entity_id"]],
        "history_entity": [d["entity_type"], d["entity_id"]],
        "timeline_user": h["user_id"],
        "min_severity": "error",
        "hour": [hour, hour + HOUR_US],
        "three": {"tenant": e["tenant"], "action": e["action"], "min_sev": e["severity"]},
        "word_common": common,
        "word_rare": rare,
        "phrase": phrase,
        "word_tenant": f["tenant"],
        "offset_tenant": g["tenant"],
        "count_pair": {"tenant": a["tenant"], "action": e["action"]},
        "window": [base, base + 30 * DAY_US],
        "probe": {"id": probe_row["id"], "ts": probe_row["ts"], "action": probe_row["action"],
                  "word": probe_word},
        "words": {"clean_counted": len(clean), "df_sample_every": df_every,
                  "common_df_sampled": clean.get(common), "rare_df_sampled": clean.get(rare)},
    }
