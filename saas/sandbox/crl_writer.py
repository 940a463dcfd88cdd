"""A fast DER writer for the X.509 v2 CRLs the sandbox CA publishes (RFC 5280 §5).

cryptography's ``CertificateRevocationListBuilder`` is quadratic in the number of entries
(200,000 entries took over a minute), and a sandbox CRL has the size of the live one
(millions of entries). So the DER is written here directly, and cryptography only signs.

Memory stays near one copy of the CRL: entries are encoded in batches into blocks of
at least 32 MiB (above glibc's largest mmap threshold, so a freed block goes back to the
system), the TBS is hashed block by block and signed prehashed, and the blocks are moved
one at a time into a ``BytesIO`` whose ``getvalue()`` hands over its buffer without copying.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

# sha256WithRSAEncryption with NULL parameters (RFC 4055 §5).
SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")

# CRLReason codes (RFC 5280 §5.3.1). removeFromCRL belongs to delta CRLs only, and these
# are full CRLs, so it is refused rather than written.
REASON_CODES: dict[x509.ReasonFlags, int] = {
    x509.ReasonFlags.unspecified: 0,
    x509.ReasonFlags.key_compromise: 1,
    x509.ReasonFlags.ca_compromise: 2,
    x509.ReasonFlags.affiliation_changed: 3,
    x509.ReasonFlags.superseded: 4,
    x509.ReasonFlags.cessation_of_operation: 5,
    x509.ReasonFlags.certificate_hold: 6,
    x509.ReasonFlags.privilege_withdrawn: 9,
    x509.ReasonFlags.aa_compromise: 10,
}

SERIAL_LIMIT = 1 << 159  # a positive serial of at most 20 octets (RFC 5280 §4.1.2.2)

_BATCH = 65_536
_BLOCK = 32 << 20
_TIME_CACHE_LIMIT = 65_536
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    serial: int
    revoked_at: datetime  # timezone-aware UTC
    reason: x509.ReasonFlags | None = None


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def _integer(value: int) -> bytes:
    # bit_length // 8 + 1 octets leave room for the 0x00 a set high bit needs.
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _time(moment: datetime) -> bytes:
    """UTCTime for 1950–2049 and GeneralizedTime otherwise (RFC 5280 §4.1.2.5), to the second."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("CRL times must be timezone-aware")
    t = moment.astimezone(UTC)
    fields = (t.month, t.day, t.hour, t.minute, t.second)
    if 1950 <= t.year < 2050:
        return b"\x17\x0d%02d%02d%02d%02d%02d%02dZ" % (t.year % 100, *fields)
    return b"\x18\x0f%04d%02d%02d%02d%02d%02dZ" % (t.year, *fields)


def _extension(oid: bytes, value: bytes) -> bytes:
    return _tlv(0x30, _tlv(0x06, oid) + _tlv(0x04, value))


def _reason_extensions() -> dict[x509.ReasonFlags | None, bytes]:
    """The whole crlEntryExtensions field for each reason, empty when there is none to write."""
    encoded: dict[x509.ReasonFlags | None, bytes] = {None: b"", x509.ReasonFlags.unspecified: b""}
    for reason, code in REASON_CODES.items():
        if code:
            reason_code = _extension(b"\x55\x1d\x15", _tlv(0x0A, bytes((code,))))
            encoded[reason] = _tlv(0x30, reason_code)
    return encoded


