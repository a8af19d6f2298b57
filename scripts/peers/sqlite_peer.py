"""SQLite in the peer benchmark (Python's sqlite3): one file in the run directory, WAL
mode with synchronous=FULL (every commit durable, like the others), the same typed
table (`seq` is the INTEGER PRIMARY KEY, i.e. the rowid; `ts` in unix µs), loaded
1,000 rows a transaction, then the same indexes; full text in a contentless FTS5 table
(`content=''`, tokenizer `unicode61 remove_diacritics 0`) whose rowid is the event's
seq, filled in the same transactions with the text Stele indexes (description; entity
name, user name, user agent; changes as `field old new`; metadata values). Contentless:
the text is not stored twice, and matches are joined back to `events` by rowid."""

import json
import os
import sqlite3
import time

from common import log, pct
from workload import NAMES, fts_columns, row_of

INDEXES = [
    "CREATE UNIQUE INDEX events_id ON events (id)",
    "CREATE INDEX events_ts ON events (ts)",
    "CREATE INDEX events_tenant_ts ON events (tenant, ts)",
    "CREATE INDEX events_user_ts ON events (user_id, ts)",
    "CREATE INDEX events_entity_ts ON events (entity_type, entity_id, ts)",
    "CREATE INDEX events_action_ts ON events (action, ts)",
]
TYPES = {"bigint": "INTEGER", "smallint": "INTEGER", "timestamptz": "INTEGER",
         "text": "TEXT", "jsonb": "TEXT"}


def _connect(path):
    c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    return c


class Lite:
    def __init__(self, root):
        os.makedirs(root, exist_ok=True)
        self.path = os.path.join(root, "events.db")
        self.c = _connect(self.path)
        from workload import COLUMNS
        cols = ", ".join(("seq INTEGER PRIMARY KEY" if n == "seq" else f"{n} {TYPES[t]}")
                         for n, t in COLUMNS)
        self.c.execute(f"CREATE TABLE events ({cols})")
        self.c.execute("CREATE VIRTUAL TABLE events_fts USING fts5(description, names, changes, "
                       "metadata, content='', tokenize='unicode61 remove_diacritics 0')")
        self.insert = (f"INSERT INTO events ({', '.join(NAMES)}) "
                       f"VALUES ({', '.join('?' * len(NAMES))})")
        self.insert_fts = ("INSERT INTO events_fts (rowid, description, names, changes, "
                           "metadata) VALUES (?, ?, ?, ?, ?)")

    def load(self, ndjson, batch=1000):
        """Reads the workload, inserts `batch` rows (and their FTS rows) a transaction."""
        c = self.c
        t0 = time.perf_counter()
        n = 0
        rows, texts = [], []

        def flush():
            c.execute("BEGIN")
            c.executemany(self.insert, rows)
            c.executemany(self.insert_fts, texts)
            c.execute("COMMIT")
            rows.clear()
            texts.clear()

        with open(ndjson, encoding="utf-8") as f:
            for line in f:
                n += 1
                ev = json.loads(line)
                r = row_of(ev, n)
                rows.append(tuple(r[k] for k in NAMES))
                texts.append((n, *fts_columns(ev)))
                if len(rows) == batch:
                    flush()
        if rows:
            flush()
        load_s = time.perf_counter() - t0
        per_index = {}
        t1 = time.perf_counter()
        for sql in INDEXES:
            ti = time.perf_counter()
            c.execute(sql)
            per_index[sql.split(" ON ")[0].split()[-1]] = round(time.perf_counter() - ti, 2)
        c.execute("ANALYZE")
        index_s = time.perf_counter() - t1
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        log(f"sqlite: {n} rows (+ FTS) in {load_s:.1f} s, indexes in {index_s:.1f} s")
        return {"events": n, "load_seconds": round(load_s, 2),
                "load_events_per_s": round(n / load_s, 1), "index_seconds": round(index_s, 2),
                "index_seconds_each": per_index,
                "load_events_per_s_incl_indexes": round(n / (load_s + index_s), 1)}

    def sizes(self):
        self.c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out = {}
        for suffix in ("", "-wal", "-shm"):
            p = self.path + suffix
            out["db" + suffix] = os.path.getsize(p) if os.path.exists(p) else 0
        pages = dict(self.c.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
                     .fetchall()) if self._has_dbstat() else {}
        out["fts"] = sum(v for k, v in pages.items() if k.startswith("events_fts"))
        out["indexes"] = sum(v for k, v in pages.items() if k.startswith("events_")
                             and not k.startswith("events_fts"))
        out["table"] = pages.get("events", 0)
        out["total"] = out["db"] + out["db-wal"] + out["db-shm"]
        return out

    def _has_dbstat(self):
        try:
            self.c.execute("SELECT 1 FROM dbstat LIMIT 1").fetchall()
            return True
        except sqlite3.OperationalError:
            return False

    def query_runner(self):
        c = _connect(self.path)

        def run_q(q):
            return c.execute(q.lite[0], q.lite[1]).fetchall()
        return run_q

    def single_inserts(self, seconds, sample_line):
        """One connection committing one event (row + FTS row) per transaction."""
        ev = json.loads(sample_line)
        c = self.c
        lat = []
        seq = c.execute("SELECT max(seq) FROM events").fetchone()[0] + 1
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            ev["id"] = f"single-{seq}"
            r = row_of(ev, seq)
            t0 = time.perf_counter()
            c.execute("BEGIN")
            c.execute(self.insert, tuple(r[k] for k in NAMES))
            c.execute(self.insert_fts, (seq, *fts_columns(ev)))
            c.execute("COMMIT")
            lat.append((time.perf_counter() - t0) * 1e3)
            seq += 1
        return {"clients": 1, "transactions": len(lat), "tps": round(len(lat) / seconds, 1),
                "p50_ms": round(pct(lat, 0.5), 2), "p99_ms": round(pct(lat, 0.99), 2)}

    def close(self):
        self.c.close()
