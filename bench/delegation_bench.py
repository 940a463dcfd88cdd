"""The powers-of-attorney API under gunicorn with PostgreSQL, measured from outside.

Prints, on this machine:

1. fetch by id with a signed receipt (``GET /t/bench/api/powers/{id}``, a relying party's
   key, a random power of 500 each time, keep-alive): requests per second and p50/p99.
   Target ≥1,000 req/s and p99 ≤25 ms on 2 cores. The load comes from wrk (Debian's
   package, installed when missing and root; ``--generator python`` or no wrk: Python
   clients on http.client, which take about a sixth of what the service spends).
2. batch lookups of 500 ids (``POST /t/bench/api/powers/lookup``): lookups per second
   and p50/p99 per lookup;
3. fetch by id again with the tenant live (a ``kk_live_`` key), as production's relying
   parties see it: the tenant's row is kept per process either way, but a sandbox tenant's
   mode is read afresh for its ``kk_test_`` key (going live must stop test keys at once).

The 500 powers are signed once in-process at set-up (the representative's card through
the same services as the signing ceremony), their records then saying live mode as a live
card's would (a live key finds no sandbox power; a test key finds both). Client and servers share the machine's cores;
each line gives the service's CPU per request too (from /proc), steadier than the rates.

    .venv/bin/python bench/delegation_bench.py [--seconds 15] [--clients 8] [--workers 2] [--threads 4]
        [--generator wrk|python]

Needs PostgreSQL at 127.0.0.1:5432 (trust) and Redis at 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from oidc_bench import free_port, fresh_app, start_service, stop, tree_cpu  # noqa: E402

DATABASE = "kakehashi_delegation_bench"
POWERS = 500


def prepare(instance: Path) -> dict[str, Any]:
    """A fresh database with a tenant, a register-confirmed representative, 500 signed
    powers, and a relying party's key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    from cryptography.hazmat.primitives.serialization import Encoding
    from sqlalchemy import select

    from saas import clock, db
    from saas.db import tenant_scope
    from saas.delegation import records
    from saas.delegation import services as powers
    from saas.jpki.certificates import CertificateKind, parse_certificate
    from saas.sandbox import jobs as sandbox_jobs
    from saas.sandbox import register
    from saas.sandbox import services as sandbox
    from saas.sandbox.models import SandboxCertificate
    from saas.stores import jpki_stores
    from saas.tenants import apikeys
    from saas.tenants import services as tenants
    from saas.tenants.models import TenantMode

    app = fresh_app(DATABASE, instance, PUBLIC_URL="http://127.0.0.1")
    with app.test_request_context(base_url="http://127.0.0.1"):
        tenant = tenants.create_tenant(slug="bench", display_name="ベンチ調達", kind="municipality")
        card = sandbox.issue_card(seed=9)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        holder = db.session.scalar(select(SandboxCertificate).where(
            SandboxCertificate.serial == card.auth.certificate.serial_number)).person
        corporation = register.register_corporation(name="株式会社ベンチ", address="東京都千代田区霞が関１丁目",
                                                    representative=holder)
        db.session.commit()
        # The person the card's login makes (the ceremony pairs the signature certificate with it).
        auth = parse_certificate(card.auth.certificate.public_bytes(Encoding.DER))
        anchor = sandbox.trust_stores().auth.validate(auth, at=clock.now()).anchor
        person = jpki_stores().persons.resolve(anchor.key_id, auth.serial, CertificateKind.AUTH, at=clock.now())
        ids = []
        with tenant_scope(db.session, tenant.id):
            for i in range(POWERS):
                power = powers.create_draft(tenant, {
                    "principal": {"corporate_number": corporation.corporate_number, "name": "株式会社ベンチ",
                                  "address": "東京都千代田区霞が関１丁目"},
                    "agents": [{"name": f"代理 {i:03d}", "affiliation": "調達部"}],
                    "matters": ["入札及び見積りに関する件"],
                    "authorization_details": [{"type": "e_procurement", "actions": ["bid"]}],
                    "valid_until": (clock.now() + timedelta(days=300)).isoformat()}, actor="bench")
                powers.submit(tenant, power, actor="bench")
                signing = powers.start_signing(tenant, power)
                signature = card.signature.key.sign(signing.digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
                powers.complete_signing(tenant, power, signature=signature,
                                        certificate=card.signature.certificate.public_bytes(Encoding.DER),
                                        expected_person=person)
                record = json.loads(power.record or "")
                body = json.loads(records.unb64u(record["signature"]["payload"]))
                record["signature"]["payload"] = records.b64u(records.canonical({**body, "mode": "live"}))
                power.record = json.dumps(record, ensure_ascii=False)
                power.record_digest = records.sha256_hex(records.canonical(record))
                ids.append(power.public_id)
            _row, key = apikeys.create(tenant, name="bench RP", scopes=["delegation:read"], expires_at=None, by=None)
            # A live relying party's key, for the second run (the tenant goes live for it).
            tenant.mode = TenantMode.LIVE
            _row, live_key = apikeys.create(tenant, name="bench RP (live)", scopes=["delegation:read"],
                                            expires_at=None, by=None)
            tenant.mode = TenantMode.SANDBOX
            db.session.commit()
        from sqlalchemy import text

        with db.get_database(app).engine.connect() as connection:  # statistics, as autovacuum would gather
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    db.get_database(app).engine.dispose()
    return {"ids": ids, "key": key, "live_key": live_key}


def _fetch_worker(base: str, key: str, ids: list[str], seconds: float, queue: Any) -> None:
    """A relying party's loop on one keep-alive connection (http.client: the load
    generator should cost the shared cores little)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Authorization": f"Bearer {key}"}
    latencies, failures = [], 0
    rng = random.Random()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.perf_counter()
        connection.request("GET", f"/t/bench/api/powers/{rng.choice(ids)}", headers=headers)
        response = connection.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - began)
        failures += response.status != 200 or b"receipt" not in body
    connection.close()
    queue.put((latencies, failures))


WRK_SCRIPT = """
local ids = {%(ids)s}
local headers = {["Authorization"] = "Bearer %(key)s"}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) failures = 0 end
function request()
  return wrk.format("GET", "/t/bench/api/powers/" .. ids[math.random(#ids)], headers)
end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"receipt"', 1, true) then failures = failures + 1 end
end
function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do failed = failed + thread:get("failures") end
  io.write(string.format("RESULT %%d %%f %%f %%f %%d\\n", summary.requests, summary.duration / 1e6,
                         latency:percentile(50) / 1000, latency:percentile(99) / 1000, failed))
end
"""


def wrk() -> str | None:
    """wrk (Debian's package), installed when missing and root: an epoll load generator in C
    costs the two shared cores a fraction of what Python clients do (0.24 ms per fetch)."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("wrk")
    return found


def run_wrk(command: str, base: str, key: str, ids: list[str], seconds: float, connections: int,
            service: int) -> tuple[float, float, float, int, float]:
    """:func:`run` for fetches, with wrk (one thread, ``connections`` keep-alive connections,
    a random power each request): (req/s, p50 ms, p99 ms, failures, service CPU ms each)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"ids": ", ".join(f'"{i}"' for i in ids), "key": key})
    try:
        cpu = tree_cpu(service)
        output = subprocess.run([command, "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "10s",
                                 "-s", script.name, base], capture_output=True, text=True, check=True).stdout
        cpu = tree_cpu(service) - cpu
    finally:
        os.unlink(script.name)
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    requests, duration, p50, p99, failed = line.split()[1:]
    return (int(requests) / float(duration), float(p50), float(p99), int(failed),
            cpu * 1000 / max(1, int(requests)))


def _batch_worker(base: str, key: str, ids: list[str], seconds: float, queue: Any) -> None:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    latencies, failures = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.perf_counter()
        response = session.post(f"{base}/t/bench/api/powers/lookup", json={"ids": ids})
        latencies.append(time.perf_counter() - began)
        failures += response.status_code != 200 or len(response.json()["data"]) != len(ids)
    queue.put((latencies, failures))


def run(worker: Any, clients: int, seconds: float, *args: Any, service: int | None = None
        ) -> tuple[float, float, float, int, float]:
    """(requests per second, p50 ms, p99 ms, failures, the service's CPU ms per request)."""
    queue: Any = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=worker, args=(*args, seconds, queue)) for _ in range(clients)]
    began = time.perf_counter()
    cpu = tree_cpu(service) if service else 0.0
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    elapsed = time.perf_counter() - began
    cpu = tree_cpu(service) - cpu if service else float("nan")
    for process in processes:
        process.join()
    latencies = sorted(value for found, _ in results for value in found)
    failures = sum(failed for _, failed in results)
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    return (len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000, failures,
            cpu * 1000 / max(1, len(latencies)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--generator", choices=("wrk", "python"), default="wrk",
                        help="the fetches' load generator (wrk falls back to Python clients when missing)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        instance = Path(directory)
        print(f"setting up {POWERS} signed powers …", flush=True)
        setup = prepare(instance)
        port = free_port()
        service = start_service(options.workers, options.threads, port, instance, log_level="WARNING",
                                database=DATABASE)
        base = f"http://127.0.0.1:{port}"
        try:
            command = None if options.generator == "python" else wrk()
            generator = (f"wrk, {options.clients} connections" if command else
                         f"{options.clients} Python clients")

            def fetches(key: str) -> tuple[float, float, float, int, float]:
                if command:
                    run_wrk(command, base, key, setup["ids"], 2, options.clients, service.pid)  # warm-up
                    return run_wrk(command, base, key, setup["ids"], options.seconds, options.clients, service.pid)
                run(_fetch_worker, options.clients, 2, base, key, setup["ids"])  # warm-up
                return run(_fetch_worker, options.clients, options.seconds, base, key, setup["ids"],
                           service=service.pid)

            rate, p50, p99, failed, cpu = fetches(setup["key"])
            print(f"fetch by id with receipt: {rate:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                  f"{failed} failed, {cpu:.2f} ms of service CPU each  (target ≥1,000 req/s, p99 ≤25 ms; "
                  f"{options.workers} workers × {options.threads} threads, {generator})")
            rate, p50, p99, failed, cpu = run(_batch_worker, max(1, options.clients // 4), options.seconds, base,
                                              setup["key"], setup["ids"], service=service.pid)
            print(f"batch lookup of {POWERS}: {rate:,.1f} lookups/s ({rate * POWERS:,.0f} powers/s), "
                  f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, {failed} failed, {cpu:.1f} ms of service CPU each")
            # The same tenant live, as production's relying parties see one: its row is kept
            # in each process (ROW_CACHE_SECONDS), so a warm fetch is the power's one query.
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", DATABASE, "-q", "-c",
                            "update tenants set mode = 'live' where slug = 'bench'"], check=True)
            rate, p50, p99, failed, cpu = fetches(setup["live_key"])
            print(f"fetch by id with receipt, live tenant: {rate:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                  f"{failed} failed, {cpu:.2f} ms of service CPU each  (target ≥1,000 req/s, p99 ≤25 ms)")
        finally:
            stop(service)


if __name__ == "__main__":
    main()
