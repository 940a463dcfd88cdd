"""Parsing JPKI certificates: the typed values, the four attributes, hostile input."""

from __future__ import annotations

import functools
import random
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saas.jpki import profiles
from saas.jpki.certificates import (
    CertificateKind,
    Era,
    Gender,
    PersonAttributes,
    format_birthdate,
    parse_birthdate,
    parse_certificate,
)
from saas.jpki.errors import MalformedCertificate
from saas.sandbox import ca as sandbox_ca
from saas.sandbox.cards import certificate_expiry, issue_card
from saas.sandbox.persons import synthetic_person

ROOTS = Path(__file__).resolve().parent.parent / "saas" / "jpki" / "roots"


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def test_auth_certificate_parses_to_typed_values(sandbox_card: Any) -> None:
    parsed = parse_certificate(der(sandbox_card.auth.certificate))
    assert parsed.kind is CertificateKind.AUTH
    assert parsed.serial == 0x1001
    assert parsed.policies == (profiles.POLICY_TEST_AUTH,)
    assert parsed.key_usage == frozenset({"digital_signature"})
    assert not parsed.is_ca and not parsed.is_self_issued and parsed.is_test
    assert parsed.attributes is None
    assert parsed.issuer_organisation == "JPKI-TEST"
    assert parsed.authority_key_id == sandbox_card.auth_ca.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    assert parsed.not_before.tzinfo is not None and parsed.not_after > parsed.not_before


def test_signature_certificate_carries_the_four_attributes(sandbox_card: Any) -> None:
    parsed = parse_certificate(der(sandbox_card.signature.certificate))
    assert parsed.kind is CertificateKind.SIGNATURE
    assert parsed.key_usage == frozenset({"digital_signature", "content_commitment"})
    attributes = parsed.attributes
    assert attributes == PersonAttributes(
        name="吉田\u3000花子", name_substitutes=(0,), gender=Gender.FEMALE,
        birthdate=date(1975, 2, 28), birth_era=Era.SHOWA,
        address="東京都千代田区霞が関２丁目１番２号", address_substitutes=())
    assert (attributes.family_name, attributes.given_name) == ("吉田", "花子")


def test_real_jpki_roots_parse_as_live_cas() -> None:
    for path in sorted(ROOTS.glob("*.pem")):
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        parsed = parse_certificate(der(certificate))
        assert parsed.is_ca and parsed.is_self_issued and not parsed.is_test, path.name
        assert parsed.issuer_organisation == "JPKI"
        assert parsed.key_usage == frozenset({"key_cert_sign", "crl_sign"})


def test_octet_string_attribute_values_are_accepted(sandbox_roots: dict[str, Any]) -> None:
    names = [x509.OtherName(oid, b"\x04" + bytes([len(v.encode())]) + v.encode())
             for oid, v in ((profiles.OID_NAME, "山田\u3000太郎"), (profiles.OID_GENDER, "1"),
                            (profiles.OID_BIRTHDATE, "419890108"),
                            (profiles.OID_ADDRESS, "北海道札幌市"))]
    certificate = _signature_certificate_with(sandbox_roots["signature"], names)
    attributes = parse_certificate(der(certificate)).attributes
    assert attributes is not None and attributes.name == "山田\u3000太郎"
    assert attributes.birthdate == date(1989, 1, 8) and attributes.birth_era is Era.HEISEI


@pytest.mark.parametrize("value, expected", [
    ("118680125", (date(1868, 1, 25), Era.MEIJI)),
    ("219120730", (date(1912, 7, 30), Era.TAISHO)),
    ("319261225", (date(1926, 12, 25), Era.SHOWA)),
    ("319890107", (date(1989, 1, 7), Era.SHOWA)),
    ("419890108", (date(1989, 1, 8), Era.HEISEI)),
    ("520190501", (date(2019, 5, 1), Era.REIWA)),
])
def test_birthdates_in_every_era(value: str, expected: tuple[date, Era]) -> None:
    assert parse_birthdate(value) == expected
    assert format_birthdate(expected[0]) == value


@pytest.mark.parametrize("value", ["419890107", "620200101", "319890230", "31989010", "３19890107", ""])
def test_impossible_birthdates_are_malformed(value: str) -> None:
    with pytest.raises(MalformedCertificate):
        parse_birthdate(value)


@pytest.mark.parametrize("mutation", ["missing_name", "bad_gender", "duplicate", "integer_value",
                                      "flags_length"])
def test_bad_attributes_are_malformed(sandbox_roots: dict[str, Any], mutation: str) -> None:
    def utf8(oid: Any, text: str) -> x509.OtherName:
        return x509.OtherName(oid, sandbox_ca.utf8_string(text))

    base = {profiles.OID_NAME: "山田\u3000太郎", profiles.OID_GENDER: "1",
            profiles.OID_BIRTHDATE: "419890108", profiles.OID_ADDRESS: "北海道札幌市"}
    names = [utf8(oid, text) for oid, text in base.items()]
    if mutation == "missing_name":
        names = names[1:]
    elif mutation == "bad_gender":
        names[1] = utf8(profiles.OID_GENDER, "9")
    elif mutation == "duplicate":
        names.append(utf8(profiles.OID_NAME, "別人\u3000次郎"))
    elif mutation == "integer_value":
        names[1] = x509.OtherName(profiles.OID_GENDER, b"\x02\x01\x01")
    elif mutation == "flags_length":
        names.append(utf8(profiles.OID_NAME_SUBSTITUTES, "1"))
    with pytest.raises(MalformedCertificate):
        parse_certificate(der(_signature_certificate_with(sandbox_roots["signature"], names)))


