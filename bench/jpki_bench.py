"""JPKI trust core figures on this machine (issue 4 targets in brackets).

    .venv/bin/python bench/jpki_bench.py [--entries 10000000] [--tokens 20000] [--database URL]

1. web-eid tokens verified per second in one process (= one core), each token from one
   of many distinct sandbox cards with its own single-use challenge: certificate parse,
   chain to the sandbox root, signature, revocation lookup against an ingested CRL
   [≥ 5,000/s/core; an RSA-2048 verify alone is about 20,000/s/core, and each token needs two].
2. a CRL of N entries: time and peak RSS to generate it [≤ 60 s], and to ingest it into the
   shared store on PostgreSQL (parse, signature, COPY, index) [≤ 30 s, ≤ 2 GB].
3. revocation lookups against that store: in-process [≥ 500,000/s] and the p99 of lookups
   that must read the shared store (revoked serials) [≤ 1 ms].

Each CRL phase runs in its own process so its peak RSS (ru_maxrss) is its own. The
PostgreSQL database ``kk_bench_<pid>`` is created and dropped by the run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from crl_bench import THIS_UPDATE, entries  # noqa: E402

DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_tokens(count: int, database: str) -> dict[str, float]:
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    from saas.cli import migrate_database
    from saas.db import make_engine
    from saas.jpki.certificates import CertificateKind
    from saas.jpki.store import NonceStore, RevocationStore
    from saas.jpki.trust import Mode, TrustStore
    from saas.jpki.webeid import MemoryNonceStore, new_challenge, verify_token
    from saas.sandbox import ca
    from saas.sandbox.cards import issue_card
    from saas.sandbox.crl_writer import RevokedEntry, build_crl
    from saas.sandbox.persons import synthetic_person

    now = datetime.now(UTC)
    auth_root = ca.create_root(CertificateKind.AUTH, now)
    sign_root = ca.create_root(CertificateKind.SIGNATURE, now)
    rng = random.Random(1)
    cards = [issue_card(auth_root, sign_root, synthetic_person(rng), now=now, auth_serial=1000 + i,
                        signature_serial=5000 + i) for i in range(40)]
    store = TrustStore(CertificateKind.AUTH, Mode.SANDBOX, [auth_root.certificate])
    engine = make_engine(database)
    migrate_database(database)
    revocations = RevocationStore(engine)
    crl = build_crl(issuer_name=auth_root.certificate.subject, issuer_key=auth_root.key,
                    authority_key_id=auth_root.key_id, crl_number=int(time.time()),
                    this_update=now - timedelta(minutes=1), next_update=now + timedelta(days=1),
                    entries=[RevokedEntry(900_000 + i, now - timedelta(days=1), x509.ReasonFlags.superseded)
                             for i in range(10_000)])
    revocations.ingest(crl, store, at=now)
    origin = "https://bench.kakehashi.example"

    def tokens(nonces: object) -> list[tuple[dict[str, str], str]]:
        made = []
        for i in range(count):
            card = cards[i % len(cards)]
            challenge = new_challenge(at=now)
            nonces.put(challenge)  # type: ignore[attr-defined]
            data = hashlib.sha256(origin.encode()).digest() + hashlib.sha256(challenge.nonce.encode()).digest()
            made.append(({"format": "web-eid:1.0", "algorithm": "RS256",
                          "unverifiedCertificate": base64.b64encode(
                              card.auth.certificate.public_bytes(serialization.Encoding.DER)).decode(),
                          "signature": base64.b64encode(card.auth.key.sign(
                              data, padding.PKCS1v15(), hashes.SHA256())).decode()}, challenge.nonce))
        return made

    from redis import Redis

    from saas.jpki.store import RedisNonceStore

    figures = {}
    for label, nonces in (("memory_nonces", MemoryNonceStore()), ("database_nonces", NonceStore(engine)),
                          ("redis_nonces", RedisNonceStore(Redis.from_url(REDIS)))):
        batch = tokens(nonces)
        started = time.perf_counter()
        for token, nonce in batch:
            verify_token(token, nonce=nonce, origin=origin, nonces=nonces, store=store,
                         revocation=revocations, at=now)
        figures[f"tokens_per_s_{label}"] = count / (time.perf_counter() - started)
    key = cards[0].auth.key.public_key()
    signature = cards[0].auth.key.sign(b"x", padding.PKCS1v15(), hashes.SHA256())
    started = time.perf_counter()
    for _ in range(count):
        key.verify(signature, b"x", padding.PKCS1v15(), hashes.SHA256())
    figures["rsa2048_verifies_per_s"] = count / (time.perf_counter() - started)
    engine.dispose()
    return figures


def phase_generate(count: int, path: Path) -> dict[str, float]:
    from saas.jpki.certificates import CertificateKind
    from saas.sandbox import ca
    from saas.sandbox.crl_writer import build_crl

    root = ca.create_root(CertificateKind.AUTH, THIS_UPDATE - timedelta(days=1))
    started = time.perf_counter()
    der = build_crl(issuer_name=root.certificate.subject, issuer_key=root.key, authority_key_id=root.key_id,
                    crl_number=1, this_update=THIS_UPDATE, next_update=THIS_UPDATE + timedelta(days=3650),
                    entries=entries(count))
    elapsed = time.perf_counter() - started
    path.write_bytes(der)
    path.with_suffix(".root").write_bytes(root.certificate.public_bytes(_pem()))
    return {"generate_s": elapsed, "generate_peak_rss_mb": peak_rss_mb(), "crl_mb": len(der) / 1e6}


def phase_ingest(path: Path, database: str) -> dict[str, float]:
    from cryptography import x509

    from saas.db import make_engine
    from saas.jpki.certificates import CertificateKind
    from saas.jpki.store import RevocationStore
    from saas.jpki.trust import Mode, TrustStore

    root = x509.load_pem_x509_certificate(path.with_suffix(".root").read_bytes())
    store = TrustStore(CertificateKind.AUTH, Mode.SANDBOX, [root])
    engine = make_engine(database)
    started = time.perf_counter()
    result = RevocationStore(engine).ingest(path.read_bytes(), store, at=THIS_UPDATE + timedelta(hours=1))
    elapsed = time.perf_counter() - started
    engine.dispose()
    return {"ingest_s": elapsed, "ingest_peak_rss_mb": peak_rss_mb(), "ingested_entries": result.entries}


def phase_lookups(path: Path, database: str, count: int) -> dict[str, float]:
    from cryptography import x509

    from saas.db import make_engine
    from saas.jpki.store import RevocationStore

    root = x509.load_pem_x509_certificate(path.with_suffix(".root").read_bytes())
    issuer = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    engine = make_engine(database)
    store = RevocationStore(engine)
    at = THIS_UPDATE + timedelta(hours=1)
    started = time.perf_counter()
    store.revocation(issuer, 1, at=at)  # first lookup loads this process's index
    load_s = time.perf_counter() - started
    rng = random.Random(7)
    misses = [rng.getrandbits(63) for _ in range(500_000)]
    started = time.perf_counter()
    for serial in misses:
        store.revocation(issuer, serial, at=at)
    in_process = len(misses) / (time.perf_counter() - started)
    revoked = [s.serial for s, _ in zip(entries(10_000_000), range(count), strict=False)]
    timings = []
    for serial in revoked:
        started = time.perf_counter()
        assert store.revocation(issuer, serial, at=at) is not None
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    engine.dispose()
    return {"index_load_s": load_s, "in_process_lookups_per_s": in_process,
            "shared_store_p50_ms": statistics.median(timings),
            "shared_store_p99_ms": timings[int(len(timings) * 0.99) - 1]}


def _pem():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.PEM


def run_phase(*args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--phase", *args], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="PostgreSQL server to create the bench database on")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        result = {"tokens": lambda: phase_tokens(int(rest[0]), rest[1]),
                  "generate": lambda: phase_generate(int(rest[0]), Path(rest[1])),
                  "ingest": lambda: phase_ingest(Path(rest[0]), rest[1]),
                  "lookups": lambda: phase_lookups(Path(rest[0]), rest[1], int(rest[2]))}[name]()
        print(json.dumps(result))
        return

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from saas.cli import migrate_database
    from saas.config import normalise_database_url

    base = make_url(normalise_database_url(args.database))
    name = f"kk_bench_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        migrate_database(url)
        print(f"JPKI bench: {args.entries:,} CRL entries, {args.tokens:,} tokens, PostgreSQL {base.host}")
        figures = run_phase("tokens", str(args.tokens), url)
        print(f"web-eid tokens verified, one core:   {figures['tokens_per_s_memory_nonces']:>10,.0f}/s "
              f"(challenges in memory)  [≥5,000/s]")
        print(f"                                     {figures['tokens_per_s_redis_nonces']:>10,.0f}/s "
              "(challenges in Redis)")
        print(f"                                     {figures['tokens_per_s_database_nonces']:>10,.0f}/s "
              "(challenges in PostgreSQL: one durable commit each)")
        print(f"RSA-2048 verify alone, one core:     {figures['rsa2048_verifies_per_s']:>10,.0f}/s")
        with tempfile.TemporaryDirectory() as workdir:
            crl = Path(workdir) / "bench.crl"
            generated = run_phase("generate", str(args.entries), str(crl))
            print(f"CRL generate: {generated['generate_s']:6.1f} s, peak RSS {generated['generate_peak_rss_mb']:,.0f} MB, "
                  f"{generated['crl_mb']:,.0f} MB of DER  [≤60 s]")
            ingested = run_phase("ingest", str(crl), url)
            print(f"CRL ingest:   {ingested['ingest_s']:6.1f} s, peak RSS {ingested['ingest_peak_rss_mb']:,.0f} MB "
                  f"({ingested['ingested_entries']:,} entries into PostgreSQL)  [≤30 s, ≤2,048 MB]")
            looked = run_phase("lookups", str(crl), url, "5000")
            print(f"lookups in process:  {looked['in_process_lookups_per_s']:>10,.0f}/s  [≥500,000/s] "
                  f"(index loaded in {looked['index_load_s']:.1f} s)")
            print(f"shared-store reads:  p50 {looked['shared_store_p50_ms']:.3f} ms, "
                  f"p99 {looked['shared_store_p99_ms']:.3f} ms  [p99 ≤1 ms]")
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
