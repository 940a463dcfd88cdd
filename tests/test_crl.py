"""The sandbox CRL writer and the ingest CRL reader, checked against cryptography and OpenSSL."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import warnings
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saas.jpki.crl import (
    NO_REASON,
    CRLFormatError,
    iter_revoked,
    read_crl,
    reason_name,
    revoked_serials,
    verify_crl_signature,
)
from saas.sandbox.crl_writer import RevokedEntry, build_crl

UTC = UTC
THIS_UPDATE = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
NEXT_UPDATE = THIS_UPDATE + timedelta(days=1)
REASON = x509.ReasonFlags
# Hypothesis must not write its example database into the repository.
FUZZ = settings(database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclasses.dataclass(frozen=True)
class Issuer:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    key_id: bytes


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "JPKI for digital signature"),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(THIS_UPDATE - timedelta(days=30))
        .not_valid_after(THIS_UPDATE + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issuer(key=key, certificate=certificate, key_id=ski.digest)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


ENTRIES = [
    RevokedEntry(1, datetime(2026, 4, 30, 9, 15, 2, tzinfo=UTC), REASON.affiliation_changed),
    RevokedEntry(0x80, datetime(2026, 4, 30, 9, 15, 2, 999_999, tzinfo=UTC), REASON.superseded),
    RevokedEntry(0xFF_FFFF_FFFF, datetime(2026, 4, 30, 18, 15, 2, tzinfo=timezone(timedelta(hours=9))), None),
    RevokedEntry(2**159 - 1, datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), REASON.key_compromise),
    RevokedEntry(2**152, datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), REASON.cessation_of_operation),
    RevokedEntry(0x1234, datetime(2050, 1, 1, tzinfo=UTC), REASON.unspecified),
    RevokedEntry(0x1235, datetime(2099, 6, 1, 12, 30, 45, tzinfo=UTC), REASON.certificate_hold),
]


def write(issuer: Issuer, entries: list[RevokedEntry] = ENTRIES, **overrides: object) -> bytes:
    arguments: dict[str, object] = {
        "issuer_name": issuer.certificate.subject,
        "issuer_key": issuer.key,
        "authority_key_id": issuer.key_id,
        "crl_number": 42,
        "this_update": THIS_UPDATE,
        "next_update": NEXT_UPDATE,
        "entries": iter(entries),
    }
    arguments.update(overrides)
    return build_crl(**arguments)  # type: ignore[arg-type]


def expected(entries: list[RevokedEntry]) -> list[tuple[int, datetime, str | None]]:
    """What a reader must see: UTC to the second, unspecified written as no reason."""
    return [
        (
            e.serial,
            e.revoked_at.astimezone(UTC).replace(microsecond=0),
            None if e.reason in (None, REASON.unspecified) else e.reason.value,
        )
        for e in entries
    ]


@pytest.fixture(scope="module")
def crl_der(issuer: Issuer) -> bytes:
    return write(issuer)


# --- the writer, judged by cryptography and OpenSSL --------------------------------------


def test_written_crl_is_read_back_by_cryptography_with_its_signature(issuer: Issuer, crl_der: bytes) -> None:
    crl = x509.load_der_x509_crl(crl_der)
    assert crl.is_signature_valid(issuer.key.public_key())
    assert crl.issuer == issuer.certificate.subject
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == issuer.key_id
    assert (crl.last_update_utc, crl.next_update_utc) == (THIS_UPDATE, NEXT_UPDATE)
    seen = []
    for revoked in crl:
        reasons = [e.value.reason for e in revoked.extensions if isinstance(e.value, x509.CRLReason)]
        seen.append((revoked.serial_number, revoked.revocation_date_utc, reasons[0].value if reasons else None))
    assert seen == expected(ENTRIES)


def test_openssl_verifies_written_crl_against_issuer_certificate(
    issuer: Issuer, crl_der: bytes, tmp_path: Path
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    (tmp_path / "issuer.pem").write_bytes(issuer.certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "crl.der").write_bytes(crl_der)
    result = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", tmp_path / "crl.der", "-CAfile", tmp_path / "issuer.pem", "-noout"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "verify OK" in result.stdout + result.stderr


def test_empty_crl_has_no_revoked_certificates_field(issuer: Issuer) -> None:
    der = write(issuer, [])
    crl = x509.load_der_x509_crl(der)
    assert len(crl) == 0 and crl.is_signature_valid(issuer.key.public_key())
    # The reader refuses an empty revokedCertificates SEQUENCE, so reading proves it absent.
    assert read_crl(der).crl_number == 42
    assert list(iter_revoked(der)) == []


def test_serials_are_minimal_twos_complement(issuer: Issuer) -> None:
    der = write(issuer, [RevokedEntry(s, THIS_UPDATE) for s in (0x7F, 0x80, 0xFF00, 2**159 - 1)])
    assert b"\x02\x01\x7f" in der
    assert b"\x02\x02\x00\x80" in der
    assert b"\x02\x03\x00\xff\x00" in der
    assert b"\x02\x14\x7f" + b"\xff" * 19 in der


@pytest.mark.parametrize("serial", [0, -1, 2**159])
def test_writer_refuses_serials_outside_rfc5280(issuer: Issuer, serial: int) -> None:
    with pytest.raises(ValueError):
        write(issuer, [RevokedEntry(serial, THIS_UPDATE)])


def test_writer_refuses_naive_times_and_delta_only_reasons(issuer: Issuer) -> None:
    with pytest.raises(ValueError):
        write(issuer, [RevokedEntry(1, datetime(2026, 1, 1))])
    with pytest.raises(ValueError):
        write(issuer, [RevokedEntry(1, THIS_UPDATE, REASON.remove_from_crl)])


def test_times_from_2050_are_generalized_time(issuer: Issuer) -> None:
    der = write(issuer, ENTRIES, this_update=datetime(2050, 1, 1, tzinfo=UTC),
                next_update=datetime(2050, 1, 2, tzinfo=UTC))
    assert b"\x17\x0d491231235959Z" in der
    assert b"\x18\x0f20500101000000Z" in der
    assert b"\x18\x0f20500102000000Z" in der
    assert b"\x18\x0f20990601123045Z" in der
    assert b"\x17\x0d991231235959Z" in der
    assert x509.load_der_x509_crl(der).next_update_utc == datetime(2050, 1, 2, tzinfo=UTC)


def test_times_are_truncated_to_the_second_even_far_ahead(issuer: Issuer) -> None:
    # A float timestamp of this moment rounds up into the next day.
    der = write(issuer, [RevokedEntry(1, datetime(9000, 1, 1, 23, 59, 59, 999_999, tzinfo=UTC))])
    assert b"\x18\x0f90000101235959Z" in der


# --- the reader ---------------------------------------------------------------------------


def test_reader_header_matches_what_was_written(issuer: Issuer, crl_der: bytes) -> None:
    header = read_crl(crl_der)
    assert header.issuer == issuer.certificate.subject
    assert header.issuer_der == issuer.certificate.subject.public_bytes()
    assert header.crl_number == 42
    assert (header.this_update, header.next_update) == (THIS_UPDATE, NEXT_UPDATE)
    assert header.authority_key_id == issuer.key_id
    assert header.signature_algorithm_oid == "1.2.840.113549.1.1.11"
    assert header.tbs == x509.load_der_x509_crl(crl_der).tbs_certlist_bytes


def test_reader_entries_round_trip(crl_der: bytes) -> None:
    assert list(iter_revoked(crl_der)) == expected(ENTRIES)
    columns = revoked_serials(crl_der)
    assert [
        (s, datetime.fromtimestamp(t, UTC), reason_name(c))
        for s, t, c in zip(columns.serials, columns.revoked_at, columns.reasons, strict=True)
    ] == expected(ENTRIES)
    assert columns.reasons[2] == NO_REASON


def test_reader_reads_crls_made_by_cryptography(issuer: Issuer) -> None:
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(77)
        .revocation_date(datetime(2026, 4, 1, tzinfo=UTC))
        .add_extension(x509.InvalidityDate(datetime(2026, 3, 1)), critical=False)
        .add_extension(x509.CRLReason(REASON.key_compromise), critical=False)
        .build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(THIS_UPDATE)
        .next_update(NEXT_UPDATE)
        .add_revoked_certificate(revoked)
        .add_extension(x509.CRLNumber(7), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    der = crl.public_bytes(serialization.Encoding.DER)
    assert read_crl(der).crl_number == 7
    assert read_crl(der).authority_key_id is None
    assert list(iter_revoked(der)) == [(77, datetime(2026, 4, 1, tzinfo=UTC), "keyCompromise")]


def test_signature_check_accepts_only_the_issuer_key_over_the_exact_tbs(
    issuer: Issuer, other_key: rsa.RSAPrivateKey, crl_der: bytes
) -> None:
    header = read_crl(crl_der)
    assert verify_crl_signature(header, issuer.key.public_key())
    assert not verify_crl_signature(header, other_key.public_key())
    tampered = memoryview(bytes(header.tbs).replace(b"\x02\x01\x2a", b"\x02\x01\x2b"))  # CRL number 42 -> 43
    assert tampered != header.tbs
    assert not verify_crl_signature(dataclasses.replace(header, tbs=tampered), issuer.key.public_key())
    sha1 = dataclasses.replace(header, signature_algorithm_oid="1.2.840.113549.1.1.5")
    assert not verify_crl_signature(sha1, issuer.key.public_key())


# Hand-built DER for the structural cases the writer cannot produce.
def tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    octets = size.to_bytes(max(1, (size.bit_length() + 7) // 8), "big")
    length = octets if size < 128 else bytes([0x80 | len(octets)]) + octets
    return bytes([tag]) + length + content


ALGORITHM = bytes.fromhex("300d06092a864886f70d01010b0500")
ISSUER = tlv(0x30, tlv(0x31, tlv(0x30, bytes.fromhex("0603550406") + tlv(0x13, b"JP"))))
TIME = tlv(0x17, b"260501030000Z")
CRL_NUMBER = tlv(0x30, bytes.fromhex("0603551d14") + tlv(0x04, bytes.fromhex("020101")))
GOOD_ENTRY = tlv(0x30, bytes.fromhex("020105") + tlv(0x17, b"260430091502Z"))


def crl_content(
    *,
    version: bytes = b"\x02\x01\x01",
    revoked: bytes = b"",
    extensions: bytes = CRL_NUMBER,
    outer_algorithm: bytes = ALGORITHM,
    issuer: bytes = ISSUER,
) -> bytes:
    tbs = version + ALGORITHM + issuer + TIME + TIME + revoked + tlv(0xA0, tlv(0x30, extensions))
    return tlv(0x30, tbs) + outer_algorithm + tlv(0x03, b"\x00" + b"\x55" * 256)


def name_der(attributes: list[tuple[bytes, int, bytes]]) -> bytes:
    """A Name with one attribute (OID content, value tag, value content) per RDN."""
    return tlv(0x30, b"".join(tlv(0x31, tlv(0x30, tlv(0x06, oid) + tlv(tag, value))) for oid, tag, value in attributes))


def crl(*, tail: bytes = b"", **fields: bytes) -> bytes:
    return tlv(0x30, crl_content(**fields)) + tail


def extension(oid: bytes, value: bytes, critical: bool = False) -> bytes:
    return tlv(0x30, tlv(0x06, oid) + (b"\x01\x01\xff" if critical else b"") + tlv(0x04, value))


def with_entry(*fields: bytes) -> bytes:
    """A CRL whose only entry is made of ``fields``."""
    return crl(revoked=tlv(0x30, tlv(0x30, b"".join(fields))))


SERIAL_5 = b"\x02\x01\x05"
KEY_COMPROMISE = extension(b"\x55\x1d\x15", b"\x0a\x01\x01")
REMOVE_FROM_CRL = extension(b"\x55\x1d\x15", b"\x0a\x01\x08")
CERTIFICATE_ISSUER = extension(b"\x55\x1d\x1d", b"\x30\x00", critical=True)
DELTA_CRL_INDICATOR = extension(b"\x55\x1d\x1b", b"\x02\x01\x01", critical=True)
UNKNOWN_CRITICAL = extension(b"\x2a\x03", b"\x05\x00", critical=True)
AKI_ONLY = extension(b"\x55\x1d\x23", b"\x30\x00")


def test_hand_built_crl_is_accepted() -> None:
    # The baseline for the malformed cases below, which each change one thing.
    der = crl(revoked=tlv(0x30, GOOD_ENTRY + tlv(0x30, b"\x02\x01\x06" + TIME + tlv(0x30, KEY_COMPROMISE))))
    assert read_crl(der).crl_number == 1
    assert [(s, r) for s, _, r in iter_revoked(der)] == [(5, None), (6, "keyCompromise")]


@pytest.mark.parametrize(
    ("der", "reason"),
    [
        pytest.param(crl(version=b""), "only version 2", id="v1-no-version"),
        pytest.param(crl(version=b"\x02\x01\x02"), "only version 2", id="v3"),
        pytest.param(crl(extensions=CRL_NUMBER + CRL_NUMBER), "duplicate extension 2.5.29.20",
                     id="duplicate-crl-number"),
        pytest.param(crl(extensions=AKI_ONLY), "CRL number is missing", id="no-crl-number"),
        pytest.param(crl(extensions=CRL_NUMBER + DELTA_CRL_INDICATOR), "critical CRL extension 2.5.29.27",
                     id="delta-crl"),
        pytest.param(crl(extensions=CRL_NUMBER + UNKNOWN_CRITICAL), "critical CRL extension 1.2.3",
                     id="unknown-critical-extension"),
        pytest.param(crl(outer_algorithm=bytes.fromhex("300b06092a864886f70d01010b")), "algorithms inside and outside",
                     id="algorithm-mismatch"),
        pytest.param(crl(revoked=b"\x30\x00"), "must be absent, not empty", id="empty-revoked-sequence"),
        pytest.param(crl(issuer=name_der([(b"\x55\x04\x0a", 0x03, b"\x00JP")])), "malformed issuer name",
                     id="bit-string-organization"),
        pytest.param(crl(issuer=name_der([(b"\x55\x04\x06", 0x13, b"JPN")])), "country or common name",
                     id="three-letter-country"),
        pytest.param(crl(tail=b"\x00"), "trailing bytes after the CRL", id="trailing-garbage"),
        pytest.param(b"\x30\x80" + crl_content() + b"\x00\x00", "indefinite length", id="indefinite-length"),
        pytest.param(b"\x30\x84\x7f\xff\xff\xff" + crl_content(), "length past the end", id="length-past-end"),
        pytest.param(b"\x30\x81\x05" + b"\x00" * 5, "non-minimal length", id="non-minimal-length"),
        pytest.param(b"\x3f\x01\x00", "multi-octet tags", id="multi-octet-tag"),
        pytest.param(b"", "truncated element", id="empty"),
    ],
)
def test_reader_rejects_malformed_crl_structure(der: bytes, reason: str) -> None:
    with pytest.raises(CRLFormatError, match=reason):
        read_crl(der)


@pytest.mark.parametrize(
    ("der", "reason"),
    [
        pytest.param(crl(revoked=tlv(0x30, GOOD_ENTRY + b"\x00")), "truncated element", id="garbage-after-entry"),
        pytest.param(with_entry(b"\x02\x01\xfb", TIME), "positive, minimal INTEGER", id="negative-serial"),
        pytest.param(with_entry(b"\x02\x01\x00", TIME), "positive, minimal INTEGER", id="zero-serial"),
        pytest.param(with_entry(b"\x02\x02\x00\x05", TIME), "positive, minimal INTEGER", id="non-minimal-serial"),
        pytest.param(with_entry(b"\x02\x15\x01" + b"\x00" * 20, TIME), "at most 20 octets", id="21-octet-serial"),
        pytest.param(with_entry(SERIAL_5, tlv(0x17, b"2604300915:2Z")), "malformed revocation time", id="bad-seconds"),
        pytest.param(with_entry(SERIAL_5, tlv(0x17, b"26043009 502Z")), "malformed revocation time", id="space-in-time"),
        pytest.param(with_entry(SERIAL_5, tlv(0x17, b"260431091502Z")), "date out of range", id="april-31"),
        pytest.param(with_entry(SERIAL_5, tlv(0x17, b"2604300915Z")), "to the second, in Zulu", id="no-seconds"),
        pytest.param(with_entry(SERIAL_5, tlv(0x17, b"260430091502+0900")), "in Zulu", id="local-offset"),
        pytest.param(with_entry(SERIAL_5, TIME, tlv(0x30, KEY_COMPROMISE * 2)), "duplicate extension 2.5.29.21",
                     id="duplicate-reason-code"),
        pytest.param(with_entry(SERIAL_5, TIME, tlv(0x30, b"")), "malformed extensions", id="empty-entry-extensions"),
        pytest.param(with_entry(SERIAL_5, TIME, tlv(0x30, REMOVE_FROM_CRL)), "unsupported reasonCode",
                     id="remove-from-crl-in-full-crl"),
        pytest.param(with_entry(SERIAL_5, TIME, tlv(0x30, CERTIFICATE_ISSUER)), "critical entry extension 2.5.29.29",
                     id="indirect-crl-certificate-issuer"),
    ],
)
def test_reader_rejects_malformed_entries_when_reading_them(der: bytes, reason: str) -> None:
    read_crl(der)  # entries are not decoded until they are read
    with pytest.raises(CRLFormatError, match=reason):
        revoked_serials(der)
    with pytest.raises(CRLFormatError, match=reason):
        list(iter_revoked(der))


def test_reader_rejects_every_truncation(crl_der: bytes) -> None:
    for size in range(len(crl_der)):
        with pytest.raises(CRLFormatError):
            read_crl(crl_der[:size])


def read_everything(der: bytes) -> None:
    """Reads ``der`` every way ingest can; only CRLFormatError may come out."""
    try:
        read_crl(der)
        list(iter_revoked(der))
        revoked_serials(der)
    except CRLFormatError:
        pass


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 8)),
)


def mutate(der: bytes, steps: list[tuple[str, int, object]]) -> bytes:
    data = bytearray(der)
    for kind, where, what in steps:
        at = where % len(data) if data else 0
        if kind == "flip":
            data[at] ^= what  # type: ignore[operator]
        elif kind == "set":
            data[at] = what  # type: ignore[assignment]
        elif kind == "insert":
            data[at:at] = what  # type: ignore[assignment]
        else:
            del data[at : at + what]  # type: ignore[operator]
    return bytes(data)


@settings(FUZZ, max_examples=400)
@given(steps=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_crls_raise_only_crl_format_error(crl_der: bytes, steps: list[tuple[str, int, object]]) -> None:
    read_everything(mutate(crl_der, steps))


@settings(FUZZ, max_examples=200)
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_crl_format_error(data: bytes) -> None:
    read_everything(data)
    read_everything(b"\x30" + bytes([len(data)]) + data if len(data) < 128 else data)


@settings(FUZZ, max_examples=30)
@given(
    entries=st.lists(
        st.builds(
            RevokedEntry,
            serial=st.integers(1, 2**159 - 1),
            revoked_at=st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(9999, 12, 30),
                                    timezones=st.just(UTC)),
            reason=st.sampled_from([None, *(r for r in REASON if r is not REASON.remove_from_crl)]),
        ),
        max_size=20,
    )
)
def test_any_entries_round_trip_through_writer_and_reader(issuer: Issuer, entries: list[RevokedEntry]) -> None:
    der = write(issuer, entries)
    assert list(iter_revoked(der)) == expected(entries)
    assert verify_crl_signature(read_crl(der), issuer.key.public_key())


name_attribute = st.tuples(
    st.sampled_from([
        b"\x55\x04\x06", b"\x55\x04\x03", b"\x55\x04\x0a", b"\x55\x04\x2d",
        b"\x2b\x06\x01\x04\x01\x82\x37\x3c\x02\x01\x03", b"\x2a\x03",
    ]),
    st.sampled_from([0x0C, 0x13, 0x16, 0x14, 0x1E, 0x1C, 0x03, 0x04, 0x02, 0x30]),
    st.binary(max_size=70),
)


@settings(FUZZ, max_examples=200)
@given(attributes=st.lists(name_attribute, max_size=4))
def test_hostile_issuer_names_raise_only_crl_format_error(attributes: list[tuple[bytes, int, bytes]]) -> None:
    # cryptography warns about some attribute values; ingest must not depend on a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_everything(crl(issuer=name_der(attributes)))
