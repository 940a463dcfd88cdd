"""ID linking against PostgreSQL: the bulk import and reception check-in.

Prints, on this machine:

1. bulk import: rows per second of the import job (parse, idempotency check, one-time
   codes, chunked commits) over a 50,000-row Shift_JIS member list with bad rows mixed in
   (target ≥5,000 rows/s);
2. check-in under gunicorn: the server's time for ``POST /t/bench/api/checkin`` (the card's
   signature is made before the clock starts: card time excluded), p50 and p99
   (target p99 ≤50 ms), half the cards linked to a patient number.

3. the daily status sweep: 1,000,000 links (one person each) against a revocation store of
   10,000,000 entries (two issuers), worked through by two rq worker processes from the
   moment the sweep is planned to its end (target ≤20 s on 2 cores); 1% of the persons lost
   their card, 0.5% renewed it and 0.5% moved, so the sweep also records ~20,000 changes
   (link, history line, event). The store and links are loaded with COPY beforehand.

    .venv/bin/python bench/idlink_bench.py [--rows 50000] [--checkins 2000] [--workers 2]
        [--links 1000000] [--revocations 10000000] [--only sweep|import|checkin]

Needs PostgreSQL at 127.0.0.1:5432 (trust) and Redis at 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from oidc_bench import PG, REDIS, free_port, fresh_app, start_service, stop  # noqa: E402

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


def prepare_sweep(app: Any, links: int, revocations: int) -> dict[str, int]:
    """The revocation store, persons, certificates and links, written with COPY."""
    from datetime import timedelta

    import numpy as np
    from sqlalchemy import text

    from saas import clock, db
    from saas.idlink.sweep import reference
    from saas.jpki.store import RevocationIndex
    from saas.tenants import services as tenants

    rng = np.random.default_rng(7)
    now = clock.now()
    issuers = [hashlib.sha256(b"bench auth CA").digest(), hashlib.sha256(b"bench signature CA").digest()]
    low, high = 1 << 62, 1 << 63
    revoked = [np.unique(rng.integers(low, high, revocations // 2, dtype=np.int64)) for _ in issuers]
    auth = rng.integers(low, high, links, dtype=np.int64)
    signature = rng.integers(low, high, links, dtype=np.int64)
    picks = rng.permutation(links)
    lost, renewed, moved = picks[: links // 100], picks[links // 100: links * 3 // 200], \
        picks[links * 3 // 200: links * 2 // 100]
    auth[lost] = rng.choice(revoked[0], len(lost), replace=False)  # their cards are on the CRL
    new_auth = rng.integers(low, high, len(renewed), dtype=np.int64)
    new_signature = rng.integers(low, high, len(moved), dtype=np.int64)
    with app.app_context():
        tenant_id = tenants.active_tenant("bench").id
        engine = db.get_database().engine
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        stamp, later, until = now - timedelta(days=30), now - timedelta(days=1), now + timedelta(days=900)
        revoked_at = int((now - timedelta(days=2)).timestamp())
        with connection.cursor() as cursor:
            for issuer, keys in zip(issuers, revoked, strict=True):
                cursor.execute("INSERT INTO jpki_crls (issuer_key_id, crl_number, this_update, next_update, "
                               "ingested_at, entries) VALUES (%s, 1, %s, %s, %s, %s) RETURNING id",
                               (issuer, now - timedelta(hours=1), now + timedelta(hours=23), now, len(keys)))
                n = cursor.fetchone()[0]
                cursor.execute("INSERT INTO jpki_crl_indexes VALUES (%s, 1, %s)",
                               (issuer, RevocationIndex.build(keys.view(np.uint64)).to_bytes()))
                with cursor.copy("COPY jpki_revocations (crl_id, key, serial, reason, revoked_at) FROM STDIN") as copy:
                    for start in range(0, len(keys), 500_000):
                        copy.write("".join([f"{n}\t{k}\t\t1\t{revoked_at}\n"
                                            for k in keys[start:start + 500_000].tolist()]))
            # The registry keeps each person's current auth certificate and a generation
            # that moved when the renewal or the move was linked (after the last sweep).
            current = auth.copy()
            current[renewed] = new_auth
            generation = np.ones(links, dtype=np.int64)
            generation[renewed] += 1
            generation[moved] += 1
            with cursor.copy("COPY jpki_persons (id, created_at, generation, auth_issuer_key_id, auth_serial, "
                             "auth_not_after) FROM STDIN") as copy:
                for start in range(0, links, 200_000):
                    copy.write("".join([f"{i + 1}\t{stamp.isoformat()}\t{generation[i]}\t\\\\x{issuers[0].hex()}\t"
                                        f"{int(current[i]):x}\t{until.isoformat()}\n"
                                        for i in range(start, min(links, start + 200_000))]))
            cursor.execute("SELECT setval('jpki_persons_id_seq', %s)", (links,))
            auth_hex, sign_hex = "\\\\x" + issuers[0].hex(), "\\\\x" + issuers[1].hex()
            with cursor.copy("COPY jpki_person_certificates (issuer_key_id, serial, person_id, kind, linked_at, "
                             "not_after) FROM STDIN") as copy:
                for start in range(0, links, 200_000):
                    rows = []
                    for i in range(start, min(links, start + 200_000)):
                        person = i + 1
                        rows.append(f"{auth_hex}\t{int(auth[i]):x}\t{person}\tauth\t{stamp.isoformat()}\t{until.isoformat()}\n")
                        rows.append(f"{sign_hex}\t{int(signature[i]):x}\t{person}\tsignature\t{stamp.isoformat()}\t"
                                    f"{until.isoformat()}\n")
                    copy.write("".join(rows))
                copy.write("".join([f"{auth_hex}\t{int(s):x}\t{int(i) + 1}\tauth\t{later.isoformat()}\t{until.isoformat()}\n"
                                    for i, s in zip(renewed.tolist(), new_auth.tolist(), strict=True)]))
                copy.write("".join([f"{sign_hex}\t{int(s):x}\t{int(i) + 1}\tsignature\t{later.isoformat()}\t"
                                    f"{until.isoformat()}\n" for i, s in zip(moved.tolist(), new_signature.tolist(), strict=True)]))
            with cursor.copy("COPY id_links (public_id, tenant_id, local_id, person_id, sub, assurance, made_by, status, "
                             "created_at, updated_at, card_status, auth_ref, signature_ref, generation) FROM STDIN") as copy:
                for start in range(0, links, 200_000):
                    copy.write("".join([
                        f"lnk_bench{i:09d}\t{tenant_id}\tS-{i:07d}\t{i + 1}\tsub-{i:09d}\tcard_login\tbench\tactive\t"
                        f"{stamp.isoformat()}\t{stamp.isoformat()}\tvalid\t{reference(issuers[0], format(int(auth[i]), 'x'))}\t"
                        f"{reference(issuers[1], format(int(signature[i]), 'x'))}\t1\n"
                        for i in range(start, min(links, start + 200_000))]))
        connection.commit()
    finally:
        raw.close()
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return {"lost": len(lost), "renewed": len(renewed), "moved": len(moved)}


def measure_sweep(app: Any, instance: Path, links: int, revocations: int, workers: int) -> None:
    import base64

    from saas import db
    from saas.idlink import sweep

    began = time.perf_counter()
    planted = prepare_sweep(app, links, revocations)
    print(f"sweep set-up: {links:,} links, {revocations:,} revocations loaded in {time.perf_counter() - began:.0f} s")
    env = {**os.environ, "DATABASE_URL": f"{PG}/{DATABASE}", "REDIS_URL": REDIS, "SECRET_KEY": "b" * 48,
           "KEY_ENCRYPTION_KEY": base64.b64encode(b"k" * 32).decode(), "LOG_LEVEL": "WARNING",
           "KAKEHASHI_ENV": "development", "INSTANCE_PATH": str(instance)}
    kakehashi = str(Path(sys.executable).with_name("kakehashi"))
    for day in ("daily sweep", "the next day's sweep (nothing new)"):
        with app.app_context():
            began = time.perf_counter()
            run = sweep.start(workers=workers)
            sweep_id = run.id
            db.session.commit()
            planned = time.perf_counter() - began
            processes = [subprocess.Popen([kakehashi, "worker", "--queue", "sweeps", "--burst"], cwd=ROOT, env=env,
                                          stdout=subprocess.DEVNULL, stderr=(instance / "sweep.log").open("ab"))
                         for _ in range(workers)]
            for process in processes:
                process.wait()
            elapsed = time.perf_counter() - began
            summary = sweep.summary(sweep_id)
        print(f"{day} of {summary['persons']:,} linked persons against {revocations:,} revocations: "
              f"{elapsed:.1f} s with {workers} rq workers (planning {planned:.1f} s), {summary['changes']:,} changes "
              f"recorded (planted: {planted}), {summary['unchecked']:,} unchecked, status {summary['status']}  "
              f"(target ≤20 s)")
        planted = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--checkins", type=int, default=2_000)
    parser.add_argument("--cards", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--links", type=int, default=1_000_000)
    parser.add_argument("--revocations", type=int, default=10_000_000)
    parser.add_argument("--only", choices=["sweep", "import", "checkin"])
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        instance = Path(directory)
        app = fresh_app(DATABASE, instance, PUBLIC_URL="http://127.0.0.1")
        from saas import db
        from saas.tenants import services as tenants

        with app.app_context():
            tenants.create_tenant(slug="bench", display_name="ベンチ病院", kind="hospital")
            db.session.commit()
        if options.only in (None, "sweep"):
            measure_sweep(app, instance, options.links, options.revocations, options.workers)
        if options.only == "sweep":
            return
        if options.only in (None, "import"):
            measure_import(app, options.rows)
        if options.only == "import":
            return
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
