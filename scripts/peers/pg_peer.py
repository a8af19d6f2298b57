"""PostgreSQL 15 in the peer benchmark: a cluster of its own (initdb as the `postgres`
user into the run directory, loopback port, unix socket in the run directory, default
durability: fsync, synchronous_commit and full_page_writes on), one typed table loaded
with COPY, then the indexes an application would create (primary key on id; time;
tenant, user, entity and action each with time; GIN full text), bytes on disk, the
query client (psycopg), and single-row INSERTs from pgbench at 64 connections."""

import os
import subprocess
import time

import psycopg

from common import log, pct, run, spawn, stop
from queries import PG_DOC
from workload import COLUMNS

BIN = "/usr/lib/postgresql/15/bin"
# Memory for a machine that also runs the benchmark's other systems; durability untouched.
SETTINGS = {
    "listen_addresses": "127.0.0.1", "shared_buffers": "256MB",
    "maintenance_work_mem": "256MB", "max_wal_size": "4GB", "max_connections": "100",
    "timezone": "UTC",
}
INDEXES = [
    ("events_pkey", "ALTER TABLE events ADD PRIMARY KEY (id)"),
    ("events_ts", "CREATE INDEX events_ts ON events (ts)"),
    ("events_tenant_ts", "CREATE INDEX events_tenant_ts ON events (tenant, ts)"),
    ("events_user_ts", "CREATE INDEX events_user_ts ON events (user_id, ts)"),
    ("events_entity_ts", "CREATE INDEX events_entity_ts ON events (entity_type, entity_id, ts)"),
    ("events_action_ts", "CREATE INDEX events_action_ts ON events (action, ts)"),
    ("events_fts", f"CREATE INDEX events_fts ON events USING gin ({PG_DOC})"),
]


def _as_postgres(args, **kw):
    return run(["runuser", "-u", "postgres", "--"] + args, **kw)


