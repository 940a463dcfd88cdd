"""ID linking against PostgreSQL: the bulk import and reception check-in.

Prints, on this machine:

1. bulk import: rows per second of the import job (parse, idempotency check, one-time
   codes, chunked commits) over a 50,000-row Shift_JIS member list with bad rows mixed in
   (target ≥5,000 rows/s);
2. check-in under gunicorn: the server's time for ``POST /t/bench/api/checkin`` (the card's
   signature is made before the clock starts: card time excluded), p50 and p99
   (target p99 ≤50 ms), half the cards linked to a patient number.

The daily status sweep (1,000,000 links against 10,000,000 revocations, ≤20 s) is not
built yet; this bench will measure it when it is.

    .venv/bin/python bench/idlink_bench.py [--rows 50000] [--checkins 2000] [--workers 2]

Needs PostgreSQL at 127.0.0.1:5432 (trust) and Redis at 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from oidc_bench import free_port, fresh_app, start_service, stop  # noqa: E402

DATABASE = "kakehashi_idlink_bench"
ORIGIN = "https://kiosk.bench.example"


def member_list(rows: int) -> bytes:
    lines = ["会員番号,氏名"]
    for n in range(1, rows + 1):
        lines.append(f"M {n:07d},会員" if n % 1000 == 0 else f"M-{n:07d},会員")
    return ("\r\n".join(lines) + "\r\n").encode("cp932")


def measure_import(app: Any, rows: int) -> None:
    from saas import db
    from saas.db import tenant_scope
    from saas.idlink import imports
    from saas.tenants import services as tenants

    raw = member_list(rows)
    with app.app_context():
        tenant = tenants.active_tenant("bench")
        with tenant_scope(db.session, tenant.id):
            began = time.perf_counter()
            batch = imports.preview(tenant, filename="members.csv", raw=raw, by="bench")
            db.session.commit()
            previewed = time.perf_counter() - began
            batch_id = batch.id
        began = time.perf_counter()
        result = imports.run(batch_id, tenant.id)
        imported = time.perf_counter() - began
    print(f"bulk import of {rows:,} rows: preview {rows / previewed:,.0f} rows/s; import job "
          f"{rows / imported:,.0f} rows/s ({result['created']:,} codes in {imported:.1f} s)  (target ≥5,000 rows/s)")


def prepare_checkin(app: Any, cards: int) -> tuple[str, list[Any]]:
    from saas import db
    from saas.db import tenant_scope
    from saas.idlink import checkin, services
    from saas.oidc import login
    from saas.sandbox import jobs as sandbox_jobs
    from saas.sandbox import services as sandbox
    from saas.tenants import services as tenants
    from tests.test_jpki_webeid import sign_token

    issued = []
    with app.test_request_context(base_url="http://127.0.0.1"):
        tenant = tenants.active_tenant("bench")
        for n in range(cards):
            issued.append(sandbox.issue_card(seed=1000 + n))
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
        with tenant_scope(db.session, tenant.id):
            _device, key = checkin.register_device(tenant, name="受付", kind="reception", origin=ORIGIN)
            for n, card in enumerate(issued[: cards // 2]):  # half the patients are linked already
                nonce = login.issue_challenge().nonce
                person = login.verify_card_login(tenant, sign_token(card, ORIGIN, nonce), nonce=nonce,
                                                 origin=ORIGIN)
                services.link(tenant, local_id=f"P-{n:05d}", person_id=person.person_id, sub=person.sub,
                              assurance="reception", made_by="bench")
            db.session.commit()
    return key, issued


def measure_checkin(base: str, key: str, cards: list[Any], count: int) -> None:
    import requests

    from tests.test_jpki_webeid import sign_token

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    timings, results = [], {}
    for n in range(count):
        card = cards[n % len(cards)]
        challenge = session.post(f"{base}/t/bench/api/checkin/challenge").json()["challenge"]
        token = sign_token(card, ORIGIN, challenge)  # the card's part: not timed
        began = time.perf_counter()
        answer = session.post(f"{base}/t/bench/api/checkin", json={"token": token, "challenge": challenge})
        timings.append(time.perf_counter() - began)
        results[answer.json().get("result")] = results.get(answer.json().get("result"), 0) + 1
    timings.sort()
    print(f"check-in (server time, card excluded): p50 {statistics.median(timings) * 1000:.1f} ms, "
          f"p99 {timings[int(len(timings) * 0.99) - 1] * 1000:.1f} ms over {count:,}; {results}  "
          f"(target p99 ≤50 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--checkins", type=int, default=2_000)
    parser.add_argument("--cards", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        instance = Path(directory)
        app = fresh_app(DATABASE, instance, PUBLIC_URL="http://127.0.0.1")
        from saas import db
        from saas.tenants import services as tenants

        with app.app_context():
            tenants.create_tenant(slug="bench", display_name="ベンチ病院", kind="hospital")
            db.session.commit()
        measure_import(app, options.rows)
        key, cards = prepare_checkin(app, options.cards)
        db.get_database(app).engine.dispose()
        port = free_port()
        service = start_service(options.workers, 4, port, instance, log_level="WARNING", database=DATABASE)
        try:
            measure_checkin(f"http://127.0.0.1:{port}", key, cards, options.checkins)
        finally:
            stop(service)


if __name__ == "__main__":
    main()
