"""The sandbox J-LIS: cards through their life events, and what it publishes."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from saas import clock
from saas.jpki.certificates import CertificateKind, Era, parse_certificate
from saas.jpki.revocation import Reason
from saas.sandbox import services as sandbox
from saas.sandbox.models import SandboxCertificate

DER = serialization.Encoding.DER


def record(db_session: Any, serial: int) -> SandboxCertificate:
    return db_session.scalar(select(SandboxCertificate).where(SandboxCertificate.serial == serial))


def test_issued_cards_are_registered_and_trusted_in_sandbox(db_session: Any) -> None:
    card = sandbox.issue_card(seed=1, era=Era.SHOWA, auth_pin="1234")
    stores = sandbox.trust_stores()
    now = clock.now()
    stores.auth.validate(parse_certificate(card.auth.certificate.public_bytes(DER)), at=now)
    stores.signature.validate(parse_certificate(card.signature.certificate.public_bytes(DER)), at=now)
    assert card.auth_pin == "1234" and len(card.signature_password) >= 6
    auth = record(db_session, card.auth.certificate.serial_number)
    assert auth.kind is CertificateKind.AUTH and auth.revoked_at is None


def test_renewal_supersedes_and_links_old_to_new(db_session: Any) -> None:
    card = sandbox.issue_card(seed=2)
    old_auth, old_sign = card.auth.certificate.serial_number, card.signature.certificate.serial_number
    renewed = sandbox.renew(old_auth)
    assert renewed.auth.certificate.serial_number != old_auth
    assert renewed.auth.key.public_key().public_numbers() != card.auth.key.public_key().public_numbers()
    for serial in (old_auth, old_sign):
        assert record(db_session, serial).reason is Reason.SUPERSEDED
    feed = sandbox.linkage_feed()
    pairs = {(e["old"]["serial"], e["new"]["serial"]) for e in feed if e["event"] == "renewal"}
    assert (str(old_auth), str(renewed.auth.certificate.serial_number)) in pairs
    assert (str(old_sign), str(renewed.signature.certificate.serial_number)) in pairs


def test_a_move_reissues_only_the_signature_certificate(db_session: Any) -> None:
    card = sandbox.issue_card(seed=3)
    new_key = sandbox.change_attributes(card.auth.certificate.serial_number,
                                        address="大阪府大阪市北区梅田１丁目１番１号")
    attributes = parse_certificate(new_key.certificate.public_bytes(DER)).attributes
    assert attributes.address == "大阪府大阪市北区梅田１丁目１番１号"
    assert attributes.name == card.person.attributes.name
    assert record(db_session, card.signature.certificate.serial_number).reason is Reason.AFFILIATION_CHANGED
    assert record(db_session, card.auth.certificate.serial_number).revoked_at is None
    assert sandbox.linkage_feed()[-1]["event"] == "attributes_changed"


def test_a_lost_card_is_revoked_key_compromise(db_session: Any) -> None:
    card = sandbox.issue_card(seed=4)
    revoked = sandbox.report_lost(card.auth.certificate.serial_number)
    assert {c.reason for c in revoked} == {Reason.KEY_COMPROMISE} and len(revoked) == 2
    with pytest.raises(sandbox.SandboxError) as error:
        sandbox.report_lost(card.auth.certificate.serial_number)
    assert error.value.code == "already_revoked"


def test_death_ends_the_card_with_cessation(db_session: Any) -> None:
    card = sandbox.issue_card(seed=5)
    revoked = sandbox.end_card(card.signature.certificate.serial_number, deceased=True)
    assert {c.reason for c in revoked} == {Reason.CESSATION_OF_OPERATION}
    assert record(db_session, card.auth.certificate.serial_number).person.deceased


def test_unknown_serials_are_not_found(db_session: Any) -> None:
    with pytest.raises(Exception) as error:
        sandbox.revoke(123, Reason.UNSPECIFIED)
    assert getattr(error.value, "code", None) == "certificate_not_found"


def test_published_crl_lists_revocations_and_verifies_with_openssl(db_session: Any, tmp_path: Path) -> None:
    kept = sandbox.issue_card(seed=6)
    lost = sandbox.issue_card(seed=7)
    sandbox.report_lost(lost.auth.certificate.serial_number)
    first = x509.load_der_x509_crl(sandbox.publish_crl(CertificateKind.AUTH))
    second_der = sandbox.publish_crl(CertificateKind.AUTH)
    second = x509.load_der_x509_crl(second_der)
    number = lambda crl: crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(second) == number(first) + 1
    entry = second.get_revoked_certificate_by_serial_number(lost.auth.certificate.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert second.get_revoked_certificate_by_serial_number(kept.auth.certificate.serial_number) is None
    assert second.next_update_utc - second.last_update_utc == timedelta(hours=24)
    root = tmp_path / "root.pem"
    root.write_bytes(kept.auth_ca.public_bytes(serialization.Encoding.PEM))
    crl = tmp_path / "auth.crl"
    crl.write_bytes(second_der)
    result = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(crl), "-CAfile", str(root),
                             "-noout"], capture_output=True, text=True)
    assert result.returncode == 0 and "verify OK" in (result.stdout + result.stderr)


def test_a_new_root_generation_keeps_old_cards_trusted(db_session: Any) -> None:
    before = sandbox.issue_card(seed=8)
    sandbox.rotate_root(CertificateKind.AUTH)
    after = sandbox.issue_card(seed=9)
    stores = sandbox.trust_stores()
    generations = []
    for card in (before, after):
        trusted = stores.auth.validate(parse_certificate(card.auth.certificate.public_bytes(DER)),
                                       at=clock.now())
        generations.append(trusted.anchor.key_id)
    assert generations[0] != generations[1]
    assert before.auth_ca.subject == after.auth_ca.subject


def test_the_linkage_feed_pages_by_sequence(db_session: Any) -> None:
    card = sandbox.issue_card(seed=10)
    sandbox.renew(card.auth.certificate.serial_number)
    everything = sandbox.linkage_feed()
    assert len(everything) >= 2
    first = everything[0]["sequence"]
    assert [e["sequence"] for e in sandbox.linkage_feed(after=first)] == [e["sequence"] for e in everything[1:]]
    assert sandbox.linkage_feed(after=everything[-1]["sequence"]) == []


def test_old_root_generations_keep_publishing_crls(db_session: Any) -> None:
    before = sandbox.issue_card(seed=31)
    new_generation = sandbox.rotate_root(CertificateKind.AUTH)
    sandbox.report_lost(before.auth.certificate.serial_number)
    crls = {key: x509.load_der_x509_crl(der) for key, der in sandbox.current_crls(CertificateKind.AUTH).items()}
    assert len(crls) == 2 and new_generation.key_id in crls
    listed = [key for key, crl in crls.items()
              if crl.get_revoked_certificate_by_serial_number(before.auth.certificate.serial_number)]
    assert listed and listed[0] != new_generation.key_id  # listed by the generation that issued it


def test_a_move_to_another_prefecture_changes_the_locality(db_session: Any) -> None:
    card = sandbox.issue_card(seed=32)
    key = sandbox.change_attributes(card.auth.certificate.serial_number, address="沖縄県那覇市泉崎１丁目")
    localities = key.certificate.subject.get_attributes_for_oid(x509.oid.NameOID.LOCALITY_NAME)
    assert [a.value for a in localities] == ["Okinawa-ken"]
    with pytest.raises(sandbox.SandboxError) as error:
        sandbox.change_attributes(card.auth.certificate.serial_number)
    assert error.value.code == "nothing_changed"


def test_a_deceased_holders_card_cannot_be_renewed(db_session: Any) -> None:
    card = sandbox.issue_card(seed=33)
    sandbox.end_card(card.auth.certificate.serial_number, deceased=True)
    with pytest.raises(sandbox.SandboxError) as error:
        sandbox.renew(card.auth.certificate.serial_number)
    assert error.value.code == "holder_deceased"


def test_synthetic_people_on_29_february() -> None:
    from datetime import date
    from random import Random

    from saas.sandbox.persons import synthetic_person

    person = synthetic_person(Random(1), today=date(2028, 2, 29))
    assert person.attributes.birthdate <= date(2013, 3, 1)
