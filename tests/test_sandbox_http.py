"""What the sandbox publishes over HTTP: roots, CRLs, the linkage feed, the register."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import select

from saas import clock, db
from saas.cli import migrate_database
from saas.jpki.revocation import Reason
from saas.jpki.store import RevocationStore
from saas.sandbox import register
from saas.sandbox import services as sandbox
from saas.sandbox.models import SandboxCertificate
from tests.conftest import empty_database, make_app


def test_roots_are_served_as_pem(client: Any, db_session: Any) -> None:
    response = client.get("/sandbox/roots/auth")
    assert response.status_code == 200 and response.mimetype == "application/x-pem-file"
    roots = x509.load_pem_x509_certificates(response.data)
    assert roots and all("JPKI-TEST" in r.subject.rfc4514_string() for r in roots)
    missing = client.get("/sandbox/roots/other")
    assert missing.status_code == 404 and missing.get_json()["error"] == "unknown_kind"


def test_the_crl_is_served_until_something_is_revoked(client: Any, db_session: Any) -> None:
    card = sandbox.issue_card(seed=21)
    db_session.commit()
    first = client.get("/sandbox/crls/auth")
    assert first.status_code == 200 and first.mimetype == "application/pkix-crl"
    assert client.get("/sandbox/crls/auth").data == first.data
    sandbox.report_lost(card.auth.certificate.serial_number)
    db_session.commit()
    second = x509.load_der_x509_crl(client.get("/sandbox/crls/auth").data)
    number = second.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > x509.load_der_x509_crl(first.data).extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number
    assert second.get_revoked_certificate_by_serial_number(card.auth.certificate.serial_number)


def test_the_linkage_feed_pages(client: Any, db_session: Any) -> None:
    card = sandbox.issue_card(seed=22)
    sandbox.renew(card.auth.certificate.serial_number)
    db_session.commit()
    page = client.get("/sandbox/linkage?limit=1").get_json()
    assert len(page["entries"]) == 1 and page["next_after"] == page["entries"][0]["sequence"]
    rest = client.get(f"/sandbox/linkage?after={page['next_after']}").get_json()
    assert all(e["sequence"] > page["next_after"] for e in rest["entries"])
    bad = client.get("/sandbox/linkage?limit=0", headers={"Accept-Language": "en"})
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_parameter"
    assert bad.get_json()["field"] == "limit"


def test_the_register_names_a_card_holder_as_representative(client: Any, db_session: Any) -> None:
    card = sandbox.issue_card(seed=23)
    holder = db_session.scalar(select(SandboxCertificate).where(
        SandboxCertificate.serial == card.auth.certificate.serial_number)).person
    corporation = register.register_corporation(name="株式会社架け橋テスト", address="東京都千代田区丸の内１丁目",
                                                representative=holder)
    db_session.commit()
    record = client.get(f"/sandbox/register/corporations/{corporation.corporate_number}").get_json()
    assert record["name"] == "株式会社架け橋テスト"
    assert record["representatives"] == [{"title": "代表取締役", "name": holder.name,
                                          "address": holder.address,
                                          "appointed_on": clock.now().date().isoformat()}]


def test_a_hidden_representative_address_is_null(client: Any, db_session: Any) -> None:
    card = sandbox.issue_card(seed=24)
    holder = db_session.scalar(select(SandboxCertificate).where(
        SandboxCertificate.serial == card.auth.certificate.serial_number)).person
    corporation = register.register_corporation(name="非表示株式会社", address="大阪府大阪市",
                                                representative=holder, address_hidden=True)
    db_session.commit()
    record = client.get(f"/sandbox/register/corporations/{corporation.corporate_number}").get_json()
    assert record["representatives"][0]["address"] is None


def test_unknown_and_invalid_corporations(client: Any, db_session: Any) -> None:
    missing = client.get("/sandbox/register/corporations/7000012050002")
    assert missing.status_code == 404 and missing.get_json()["error"] == "corporation_not_found"
    card = sandbox.issue_card(seed=25)
    holder = db_session.scalar(select(SandboxCertificate).where(
        SandboxCertificate.serial == card.auth.certificate.serial_number)).person
    with pytest.raises(Exception) as error:
        register.register_corporation(name="x", address="y", representative=holder, number="7000012050003")
    assert getattr(error.value, "code", None) == "invalid_corporate_number"


def test_the_published_crl_feeds_the_same_ingest_as_live(tmp_path: Path) -> None:
    with empty_database("sandbox_ingest", tmp_path) as url:
        migrate_database(url)
        app = make_app(url, tmp_path)
        with app.app_context():
            card = sandbox.issue_card(seed=26)
            sandbox.revoke(card.auth.certificate.serial_number, Reason.KEY_COMPROMISE)
            db.session.commit()
            stores = sandbox.trust_stores()
        der = app.test_client().get("/sandbox/crls/auth").data
        revocations = RevocationStore(db.get_database(app).engine)
        revocations.ingest(der, stores.auth, at=clock.now())
        issuer = stores.auth.anchors[-1].key_id
        revoked = revocations.revocation(issuer, card.auth.certificate.serial_number, at=clock.now())
        assert revoked is not None and revoked.reason is Reason.KEY_COMPROMISE
        db.get_database(app).engine.dispose()




def test_the_ocsp_responder_answers_the_ocsp_client(client: Any, db_session: Any) -> None:
    from saas.jpki.ocsp import OCSPClient

    good = sandbox.issue_card(seed=27)
    lost = sandbox.issue_card(seed=28)
    sandbox.report_lost(lost.auth.certificate.serial_number)
    db_session.commit()

    def post(url: str, body: bytes) -> bytes:
        response = client.post(url, data=body, headers={"Content-Type": "application/ocsp-request"})
        assert response.mimetype == "application/ocsp-response"
        return response.data

    checker = OCSPClient("http://localhost/sandbox/ocsp", [good.auth_ca], post=post)
    issuer = good.auth_ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert checker.revocation(issuer, good.auth.certificate.serial_number, at=clock.now()) is None
    revoked = checker.revocation(issuer, lost.auth.certificate.serial_number, at=clock.now())
    assert revoked is not None and revoked.reason is Reason.KEY_COMPROMISE
    with pytest.raises(Exception) as unknown:
        checker.revocation(issuer, 12345, at=clock.now())
    assert getattr(unknown.value, "code", None) == "revocation_unknown"
    garbage = client.post("/sandbox/ocsp", data=b"\x30\x00")
    assert garbage.status_code == 200 and garbage.data == bytes.fromhex("30030a0101")


def test_a_person_follows_a_renewed_card_through_the_linkage_feed(tmp_path: Path) -> None:
    from saas.jpki.certificates import CertificateKind
    from saas.jpki.store import PersonRegistry

    with empty_database("sandbox_linkage", tmp_path) as url:
        migrate_database(url)
        app = make_app(url, tmp_path)
        registry = PersonRegistry(db.get_database(app).engine)
        with app.app_context():
            card = sandbox.issue_card(seed=29)
            issuer = sandbox.trust_stores().auth.anchors[-1].key_id
            db.session.commit()
        person = registry.resolve(issuer, card.auth.certificate.serial_number, CertificateKind.AUTH,
                                  at=clock.now())  # the first login
        with app.app_context():
            renewed = sandbox.renew(card.auth.certificate.serial_number)
            db.session.commit()
        feed = app.test_client().get("/sandbox/linkage").get_json()["entries"]
        # Both cards' auth→signature pairs, and old→new for both certificates.
        assert len(feed) == 4
        assert registry.apply_linkage("sandbox", feed, at=clock.now()) == 4
        assert registry.person_of(issuer, renewed.auth.certificate.serial_number) == person
        with app.app_context():
            signature_issuer = sandbox.trust_stores().signature.anchors[-1].key_id
        assert registry.person_of(signature_issuer, renewed.signature.certificate.serial_number) == person
        assert registry.apply_linkage("sandbox", feed, at=clock.now()) == 0  # resumed: nothing twice
        assert registry.position("sandbox") == feed[-1]["sequence"]
        db.get_database(app).engine.dispose()
