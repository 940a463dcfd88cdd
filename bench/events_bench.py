"""Events committed and delivered per second, with PostgreSQL, Redis and rq workers.

Producers commit events (one per transaction, as a state change would) for a tenant with
one webhook endpoint; ``kakehashi events relay`` claims them and rq workers post them,
signed, to a local receiver (a separate process) that answers 200. Prints events committed
per second, and events delivered per second from the first commit to the last delivery,
with 2, 4 and 8 producer processes in turn: as many requests committing at once, which
share the server's flushes of its log (more of them, fewer flushes an event) and the
cores. Target: ≥2,000/s delivered on 2 cores with two workers, at the best of them.

Then the console dashboard's render time (p50/p95 over repeated requests, in-process) with
an audit log of ``--audit-rows`` entries (a real hash chain, loaded with COPY) and 30 days
of login counters; and the audit log's first page, a page deep in it, and a filter.
Target: p95 ≤150 ms with 1,000,000 audit rows.

    .venv/bin/python bench/events_bench.py [--events 20000] [--producers 2,4,8] [--workers 2]

Needs PostgreSQL at 127.0.0.1:5432 (trust) and Redis at 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import machine  # noqa: E402 - bench/machine.py, beside this script

PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
DATABASE = "kakehashi_events_bench"
REDIS = "redis://127.0.0.1:6379/0"
KEK = base64.b64encode(b"v" * 32).decode()


NODE_RECEIVER = """
const http = require("node:http");
let count = 0;
http.createServer((req, res) => {
  req.on("data", () => {});
  req.on("end", () => { count += 1; res.writeHead(200, {"content-length": "0"}); res.end(); });
}).listen(Number(process.argv[1]), "127.0.0.1");
http.createServer((req, res) => { res.end(String(count)); }).listen(Number(process.argv[2]), "127.0.0.1");
"""


class NodeReceiver:
    """A receiver that costs little CPU (node's HTTP server), so that the machine's cores
    go to the service; counts what it received."""

    def __init__(self, port: int) -> None:
        self.count_port = port + 1
        self.process = subprocess.Popen(["node", "-e", NODE_RECEIVER, str(port), str(self.count_port)])
        time.sleep(0.5)

    @property
    def count(self) -> int:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.count_port}/") as response:
            return int(response.read())

    def stop(self) -> None:
        self.process.kill()


class PythonReceiver:
    def __init__(self, port: int) -> None:
        self.counter: Any = multiprocessing.Value("l", 0)
        self.process = multiprocessing.Process(target=receive, args=(port, self.counter), daemon=True)
        self.process.start()

    @property
    def count(self) -> int:
        return int(self.counter.value)

    def stop(self) -> None:
        self.process.kill()


def receive(port: int, counter: Any) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver

        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            self.rfile.read(int(self.headers["Content-Length"]))
            with counter.get_lock():
                counter.value += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128

    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


class CpuMeter:
    """CPU seconds by part of the pipeline, from /proc: PostgreSQL, Redis, the receiver, the
    relay and the workers (with their finished work horses and connections, through the
    parents' cutime/cstime). Producers count their own. What each event costs, by part,
    says where the cores go; the machine's speed drifts, CPU per event far less."""

    PARTS = ("postgres", "redis", "receiver", "relay", "workers")

    def __init__(self, receiver_pid: int | None) -> None:
        self.receiver_pid = receiver_pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def _part(self, pid: str, comm: str) -> str | None:
        if comm == "postgres":
            return "postgres"
        if comm.startswith("redis-server"):
            return "redis"
        if self.receiver_pid is not None and int(pid) == self.receiver_pid:
            return "receiver"
        if comm.startswith("python") or comm.startswith("rq:"):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                return None
            if b"relay" in command:
                return "relay"
            if b"worker" in command:
                return "workers"
        return None

    def read(self) -> dict[str, float]:
        used = dict.fromkeys(self.PARTS, 0.0)
        used["wal"] = self.wal()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                head, tail = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
            except OSError:
                continue  # gone meanwhile
            part = self._part(pid, head.split("(", 1)[1])
            if part is not None:
                fields = tail.split()
                used[part] += sum(int(fields[n]) for n in (11, 12, 13, 14)) / self.tick
        return used

    @staticmethod
    def wal() -> float:
        """Where PostgreSQL's write-ahead log is, in bytes: what it wrote in between is a
        figure of its work that, unlike its CPU time, does not drift with the machine (A/B
        of a schema or statement change on a noisy machine)."""
        import psycopg

        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as connection:
            return float(connection.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()[0])

    @staticmethod
    def report(before: dict[str, float], after: dict[str, float], producers: float, events: int) -> str:
        costs = {"producers": producers, **{part: after[part] - before[part] for part in before if part != "wal"}}
        total = sum(costs.values())
        parts = ", ".join(f"{part} {1e6 * cpu / events:.0f}" for part, cpu in costs.items())
        return (f"             CPU per event (µs): {parts}; total {1e6 * total / events:.0f}; "
                f"PostgreSQL's WAL {(after['wal'] - before['wal']) / events:.0f} bytes an event")


def config(instance: Path, prefix: str) -> dict[str, Any]:
    return {"DATABASE_URL": f"{PG}/{DATABASE}", "REDIS_URL": REDIS, "SECRET_KEY": "e" * 48,
            "KEY_ENCRYPTION_KEY": KEK, "INSTANCE_PATH": str(instance), "LOG_LEVEL": "WARNING",
            "JOB_QUEUE_PREFIX": prefix}


def _produce(settings: dict[str, Any], count: int, start: float, out: Any) -> None:
    from saas import create_app, db
    from saas.events import services
    from saas.tenants import services as tenants

    app = create_app(settings)
    with app.app_context():
        tenant = tenants.active_tenant("bench")
        db.bind_tenant(db.session, tenant.id)  # as a /t/<slug>/ request is
        while time.time() < start:
            time.sleep(0.001)
        began, cpu = time.perf_counter(), time.process_time()
        for n in range(count):
            services.emit(tenant, "oidc.session.ended", f"sub:{os.getpid()}-{n}", {"n": n})
            db.session.commit()
        out.put((time.perf_counter() - began, time.process_time() - cpu))


def produce(settings: dict[str, Any], producers: int, per: int) -> tuple[float, float, float]:
    """Seconds for ``producers`` processes to commit ``per`` events each, the CPU seconds
    they used, and when they started (``time.time()``: all at once, once each is set up)."""
    out: Any = multiprocessing.Queue()
    start = time.time() + 1.5
    processes = [multiprocessing.Process(target=_produce, args=(settings, per, start, out)) for _ in range(producers)]
    for process in processes:
        process.start()
    results = [out.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    return max(seconds for seconds, _ in results), sum(cpu for _, cpu in results), start


def wait_for(receiver: Any, count: int) -> float:
    deadline = time.time() + 600
    while receiver.count < count:
        if time.time() > deadline:
            raise SystemExit(f"only {receiver.count} of {count} deliveries arrived in 10 minutes")
        time.sleep(0.02)
    return time.time()


def load_audit_log(settings: dict[str, Any], tenant_id: int, rows: int) -> None:
    """``rows`` audit entries with a valid hash chain, written with COPY."""
    import hashlib
    import json
    from datetime import UTC, datetime, timedelta

    import psycopg

    actions = ["webhook.created", "webhook.pinged", "oidc_client.updated", "api_key.created", "member.invited"]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    prev = "0" * 64
    url = settings["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        with cursor.copy("COPY audit_entries (tenant_id, seq, at, actor, action, target, ip, details, prev_hash, hash) "
                         "FROM STDIN") as copy:
            for seq in range(1, rows + 1):
                at = start + timedelta(seconds=30 * seq)
                actor, action = "usr_bench (owner@bench.example)", actions[seq % len(actions)]
                target, ip, details = f"whk_{seq:026d}", "192.0.2.1", json.dumps({"n": seq})
                canonical = json.dumps({"seq": seq, "at": at.isoformat(), "actor": actor, "action": action,
                                        "target": target, "ip": ip, "details": {"n": seq}}, sort_keys=True,
                                       ensure_ascii=False, separators=(",", ":"))
                digest = hashlib.sha256(f"{prev}\n{canonical}".encode()).hexdigest()
                copy.write_row((tenant_id, seq, at, actor, action, target, ip, details, prev, digest))
                prev = digest
        cursor.execute("UPDATE tenants SET audit_seq = %s, audit_head = %s WHERE id = %s", (rows, prev, tenant_id))
        cursor.execute("ANALYZE audit_entries")


def dashboard(settings: dict[str, Any], audit_rows: int) -> None:
    import statistics
    from datetime import timedelta

    from sqlalchemy import insert

    from saas import clock, create_app, db
    from saas.db import tenant_scope
    from saas.oidc import clients, stats
    from saas.oidc.models import LoginStat
    from saas.tenants import services as tenants
    from saas.tenants.accounts import hash_password
    from saas.tenants.models import ConsoleUser, Membership, Role

    app = create_app({**settings, "ARGON2_PROFILE": "CHEAPEST"})
    with app.app_context():
        tenant = tenants.active_tenant("bench")
        user = ConsoleUser(email="owner@bench.example", name="Bench", password_hash=hash_password("bench"),
                           email_verified_at=clock.now(), failed_logins=0, is_operator=False, created_at=clock.now())
        db.session.add(user)
        db.session.flush()
        with tenant_scope(db.session, tenant.id):
            db.session.add(Membership(tenant_id=tenant.id, user_id=user.id, role=Role.OWNER, created_at=clock.now()))
            rows = []
            for n in range(5):
                client, _ = clients.register_client(tenant, name=f"App {n}", redirect_uris=["https://a.example/cb"],
                                                    scopes=["openid"], auth_method="client_secret_basic")
                for day in range(30):
                    for outcome, count in (("success", 500 + day), ("expired", 3), ("revoked:keyCompromise", 1)):
                        rows.append({"tenant_id": tenant.id, "day": stats.today() - timedelta(days=day),
                                     "client_id": client.id, "outcome": outcome, "count": count})
            db.session.execute(insert(LoginStat), rows)
        db.session.commit()
        tenant_id, user_id = tenant.id, user.public_id
    began = time.perf_counter()
    load_audit_log(settings, tenant_id, audit_rows)
    print(f"\nconsole, {audit_rows:,} audit entries (loaded in {time.perf_counter() - began:.0f} s), "
          "30 days × 5 clients of login counters; in-process, one request at a time:")
    client = app.test_client()
    with client.session_transaction() as session:
        now = int(time.time())
        session.update(console_user=user_id, console_started=now, console_seen=now, console_auth_at=now)
    for label, path, target in (("dashboard", "/t/bench/console/", " target p95 ≤150 ms"),
                                ("audit log, newest", "/t/bench/console/audit", ""),
                                ("audit log, deep page", f"/t/bench/console/audit?before={audit_rows // 2}", ""),
                                ("audit log, one action", "/t/bench/console/audit?action=member.invited", "")):
        for _ in range(10):
            client.get(path)  # warm
        timings = []
        for _ in range(200):
            began = time.perf_counter()
            response = client.get(path)
            timings.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, response.status_code
        timings.sort()
        print(f"  {label:22} p50 {statistics.median(timings):6.1f} ms   p95 {timings[189]:6.1f} ms{target}")
    db.get_database(app).engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--producers", default="2,4,8",
                        help="producer processes: one run of phases 1 and 3 per count (comma-separated), "
                             "as many requests committing at once")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-events", action="store_true", help="only the dashboard")
    args = parser.parse_args()

    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", f"drop database if exists {DATABASE}",
                    "-c", f"create database {DATABASE}"], check=True, capture_output=True)
    from alembic import command

    from saas import create_app, db
    from saas.cli import alembic_config
    from saas.db import tenant_scope
    from saas.events import services
    from saas.tenants import services as tenants

    command.upgrade(alembic_config(f"{PG}/{DATABASE}"), "head")
    instance = Path(tempfile.mkdtemp(prefix="events-bench-"))
    prefix = f"kkbench-{secrets.token_hex(3)}-"
    settings = config(instance, prefix)
    port = 18000 + secrets.randbelow(2000)
    receiver = NodeReceiver(port) if shutil.which("node") else PythonReceiver(port)
    meter = CpuMeter(receiver.process.pid)

    app = create_app(settings)
    with app.app_context():
        tenant = tenants.create_tenant(slug="bench", display_name="ベンチ", kind="bank")
        db.session.commit()
        with tenant_scope(db.session, tenant.id):
            services.create_endpoint(tenant, url=f"http://127.0.0.1:{port}/hook", event_types=["*"])
        db.session.commit()
    db.get_database(app).engine.dispose()

    env = {**os.environ, **{k: str(v) for k, v in settings.items()}, "KAKEHASHI_ENV": "development",
           "PYTHONPATH": str(ROOT)}
    kakehashi = [sys.executable, "-m", "saas.cli"]
    helpers: list[subprocess.Popen[bytes]] = []
    counts = [int(count) for count in args.producers.split(",")]
    print(f"machine: {os.cpu_count()} cores, {machine.reference()}; PostgreSQL + Redis; {'/'.join(map(str, counts))} "
          f"producers, relay + {args.workers} rq workers; {args.events} events per run, one endpoint on loopback "
          f"(receiver: {type(receiver).__name__})")
    try:
        if args.skip_events:
            dashboard(settings, args.audit_rows)
            return
        # 1. Committing alone: what the outbox costs a state change, at each concurrency.
        backlog = 0
        for count in counts:
            per = args.events // count
            before = meter.read()
            seconds, producers_cpu, _ = produce(settings, count, per)
            print(f"  committed  {per * count / seconds:8.0f} events/s   {count} producers alone, one event per "
                  "transaction")
            print(meter.report(before, meter.read(), producers_cpu, per * count))
            backlog += per * count

        # 2. Delivering alone: the backlog of phase 1 drained by the relay and the workers.
        helpers += [subprocess.Popen([*kakehashi, "worker", "--queue", "webhooks"], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=(instance / f"worker{n}.log").open("w"),
                                     start_new_session=True) for n in range(args.workers)]
        time.sleep(3)  # the workers are up and waiting
        began, before = time.time(), meter.read()
        helpers.append(subprocess.Popen([*kakehashi, "events", "relay"], cwd=ROOT, env=env,
                                        stdout=subprocess.DEVNULL, stderr=(instance / "relay.log").open("w"),
                                        start_new_session=True))
        drained = wait_for(receiver, backlog)
        print(f"  delivered  {backlog / (drained - began):8.0f} events/s   backlog of {backlog} drained by the relay "
              f"and {args.workers} workers (from starting the relay)")
        print(meter.report(before, meter.read(), 0.0, backlog) + "   (the relay's start-up included)")

        # 3. Both at once: first commit to last delivery (not the producers' start-up).
        delivered, rates = backlog, []
        for count in counts:
            per = args.events // count
            before = meter.read()
            produced, producers_cpu, began = produce(settings, count, per)
            delivered += per * count
            finished = wait_for(receiver, delivered)
            rates.append((per * count / (finished - began), count))
            print(f"  end to end {rates[-1][0]:8.0f} events/s   {count} producers ({per * count / produced:.0f}/s) "
                  "and delivering at once, first commit → last delivery")
            print(meter.report(before, meter.read(), producers_cpu, per * count))
        best, at = max(rates)
        print(f"  end to end, best: {best:.0f} events/s with {at} producers   target ≥2,000/s")
        for helper in helpers:
            os.killpg(helper.pid, signal.SIGTERM)
        dashboard(settings, args.audit_rows)
    finally:
        for helper in helpers:
            os.killpg(helper.pid, signal.SIGTERM)
        for helper in helpers:
            helper.wait(15)
        receiver.stop()
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c",
                        f"drop database if exists {DATABASE} with (force)"], capture_output=True)
        from redis import Redis

        connection = Redis.from_url(REDIS)
        for key in connection.scan_iter(f"rq:*{prefix}*"):
            connection.delete(key)


if __name__ == "__main__":
    main()