def _revoked_batches(entries: Iterable[RevokedEntry]) -> Iterator[bytes]:
    """The revokedCertificates content, one encoded batch of entries at a time."""
    reason_extensions = _reason_extensions()
    # Revocation times are mostly distinct, even to the minute, so an encoded time is put
    # together from a cached day prefix (tag, length, YYMMDD or YYYYMMDD), "HHMM" and "SSZ".
    days: dict[int, bytes] = {}
    clock = [b"%02d%02d" % divmod(minute, 60) for minute in range(1440)]
    seconds = [b"%02dZ" % second for second in range(60)]
    # An entry is always shorter than 128 octets, so its header is 30 LL 02 LL.
    heads = [[bytes((0x30, 2 + size + 7 + rest, 0x02, size)) for rest in range(64)] for size in range(21)]
    source = iter(entries)
    while batch := list(islice(source, _BATCH)):
        pieces: list[bytes] = []
        put = pieces.extend
        for entry in batch:
            serial = entry.serial
            if not 0 < serial < SERIAL_LIMIT:
                raise ValueError(f"serial {serial!r} is not a positive integer of at most 20 octets")
            size = serial.bit_length() // 8 + 1
            extension = reason_extensions.get(entry.reason)
            if extension is None:
                raise ValueError(f"reason {entry.reason!r} cannot appear in a full CRL")
            moment = entry.revoked_at
            if moment.utcoffset() is None:
                raise ValueError("revocation times must be timezone-aware")
            # Exact integer seconds: a float timestamp can round up into the next second.
            minute, second = divmod((moment - _EPOCH) // _SECOND, 60)
            day, minute = divmod(minute, 1440)
            prefix = days.get(day)
            if prefix is None:
                if len(days) >= _TIME_CACHE_LIMIT:
                    days.clear()
                prefix = days[day] = _time(moment)[:-7]
            put((heads[size][len(prefix) + len(extension)], serial.to_bytes(size, "big"),
                 prefix, clock[minute], seconds[second], extension))
        yield b"".join(pieces)


def _revoked_blocks(entries: Iterable[RevokedEntry]) -> list[bytes]:
    blocks: list[bytes] = []
    pending: list[bytes] = []
    pending_size = 0
    for batch in _revoked_batches(entries):
        pending.append(batch)
        pending_size += len(batch)
        if pending_size >= _BLOCK:
            blocks.append(b"".join(pending))
            pending.clear()
            pending_size = 0
    if pending:
        blocks.append(b"".join(pending))
    return blocks


def build_crl(
    *,
    issuer_name: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    authority_key_id: bytes,
    crl_number: int,
    this_update: datetime,
    next_update: datetime,
    entries: Iterable[RevokedEntry],
) -> bytes:
    """A DER CertificateList signed sha256WithRSAEncryption by ``issuer_key``."""
    if not 0 <= crl_number < SERIAL_LIMIT:
        raise ValueError("the CRL number must be a non-negative integer of at most 20 octets")
    this_update_der, next_update_der = _time(this_update), _time(next_update)
    if next_update <= this_update:
        raise ValueError("nextUpdate must be later than thisUpdate")
    blocks = _revoked_blocks(entries)
    revoked_size = sum(len(block) for block in blocks)
    # RFC 5280 §5.1.2.6: with no entries, revokedCertificates is absent, not empty.
    revoked_header = b"\x30" + _length(revoked_size) if revoked_size else b""

    aki = _extension(b"\x55\x1d\x23", _tlv(0x30, _tlv(0x80, authority_key_id)))
    number = _extension(b"\x55\x1d\x14", _integer(crl_number))
    crl_extensions = _tlv(0xA0, _tlv(0x30, aki + number))
    fields_before = (
        b"\x02\x01\x01"  # version v2
        + SHA256_WITH_RSA
        + issuer_name.public_bytes()
        + this_update_der
        + next_update_der
        + revoked_header
    )
    tbs_size = len(fields_before) + revoked_size + len(crl_extensions)
    tbs_header = b"\x30" + _length(tbs_size)

    digest = hashlib.sha256(tbs_header + fields_before)
    for block in blocks:
        digest.update(block)
    digest.update(crl_extensions)
    signature = issuer_key.sign(digest.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    signature_value = _tlv(0x03, b"\x00" + signature)

    outer_size = len(tbs_header) + tbs_size + len(SHA256_WITH_RSA) + len(signature_value)
    out = io.BytesIO()
    out.write(b"\x30" + _length(outer_size) + tbs_header + fields_before)
    blocks.reverse()
    while blocks:
        out.write(blocks.pop())
    out.write(crl_extensions + SHA256_WITH_RSA + signature_value)
    return out.getvalue()
