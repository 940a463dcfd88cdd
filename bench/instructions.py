"""Instructions per token exchange, per card login, per event committed and per event
delivered, counted by callgrind: a figure that does not drift with the machine's speed,
for telling a small change's effect.

The shared machines these benches run on wander by ±20 % from minute to minute, so an
A/B of a change worth 3 % is lost in the throughput figures of ``oidc_bench.py``. Here the
service runs in this process on Flask's test client (no gunicorn, no sockets to it),
against PostgreSQL and Redis, under ``valgrind --tool=callgrind`` with instrumentation on
only while the measured requests run; the same code gives the same count to within a few
tenths of a percent, whatever else the machine is doing. The counts include what the
relying party and the agent do in this process (the client assertion's and the card's
signatures, the test client), which a change of the service leaves as they are.

Counts weigh code unlike time does: one RSA-2048 signature (OpenSSL's AVX2 code) is about
6.3M instructions and 0.3 ms, while the interpreter's work runs at about one instruction a
cycle or less. Compare counts of the same requests between two trees, not across kinds of
work.

    .venv/bin/python bench/instructions.py [--exchanges 40] [--logins 15] [--events 300]

The events' figures leave out what PostgreSQL does (another process), and rq's handling
of the webhook job: ``events_bench.py`` measures the whole pipeline's CPU by process.

Compare two trees by running it in each (``git worktree add``). Needs valgrind
(Debian's package), PostgreSQL at 127.0.0.1:5432 (trust) and Redis at 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BASE = "http://127.0.0.1:5999"  # the issuer's origin, as the test client presents it


class TestClientBrowser:
    """``oidc_bench.Browser``'s interface over Flask's test client."""

    def __init__(self, app: Any) -> None:
        self.app, self.client, self.cookies = app, app.test_client(), {}

    def request(self, method: str, url: str, *, form: dict[str, str] | None = None, json_body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        if not self.cookies:  # cleared: a new browser
            self.client = self.app.test_client()
        parts = urlsplit(url)
        response = self.client.open(parts.path + (f"?{parts.query}" if parts.query else ""), method=method,
                                    base_url=BASE, headers=headers or {}, data=form, json=json_body)
        self.cookies["used"] = "1"
        return response.status_code, response.headers, response.get_data()


def child(exchanges: int, logins: int, events: int, signals: Path) -> None:
    """Set up, then run each measured phase between the parent's go and our done."""
    import oidc_bench

    instance = Path(tempfile.mkdtemp(prefix="instructions-"))
    try:
        setup = oidc_bench.prepare(instance)
        from saas import create_app

        app = create_app({**oidc_bench.service_settings(BASE, instance),
                          # Cached rows as in production, and not lapsing under valgrind's slowness
                          # (a lapse would add a query to whichever request met it).
                          "ROW_CACHE_SECONDS": "3600",
                          # The login counters' writer thread would run a varying number of
                          # times within the measured window; its cost is not a login's.
                          "BATCH_FLUSH_SECONDS": "3600"})
        devnull = open(os.devnull, "w")  # noqa: SIM115 - the log lines are written, and thrown away
        for handler in logging.getLogger().handlers:
            handler.setStream(devnull)  # type: ignore[attr-defined]
        site = oidc_bench.Kakehashi(BASE, setup)
        site.http, site.backend = TestClientBrowser(app), TestClientBrowser(app)
        for _ in range(5):  # keys read, caches filled, statements prepared
            site.http.cookies.clear()
            site.exchange(*site.code())
        codes = []
        for _ in range(exchanges):
            site.http.cookies.clear()
            codes.append(site.code())

        def phase(name: str, work: Any) -> None:
            gc.collect()  # each phase starts from a collected heap, whatever ran before it
            (signals / f"{name}.ready").touch()
            while not (signals / f"{name}.go").exists():
                time.sleep(0.02)
            work()
            (signals / f"{name}.done").touch()
            while not (signals / f"{name}.counted").exists():
                time.sleep(0.02)

        def run_exchanges() -> None:
            for code, verifier in codes:
                site.exchange(code, verifier)

        def run_logins() -> None:
            for _ in range(logins):
                site.http.cookies.clear()
                site.exchange(*site.code())

        phase("exchanges", run_exchanges)
        phase("logins", run_logins)
        if events:
            receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(Path(__file__).resolve().parent),
                                         str(RECEIVER_PORT)])
            try:
                run_events, run_deliveries = event_phases(app, events)
                phase("events", run_events)
                phase("deliveries", run_deliveries)
            finally:
                receiver.kill()
    finally:
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c",
                        f"drop database if exists {oidc_bench.DATABASE}"], capture_output=True)
        shutil.rmtree(instance, ignore_errors=True)