class Postgres:
    def __init__(self, root, port):
        self.root, self.port = root, port
        self.data, self.sock = os.path.join(root, "data"), os.path.join(root, "sock")
        os.makedirs(self.sock, exist_ok=True)
        run(["chown", "-R", "postgres:postgres", root])
        _as_postgres([f"{BIN}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--locale=C"], stdout=subprocess.DEVNULL)
        args = [f"{BIN}/postgres", "-D", self.data, "-p", str(port), "-k", self.sock]
        for k, v in SETTINGS.items():
            args += ["-c", f"{k}={v}"]
        self.proc = spawn(["runuser", "-u", "postgres", "--"] + args,
                          stdout=subprocess.DEVNULL,
                          stderr=open(os.path.join(root, "postgres.log"), "w"))
        for _ in range(600):
            try:
                self.conninfo = f"host={self.sock} port={port} user=postgres dbname=postgres"
                psycopg.connect(self.conninfo).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"postgres exited; see {root}/postgres.log")
                time.sleep(0.1)
        raise RuntimeError("postgres did not start")

    def connect(self):
        return psycopg.connect(self.conninfo, autocommit=True)

    def stop(self):
        try:
            _as_postgres([f"{BIN}/pg_ctl", "-D", self.data, "stop", "-m", "fast", "-w"],
                         stdout=subprocess.DEVNULL)
        except RuntimeError as e:
            log(f"postgres: pg_ctl stop failed ({e}); signalling it")
        return stop(self.proc, grace=60)

    def load(self, copy_path):
        cols = ", ".join(f"{c} {t}" for c, t in COLUMNS)
        with self.connect() as c:
            c.execute(f"CREATE TABLE events ({cols})")
            t0 = time.perf_counter()
            with c.cursor() as cur, cur.copy("COPY events FROM STDIN") as cp, \
                    open(copy_path, "rb") as f:
                while chunk := f.read(1 << 20):
                    cp.write(chunk)
            copy_s = time.perf_counter() - t0
            n = c.execute("SELECT count(*) FROM events").fetchone()[0]
            per_index = {}
            t1 = time.perf_counter()
            for name, sql in INDEXES:
                ti = time.perf_counter()
                c.execute(sql)
                per_index[name] = round(time.perf_counter() - ti, 2)
            index_s = time.perf_counter() - t1
            # What an operator runs after a bulk load (autovacuum would, later): the
            # statistics, and the visibility map that lets counts use index-only scans.
            t2 = time.perf_counter()
            c.execute("VACUUM (ANALYZE) events")
            vacuum_s = time.perf_counter() - t2
            c.execute("CHECKPOINT")
        log(f"postgres: COPY {n} rows in {copy_s:.1f} s, indexes in {index_s:.1f} s")
        return {"events": n, "copy_seconds": round(copy_s, 2),
                "copy_events_per_s": round(n / copy_s, 1),
                "index_seconds": round(index_s, 2), "index_seconds_each": per_index,
                "vacuum_analyze_seconds": round(vacuum_s, 2),
                "load_events_per_s_incl_indexes": round(n / (copy_s + index_s), 1)}

    def sizes(self):
        with self.connect() as c:
            r = c.execute("SELECT pg_total_relation_size('events'), pg_relation_size('events'), "
                          "pg_indexes_size('events'), "
                          "coalesce(pg_total_relation_size(reltoastrelid), 0) "
                          "FROM pg_class WHERE relname = 'events'").fetchone()
        return {"total": r[0], "table": r[1], "indexes": r[2], "toast": r[3]}

    def query_runner(self):
        c = psycopg.connect(self.conninfo, autocommit=True)

        def run_q(q):
            return c.execute(q.pg[0], q.pg[1]).fetchall()
        return run_q

    def single_inserts(self, clients, seconds, workdir):
        """pgbench: `clients` connections, each a loop of one-row INSERT transactions
        (an event of ≈600 bytes, updating every index); tps and latency percentiles
        from its per-transaction log."""
        script = os.path.join(workdir, "insert.sql")
        desc = ("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; "
                "logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4 "
                "Jun 14 15:16:02 combo sshd(pam_unix)[19937]: check pass; user unknown "
                "Jul  1 09:01:05 calvisitor-10-105-160-95 com.apple.CDScheduler[43]: Thermal "
                "pressure state: 1 Memory pressure state: 0 pressure")
        with open(script, "w") as f:
            f.write("\\set u random(1, 400)\n\\set e random(1, 99999)\n"
                    "INSERT INTO events (seq, id, ts, action, actor, tenant, category, source, "
                    "status, severity, sev, entity_type, entity_id, entity_name, user_id, "
                    "user_name, session_id, correlation_id, ip, user_agent, duration_ms, "
                    "description, metadata) VALUES (0, gen_random_uuid()::text, now(), "
                    "'update', 'ada.lovelace@acme.example', 'acme', 'billing', 'user', "
                    "'success', 'info', 1, 'invoice', :e, 'INV-2026-' || :e, 'u-' || :u, "
                    "'Ada Lovelace', 'sess_' || md5(random()::text), "
                    "'req-' || substr(md5(random()::text), 1, 16), '203.0.113.7', "
                    "'Mozilla/5.0 (X11; Linux x86_64)', 12, "
                    f"'{desc}', '{{\"app_version\": \"4.9.5\"}}');\n")
        run(["chown", "-R", "postgres:postgres", workdir])
        _as_postgres([f"{BIN}/pgbench", "-n", "-h", self.sock, "-p", str(self.port),
                      "-U", "postgres", "-c", str(clients), "-j", "2", "-T", str(int(seconds)),
                      "-f", script, "-l", "--log-prefix", os.path.join(workdir, "pgbench"),
                      "postgres"], stdout=open(os.path.join(workdir, "pgbench.out"), "w"),
                     stderr=subprocess.STDOUT)
        lat, first, last = [], None, None
        for name in os.listdir(workdir):
            if name.startswith("pgbench.") and name != "pgbench.out":
                with open(os.path.join(workdir, name)) as f:
                    for line in f:
                        p = line.split()
                        lat.append(int(p[2]) / 1e3)
                        t = int(p[4]) + int(p[5]) / 1e6
                        first = t if first is None else min(first, t)
                        last = t if last is None else max(last, t)
        secs = (last - first) if lat and last > first else seconds
        return {"clients": clients, "transactions": len(lat),
                "tps": round(len(lat) / secs, 1),
                "p50_ms": round(pct(lat, 0.5), 2), "p99_ms": round(pct(lat, 0.99), 2)}