def test_duplicate_extensions_are_malformed(sandbox_roots: dict[str, Any]) -> None:
    # cryptography will not build a duplicate, so build a stand-in OID of the same length
    # (2.5.29.99) and rename it to subjectKeyIdentifier (2.5.29.14) in the DER.
    names = [x509.OtherName(profiles.OID_GENDER, sandbox_ca.utf8_string("1"))]
    certificate = _signature_certificate_with(sandbox_roots["signature"], names,
                                              x509.UnrecognizedExtension(
                                                  x509.ObjectIdentifier("2.5.29.99"), b"\x04\x01\x07"))
    data = der(certificate)
    assert data.count(b"\x06\x03\x55\x1d\x63") == 1
    forged = data.replace(b"\x06\x03\x55\x1d\x63", b"\x06\x03\x55\x1d\x0e")
    with pytest.raises(MalformedCertificate, match="Duplicate"):
        parse_certificate(forged)


@pytest.mark.parametrize("data", [b"", b"\x30", b"\x30\x84\xff\xff\xff\xff", b"\x30\x82\x01\x00" + b"\x00" * 10,
                                  b"\xff" * 64, b"\x30" * 20_000, "not bytes"])
def test_garbage_is_malformed(data: Any) -> None:
    with pytest.raises(MalformedCertificate):
        parse_certificate(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_certificates_raise_only_the_typed_error(sandbox_card: Any, data: st.DataObject) -> None:
    original = bytearray(der(sandbox_card.signature.certificate))
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        if action == "flip":
            mutated[position] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del mutated[position:]
            if not mutated:
                break
        elif action == "insert":
            mutated[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            mutated[position] = 0x84 if data.draw(st.booleans()) else 0x82
    try:
        parse_certificate(bytes(mutated))
    except MalformedCertificate:
        pass


def test_sandbox_certificates_pass_openssl(sandbox_card: Any, tmp_path: Path) -> None:
    for name, certificate, root in (("auth", sandbox_card.auth.certificate, sandbox_card.auth_ca),
                                    ("sign", sandbox_card.signature.certificate, sandbox_card.signature_ca)):
        leaf = tmp_path / f"{name}.pem"
        anchor = tmp_path / f"{name}-root.pem"
        leaf.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        anchor.write_bytes(root.public_bytes(serialization.Encoding.PEM))
        text = subprocess.run(["openssl", "x509", "-in", str(leaf), "-noout", "-text"],
                              capture_output=True, text=True, check=True).stdout
        assert "sha256WithRSAEncryption" in text and "Public-Key: (2048 bit)" in text
        verified = subprocess.run(["openssl", "verify", "-x509_strict", "-policy_check",
                                   "-explicit_policy", "-policy",
                                   profiles.POLICY_TEST_AUTH if name == "auth" else profiles.POLICY_TEST_SIGNATURE,
                                   "-CAfile", str(anchor), str(leaf)],
                                  capture_output=True, text=True)
        assert verified.returncode == 0 and verified.stdout.strip().endswith("OK"), verified.stderr


def test_certificates_expire_on_the_fifth_birthday_after_issue() -> None:
    issued = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    assert certificate_expiry(date(1980, 3, 15), issued) == datetime(2031, 3, 15, 14, 59, 59, tzinfo=UTC)
    assert certificate_expiry(date(1980, 12, 1), issued) == datetime(2030, 12, 1, 14, 59, 59, tzinfo=UTC)
    assert certificate_expiry(date(1980, 2, 29), issued) == datetime(2031, 2, 28, 14, 59, 59, tzinfo=UTC)


def test_no_signature_certificate_under_fifteen(sandbox_roots: dict[str, Any]) -> None:
    child = synthetic_person(random.Random(3), era=Era.REIWA)
    card = issue_card(sandbox_roots["auth"], sandbox_roots["signature"], child,
                      now=datetime.now(UTC), auth_serial=77, signature_serial=78)
    assert card.signature is None and card.auth.certificate.serial_number == 77


def test_synthetic_people_cover_every_era_and_gender() -> None:
    rng = random.Random(11)
    eras, genders = set(), set()
    for _ in range(400):
        person = synthetic_person(rng)
        eras.add(person.attributes.birth_era)
        genders.add(person.attributes.gender)
    for era in Era:
        assert synthetic_person(rng, era=era).attributes.birth_era is era
    assert genders == set(Gender)


@functools.cache
def _leaf_key() -> Any:
    return sandbox_ca.new_rsa_key()


def _signature_certificate_with(root: Any, names: list[x509.GeneralName],
                                extra: x509.ExtensionType | None = None) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = sandbox_ca.leaf_builder(root, x509.Name([]), _leaf_key().public_key(), 99, now,
                               now.replace(year=now.year + 1), profiles.POLICY_TEST_SIGNATURE,
                               content_commitment=True)
    builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    return builder.sign(root.key, hashes.SHA256())


def test_a_certificate_with_a_negative_serial_is_malformed(sandbox_roots: dict[str, Any]) -> None:
    import warnings

    root = sandbox_roots["auth"]
    now = datetime.now(UTC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        certificate = sandbox_ca.leaf_builder(root, x509.Name([]), _leaf_key().public_key(), 1, now,
                                              now.replace(year=now.year + 1), profiles.POLICY_TEST_AUTH,
                                              content_commitment=False).sign(root.key, hashes.SHA256())
    data = bytearray(der(certificate))
    # serialNumber INTEGER 1 (02 01 01) becomes -1 (02 01 FF): a hostile issuer's doing.
    position = data.index(b"\x02\x01\x01", 4)
    data[position + 2] = 0xFF
    with pytest.raises(MalformedCertificate, match="positive"):
        parse_certificate(bytes(data))