RECEIVER_PORT = 18999
# The events bench's receiver (a keep-alive HTTP server answering 200), in a process of
# its own: not under valgrind, and not counted.
RECEIVER = ("import multiprocessing, sys; sys.path.insert(0, sys.argv[1]); import events_bench; "
            "events_bench.receive(int(sys.argv[2]), multiprocessing.Value('l', 0))")


def event_phases(app: Any, count: int) -> tuple[Any, Any]:
    """The events bench's two halves, in this process: ``count`` events committed one per
    transaction (as a state change would), then the relay's and a worker's work of
    delivering them to a receiver on loopback (fan-out, claim, the webhook job), without
    rq's own handling of the job."""
    from saas import db
    from saas.db import tenant_scope
    from saas.events import relay, services
    from saas.tenants import services as tenants

    with app.app_context():
        tenant = tenants.active_tenant("bench")
        with tenant_scope(db.session, tenant.id):
            services.create_endpoint(tenant, url=f"http://127.0.0.1:{RECEIVER_PORT}/hook", event_types=["*"])
        db.session.commit()

    def emit(n: int) -> None:
        with app.app_context():
            tenant = tenants.active_tenant("bench")
            db.bind_tenant(db.session, tenant.id)  # as a /t/<slug>/ request is
            for index in range(n):
                services.emit(tenant, "oidc.session.ended", f"sub:{index}", {"n": index})
                db.session.commit()

    def deliver() -> int:
        with app.app_context():
            relay.fan_out()
            db.session.commit()
            token, ids = relay.claim(count)
            db.session.commit()
            done = relay.deliver(token, ids)
            db.session.commit()
            return done["succeeded"]

    emit(20)  # statements prepared, caches filled
    if deliver() != 20:
        raise SystemExit("the warm-up's deliveries did not all succeed")

    def run_deliveries() -> None:
        if deliver() != count:
            raise SystemExit("the measured deliveries did not all succeed")

    return lambda: emit(count), run_deliveries


def wait_for(path: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    while not path.exists():
        if process.poll() is not None:
            raise SystemExit(f"the measured process ended early:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=40)
    parser.add_argument("--logins", type=int, default=15)
    parser.add_argument("--events", type=int, default=300, help="events committed, then delivered (0: none)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.exchanges, args.logins, args.events, Path(args.child))
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="instructions-"))
    log = work / "child.log"
    out = work / "callgrind.out"
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--child", str(work), "--exchanges", str(args.exchanges),
         "--logins", str(args.logins), "--events", str(args.events)],
        cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"}, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    print(f"callgrind, in-process (Flask test client), PostgreSQL + Redis, tree {ROOT}")
    try:
        phases = [("exchanges", args.exchanges), ("logins", args.logins)]
        if args.events:
            phases += [("events", args.events), ("deliveries", args.events)]
        for name, count in phases:
            wait_for(work / f"{name}.ready", process, log)
            control(process.pid, "--zero")
            control(process.pid, "--instr=on")
            (work / f"{name}.go").touch()
            wait_for(work / f"{name}.done", process, log)
            control(process.pid, "--instr=off")
            control(process.pid, f"--dump={name}")
            (work / f"{name}.counted").touch()
            dumps = sorted(work.glob("callgrind.out*"), key=lambda path: path.stat().st_mtime)
            text = dumps[-1].read_text(errors="replace")
            found = re.search(r"^totals: (\d+)", text, re.MULTILINE)
            if found is None:
                raise SystemExit(f"no count in {dumps[-1]}")
            label = {"exchanges": "token exchange (code + PKCE + private_key_jwt)",
                     "logins": "full card login (authorize → page → card → token)",
                     "events": "event committed (one per transaction)",
                     "deliveries": "event delivered (fan-out, claim, post, record)"}[name]
            print(f"  {label}: {int(found.group(1)) / count / 1e6:7.2f} M instructions each ({count} measured)")
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
