"""Generate and ingest a large CRL: time, peak RSS and entries per second for each phase.

    .venv/bin/python bench/crl_bench.py [--entries N]     (default 10,000,000)

Each phase runs in its own process, so the peak RSS it reports (ru_maxrss) belongs to that
phase alone: generating the CRL (entries produced on the fly, written, signed), then
ingesting it twice, once through ``iter_revoked`` (a tuple with a datetime per entry) and
once through ``revoked_serials`` (parallel columns). Ingest includes reading the file,
``read_crl`` and the signature check.

Entries look like a JPKI CRL's: 64-bit serials, revocation times spread over five years
(so nearly all distinct to the second) and the JPKI mix of reasons.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from saas.jpki.crl import iter_revoked, read_crl, revoked_serials, verify_crl_signature  # noqa: E402
from saas.sandbox.crl_writer import RevokedEntry, build_crl  # noqa: E402

THIS_UPDATE = datetime(2026, 5, 1, tzinfo=UTC)
SPAN_SECONDS = 5 * 365 * 86_400
R = x509.ReasonFlags
# Moves and marriages dominate, then renewals (JPKI.md, revocation reasons).
REASON_MIX: list[x509.ReasonFlags | None] = (
    [R.affiliation_changed] * 9 + [R.superseded] * 6 + [R.cessation_of_operation] * 2 + [R.key_compromise, None, None]
)


def entries(count: int) -> Iterator[RevokedEntry]:
    start = THIS_UPDATE.timestamp() - SPAN_SECONDS
    step = SPAN_SECONDS / max(count, 1)
    for i in range(count):
        serial = (i * 0x9E3779B97F4A7C15 + 0x2545F491) & 0xFFFF_FFFF_FFFF_FFFF or 1
        revoked_at = datetime.fromtimestamp(int(start + i * step), UTC)
        yield RevokedEntry(serial, revoked_at, REASON_MIX[i % len(REASON_MIX)])


def generate(count: int, workdir: Path) -> dict[str, float]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "JPKI for digital signature"),
    ])
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    started = time.perf_counter()
    der = build_crl(
        issuer_name=issuer, issuer_key=key, authority_key_id=key_id, crl_number=1,
        this_update=THIS_UPDATE, next_update=THIS_UPDATE + timedelta(days=1), entries=entries(count),
    )
    elapsed = time.perf_counter() - started
    (workdir / "crl.der").write_bytes(der)
    (workdir / "issuer.pem").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return {"seconds": elapsed, "bytes": len(der)}


def ingest(workdir: Path, bulk: bool) -> dict[str, float]:
    public_key = serialization.load_pem_public_key((workdir / "issuer.pem").read_bytes())
    assert isinstance(public_key, rsa.RSAPublicKey)
    started = time.perf_counter()
    der = (workdir / "crl.der").read_bytes()
    header = read_crl(der)
    if not verify_crl_signature(header, public_key):
        raise SystemExit("the generated CRL does not verify")
    del header  # its TBS copy is not needed while entries are read
    if bulk:
        count = len(revoked_serials(der).serials)
    else:
        count = sum(1 for _ in iter_revoked(der))
    return {"seconds": time.perf_counter() - started, "entries": count}


def run_phase(phase: str, count: int, workdir: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--phase", phase, "--entries", str(count), "--workdir", str(workdir)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--phase", choices=["generate", "ingest-iter", "ingest-bulk"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        if args.phase == "generate":
            result = generate(args.entries, args.workdir)
        else:
            result = ingest(args.workdir, bulk=args.phase == "ingest-bulk")
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    count = args.entries
    print(f"CRL with {count:,} entries, one process per phase")
    with tempfile.TemporaryDirectory(prefix="crl-bench-") as tmp:
        workdir = Path(tmp)
        made = run_phase("generate", count, workdir)
        print(
            f"generate     {made['seconds']:7.2f} s  peak RSS {made['peak_rss_mb']:7.0f} MB  "
            f"{count / made['seconds']:>11,.0f} entries/s  size {made['bytes'] / 1e6:.1f} MB"
        )
        for phase, label in (("ingest-iter", "iter_revoked"), ("ingest-bulk", "revoked_serials")):
            read = run_phase(phase, count, workdir)
            if read["entries"] != count:
                raise SystemExit(f"{label} read {read['entries']} entries, expected {count}")
            print(
                f"ingest       {read['seconds']:7.2f} s  peak RSS {read['peak_rss_mb']:7.0f} MB  "
                f"{count / read['seconds']:>11,.0f} entries/s  via {label} (read, verify, all entries)"
            )


if __name__ == "__main__":
    main()
