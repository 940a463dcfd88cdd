"""Powers of attorney (電子委任状): a tenant prepares a power, the corporation's
representative signs it with the card (register-confirmed), the service seals it, and a
relying party fetches it with a signed receipt, as of any moment, and verifies the
record offline. Tampering, a swapped certificate, a signature made after revocation, a
sub-delegation wider than its parent and another tenant's access code are refused with
their own reasons."""

from __future__ import annotations

import base64
import copy
import html
import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import bindparam, event, select, update

from saas import clock, db
from saas.db import all_tenants, tenant_scope
from saas.delegation import records, scope
from saas.delegation import services as powers
from saas.delegation.models import PowerHistory, PowerOfAttorney
from saas.events.models import Event
from saas.jpki.revocation import LayeredRevocation
from saas.jpki.store import Reason
from saas.sandbox import jobs as sandbox_jobs
from saas.sandbox import register
from saas.sandbox import services as sandbox
from saas.sandbox.models import SandboxCertificate
from saas.stores import jpki_stores
from saas.tenants import services as tenants
from saas.tenants.models import Tenant, TenantMode
from tests.conftest import make_app
from tests.oidc_helpers import agent_signature, agent_token, api_key, issue_card


@pytest.fixture
def app(committed_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(committed_url, tmp_path)
    with application.app_context():
        for slug in ("bank", "clinic"):
            tenants.create_tenant(slug=slug, display_name=slug, kind="bank")
        db.session.commit()
    yield application
    db.get_database(application).engine.dispose()


class Representative:
    """A sandbox card whose holder represents a corporation in the register stand-in."""

    def __init__(self, card: Any, corporate_number: str) -> None:
        self.card, self.corporate_number = card, corporate_number

    def __getattr__(self, name: str) -> Any:
        return getattr(self.card, name)


def represents(app: Flask, seed: int, name: str, address: str, **register_options: Any) -> Representative:
    """A new card whose holder the register stand-in lists as the representative of a new corporation."""
    card = issue_card(app, seed=seed)
    with app.app_context():
        holder = db.session.scalar(select(SandboxCertificate).where(
            SandboxCertificate.serial == card.auth.certificate.serial_number)).person
        corporation = register.register_corporation(name=name, address=address, representative=holder,
                                                    **register_options)
        db.session.commit()
        return Representative(card, corporation.corporate_number)


@pytest.fixture
def representative(app: Flask) -> Any:
    return represents(app, 31, "株式会社かけはし商事", "東京都千代田区丸の内１丁目１番１号")




def draft(corporate_number: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "principal": {"corporate_number": corporate_number, "name": "株式会社かけはし商事",
                      "address": "東京都千代田区丸の内１丁目１番１号"},
        "agents": [{"name": "佐藤 一郎", "affiliation": "営業部", "email": "ichiro@kakehashi-shoji.example"}],
        "matters": ["入札及び見積りに関する件", "契約の締結に関する件"],
        "authorization_details": [{"type": "e_procurement", "actions": ["bid", "contract"],
                                   "locations": ["https://p-portal.example.go.jp"],
                                   "limits": {"amount": {"currency": "JPY", "max": 50000000}}}],
        "valid_until": (clock.now() + timedelta(days=365)).isoformat(), "subdelegation_allowed": True}
    body.update(changes)
    return body


def sign_as(client: Any, signing_url: str, card: Any) -> Any:
    """The representative's browser and agent: card login, then the signature."""
    path = urlsplit(signing_url).path
    page = client.get(path).get_data(as_text=True)
    csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    challenge = re.search(r'data-challenge="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    headers = {"X-CSRFToken": csrf, "Accept": "application/json", "Accept-Language": "en"}
    step = client.post(f"{path}/card", json={"token": agent_token(card, challenge)}, headers=headers)
    assert step.status_code == 200, step.get_json()
    body = step.get_json()
    assert body["next"] == "sign" and "委任状" in body["text"] and "入札及び見積りに関する件" in body["text"]
    return client.post(f"{path}/release", json=agent_signature(card, body["digest"]), headers=headers)


def signed_power(app: Flask, representative: Any, writer: dict[str, str], **changes: Any) -> str:
    client = app.test_client()
    created = client.post("/t/bank/api/powers", json=draft(representative.corporate_number, **changes),
                          headers=writer)
    assert created.status_code == 201, created.get_json()
    power_id = created.get_json()["id"]
    link = client.post(f"/t/bank/api/powers/{power_id}/submit", headers=writer).get_json()["signing_url"]
    done = sign_as(app.test_client(), link, representative)
    assert done.status_code == 200, done.get_json()
    return power_id


def verify(app: Flask, record: Any) -> records.Verdict:
    with app.app_context():
        return records.verify_record(record, store=sandbox.trust_stores().signature,
                                     revocation=LayeredRevocation(jpki_stores().revocations),
                                     tsa_roots=powers.tsa_roots(TenantMode.SANDBOX))


def receipt_claims(fetched: dict[str, Any]) -> dict[str, Any]:
    return json.loads(records.unb64u(fetched["as_of"]["receipt"].split(".")[1]))  # type: ignore[no-any-return]


def go_live(app: Flask, slug: str = "bank") -> None:
    """The organisation goes live (as an operator's approval does), seen by this process at once."""
    with db.get_database(app).engine.begin() as connection:
        connection.execute(update(Tenant).where(Tenant.slug == slug).values(mode=TenantMode.LIVE))
    with app.app_context():
        tenants._BY_SLUG.clear()


def signed_in_live_mode(app: Flask, power_id: str) -> None:
    """Make the power's record say it was signed in live mode, as a live card would have made
    it (tests have none); its signature no longer verifies, which is not what is tested."""
    with app.app_context(), all_tenants(db.session):
        power = db.session.scalar(select(PowerOfAttorney).where(PowerOfAttorney.public_id == power_id))
        assert power is not None and power.record is not None
        record = json.loads(power.record)
        body = json.loads(records.unb64u(record["signature"]["payload"]))
        record["signature"]["payload"] = records.b64u(records.canonical({**body, "mode": "live"}))
        power.record = json.dumps(record, ensure_ascii=False)
        power.record_digest = records.sha256_hex(records.canonical(record))
        db.session.commit()


def test_a_representative_signs_and_a_relying_party_verifies_the_power(app: Flask, representative: Any) -> None:
    writer, reader = api_key(app, "bank", "delegation:write"), api_key(app, "bank", "delegation:read")
    power_id = signed_power(app, representative, writer)
    fetched = app.test_client().get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()
    assert fetched["status"] == "active" and fetched["as_of"]["status"] == "active"
    assert fetched["representative"] == {"name": representative.person.attributes.name, "title": "代表取締役",
                                         "confirmed_by": "register"}
    verdict = verify(app, fetched["record"])
    assert verdict.valid, verdict.reasons
    assert verdict.power["matters"] == ["入札及び見積りに関する件", "契約の締結に関する件"]
    assert verdict.facts["signer"] == representative.person.attributes.name
    # The receipt is the tenant's ES256 signature over the status as of the moment.
    jwks = app.test_client().get("/t/bank/jwks.json").get_json()
    from joserfc import jws
    from joserfc.jwk import KeySet

    receipt = jws.deserialize_compact(fetched["as_of"]["receipt"], KeySet.import_key_set(jwks), algorithms=["ES256"])
    claims = json.loads(receipt.payload)
    assert claims["power"] == power_id and claims["status"] == "active"
    assert claims["record_digest"] == fetched["record_digest"]


def test_as_of_before_a_revocation_still_shows_the_power_active(app: Flask, representative: Any) -> None:
    writer, reader = api_key(app, "bank", "delegation:write"), api_key(app, "bank", "delegation:read")
    power_id = signed_power(app, representative, writer)
    client = app.test_client()
    client.get(f"/t/bank/api/powers/{power_id}", headers=reader)  # this party will be told
    before = clock.now()
    with clock.frozen(before + timedelta(minutes=5)):
        revoked = client.post(f"/t/bank/api/powers/{power_id}/revoke", json={"reason": "退職"}, headers=writer)
    assert revoked.status_code == 200 and revoked.get_json()["status"] == "revoked"
    as_of = (before + timedelta(minutes=1)).isoformat()
    with clock.frozen(before + timedelta(minutes=10)):
        then = client.get(f"/t/bank/api/powers/{power_id}", query_string={"as_of": as_of}, headers=reader).get_json()
        now = client.get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()
    assert then["status"] == "revoked" and then["as_of"]["status"] == "active"
    assert now["as_of"]["status"] == "revoked"
    with app.app_context(), all_tenants(db.session):
        event = db.session.scalar(select(Event).where(Event.type == "delegation.power.revoked"))
        assert event is not None
        assert json.loads(event.payload)["data"]["fetched_by"] == [reader_key_id(app)]


def test_a_fetch_reads_the_sealed_content_once_and_the_state_every_time(app: Flask, representative: Any) -> None:
    from tests.test_rowcache import statements

    writer, reader = api_key(app, "bank", "delegation:write"), api_key(app, "bank", "delegation:read")
    power_id = signed_power(app, representative, writer)
    signed_in_live_mode(app, power_id)  # a live key sees no sandbox power
    client = app.test_client()
    app.config["ROW_CACHE_SECONDS"] = 60  # as in production: the tenant and the key are known
    first = client.get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()
    seen, isolation, checkouts, me = statements(app), [], [], threading.get_ident()
    engine = db.get_database(app).engine
    event.listen(engine, "before_cursor_execute", lambda conn, _cursor, sql, *_a: isolation.append(
        (sql.split()[0], conn.get_execution_options().get("isolation_level"))) if threading.get_ident() == me else None)
    event.listen(engine, "checkout", lambda *_a: checkouts.append(1) if threading.get_ident() == me else None)
    again = client.get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()
    assert [sql for sql in seen if "FROM powers_of_attorney" in sql]  # the state: read afresh
    # A sandbox tenant's mode is read afresh for its kk_test_ key, then the state: both as committed
    # now, in autocommit (no BEGIN, no COMMIT); the call's log line keeps its transaction.
    assert [level for verb, level in isolation if verb == "SELECT"] == ["AUTOCOMMIT", "AUTOCOMMIT"]
    assert all(level is None for verb, level in isolation if verb != "SELECT")
    with engine.begin() as connection:  # live: no query needs the request's connection
        connection.execute(update(Tenant).where(Tenant.slug == "bank").values(mode=TenantMode.LIVE))
    with app.app_context():
        tenants._BY_SLUG.clear()  # this process's sandbox copy lapses
    live_key = api_key(app, "bank", "delegation:read")
    client.get(f"/t/bank/api/powers/{power_id}", headers=live_key)
    isolation.clear()
    checkouts.clear()
    client.get(f"/t/bank/api/powers/{power_id}", headers=live_key)
    assert ("SELECT", "AUTOCOMMIT") in isolation and len(checkouts) <= 2  # the state: no BEGIN, no COMMIT
    assert all(level is None for verb, level in isolation if verb != "SELECT")  # a write keeps its transaction
    assert not [sql for sql in seen if "power_agents" in sql]  # the sealed content: kept
    assert {k: v for k, v in again.items() if k != "as_of"} == {k: v for k, v in first.items() if k != "as_of"}
    assert client.post(f"/t/bank/api/powers/{power_id}/suspend", json={"reason": "確認中"},
                       headers=api_key(app, "bank", "delegation:write")).status_code == 200
    suspended = client.get(f"/t/bank/api/powers/{power_id}", headers=live_key).get_json()
    assert suspended["status"] == "suspended" and suspended["as_of"]["status"] == "suspended"
    assert receipt_claims(suspended)["mode"] == "live"
    assert suspended["agents"] == first["agents"] and suspended["record"] == first["record"]
    other = client.get(f"/t/clinic/api/powers/{power_id}", headers=api_key(app, "clinic", "delegation:read"))
    assert other.status_code == 404 and other.get_json()["error"] == "power_not_found"


def test_the_core_read_path_sees_only_the_bound_tenant(app: Flask, representative: Any) -> None:
    from saas.db import CrossTenantAccess, TenantScopeMissing
    from saas.delegation.models import PowerAgent

    power_id = signed_power(app, representative, api_key(app, "bank", "delegation:write"))
    powers_table, agents_table = PowerOfAttorney.__table__, PowerAgent.__table__
    by_id = db.TenantRead(powers_table, powers_table.c.public_id,
                          where=powers_table.c.public_id == bindparam("public_id"))
    with app.app_context():
        bank, clinic = tenants.active_tenant("bank"), tenants.active_tenant("clinic")
        with tenant_scope(db.session, bank.id):
            assert [row.public_id for row in by_id.rows(public_id=power_id)] == [power_id]
            with pytest.raises(ValueError):  # the tenant's parameter is not the caller's to set
                by_id.rows(public_id=power_id, kakehashi_tenant=clinic.id)
        with tenant_scope(db.session, clinic.id):  # one statement, another tenant: its rows only
            assert by_id.rows(public_id=power_id) == []
        with pytest.raises(TenantScopeMissing):
            by_id.rows(public_id=power_id)
        with all_tenants(db.session), pytest.raises(TenantScopeMissing):
            by_id.rows(public_id=power_id)
    with pytest.raises(CrossTenantAccess):  # another scoped table would get no criterion
        db.TenantRead(powers_table, powers_table.c.id,
                      where=powers_table.c.id.in_(select(agents_table.c.power_id)))
    with pytest.raises(ValueError):
        db.TenantRead(powers_table, powers_table.c.id, where=powers_table.c.tenant_id == bindparam("kakehashi_tenant"))


def test_a_power_signed_in_the_sandbox_is_not_found_with_a_live_key(app: Flask, representative: Any) -> None:
    writer, reader = api_key(app, "bank", "delegation:write"), api_key(app, "bank", "delegation:read")
    power_id = signed_power(app, representative, writer)
    client = app.test_client()
    in_sandbox = client.get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()
    assert in_sandbox["mode"] == "sandbox" and receipt_claims(in_sandbox)["mode"] == "sandbox"
    go_live(app)
    live_reader, live_writer = api_key(app, "bank", "delegation:read"), api_key(app, "bank", "delegation:write")
    fetched = client.get(f"/t/bank/api/powers/{power_id}", headers=live_reader)
    assert fetched.status_code == 404 and fetched.get_json()["error"] == "power_not_found"
    assert "sandbox" in fetched.get_json()["message"]
    assert client.post("/t/bank/api/powers/lookup", json={"ids": [power_id]}, headers=live_reader).get_json() == {
        "data": [], "not_found": [power_id]}
    assert client.get("/t/bank/api/powers", query_string={"corporate_number": representative.corporate_number},
                      headers=live_reader).get_json()["data"] == []
    code = client.post(f"/t/bank/api/powers/{power_id}/access-codes", headers=live_writer).get_json()["code"]
    assert client.post("/t/bank/api/power-access-codes/redeem", json={"code": code},
                       headers=live_reader).status_code == 404


def test_a_revocation_that_loses_a_race_is_told_the_power_has_ended(app: Flask, representative: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Two revocations at once: the later one read the power in force before the other
    # committed. It is answered 409 (not a 500 from a second history line numbered alike).
    writer = api_key(app, "bank", "delegation:write")
    power_id = signed_power(app, representative, writer)
    real_get, raced, answers = powers.get, [], []

    def revoke(reason: str) -> None:
        answers.append(app.test_client().post(f"/t/bank/api/powers/{power_id}/revoke", json={"reason": reason},
                                              headers=writer))

    def get(public_id: str) -> PowerOfAttorney:
        found = real_get(public_id)
        if not raced:  # read in force; the other revocation wins meanwhile
            raced.append(True)
            db.session.commit()  # (SQLite: let go of the write lock this request holds)
            rival = threading.Thread(target=revoke, args=("誤発行",))
            rival.start()
            rival.join()
        return found

    monkeypatch.setattr(powers, "get", get)
    revoke("退職")
    assert [answer.status_code for answer in answers] == [200, 409]
    assert answers[1].get_json()["error"] == "invalid_state"
    with app.app_context(), all_tenants(db.session):
        power = db.session.scalar(select(PowerOfAttorney).where(PowerOfAttorney.public_id == power_id))
        assert power is not None and power.end_reason == "誤発行"
        assert [(h.action, h.reason) for h in powers.history(power)][-1] == ("revoked", "誤発行")
        assert powers.verify_history(power) == []
        assert db.session.scalars(select(Event.type).where(Event.type == "delegation.power.revoked")).all() == [
            "delegation.power.revoked"]


def reader_key_id(app: Flask) -> str:
    """The id of the test's one relying-party (delegation:read) key."""
    from saas.tenants.models import ApiKey

    with app.app_context(), all_tenants(db.session):
        return db.session.scalar(select(ApiKey.public_id).where(ApiKey.scopes.contains("delegation:read")))


def test_a_tampered_record_and_a_swapped_certificate_are_rejected(app: Flask, representative: Any) -> None:
    writer, reader = api_key(app, "bank", "delegation:write"), api_key(app, "bank", "delegation:read")
    power_id = signed_power(app, representative, writer)
    record = app.test_client().get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()["record"]

    tampered = copy.deepcopy(record)
    body = json.loads(records.unb64u(tampered["signature"]["payload"]))
    body["authorization_details"][0]["limits"]["amount"]["max"] = 900000000
    tampered["signature"]["payload"] = records.b64u(records.canonical(body))
    assert verify(app, tampered).code == "tampered"

    other = issue_card(app, seed=32)
    swapped = copy.deepcopy(record)
    swapped["signature"]["header"]["x5c"] = [base64.b64encode(other.signature.certificate.public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)).decode()]
    assert verify(app, swapped).code == "certificate_swapped"

    resealed = copy.deepcopy(record)
    resealed["seal"] = resealed["seal"][:-4] + ("AAAA" if not resealed["seal"].endswith("AAAA") else "BBBB")
    assert verify(app, resealed).code == "seal_invalid"


def test_a_signature_made_after_the_certificate_was_revoked_is_refused(app: Flask, representative: Any) -> None:
    writer = api_key(app, "bank", "delegation:write")
    client = app.test_client()
    power_id = client.post("/t/bank/api/powers", json=draft(representative.corporate_number),
                           headers=writer).get_json()["id"]
    link = client.post(f"/t/bank/api/powers/{power_id}/submit", headers=writer).get_json()["signing_url"]
    with app.app_context():
        sandbox.revoke(representative.signature.certificate.serial_number, Reason.KEY_COMPROMISE)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
    refused = sign_as(app.test_client(), link, representative)
    assert refused.status_code == 422 and refused.get_json()["error"] == "signature_revoked"


def test_the_verifier_refuses_a_record_signed_after_revocation(app: Flask, representative: Any) -> None:
    # A record whose signing time falls after the certificate's revocation (as a forger
    # holding a stolen card's key, or a back-dating service, would make) does not verify,
    # while one signed before a later revocation still does.
    writer, reader = api_key(app, "bank", "delegation:write"), api_key(app, "bank", "delegation:read")
    power_id = signed_power(app, representative, writer)
    record = app.test_client().get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()["record"]
    later = clock.now() + timedelta(hours=1)
    with app.app_context(), clock.frozen(later):
        sandbox.revoke(representative.signature.certificate.serial_number, Reason.KEY_COMPROMISE)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
    assert verify(app, record).valid  # signed before the revocation: still good
    with app.app_context(), clock.frozen(later + timedelta(hours=1)):
        forged = _resign(app, record, representative, signed_at=clock.now())
        backdated = _resign(app, record, representative, signed_at=later - timedelta(minutes=30))
    assert verify(app, forged).code == "revoked_at_signing"
    # Claiming a signing time before the revocation does not help: the time-stamp says when.
    assert verify(app, backdated).code == "timestamp_mismatch"
    unstamped = {k: v for k, v in record.items() if k != "timestamp"}
    assert verify(app, unstamped).code == "timestamp_missing"


def _resign(app: Flask, record: dict[str, Any], card: Any, *, signed_at: Any) -> dict[str, Any]:
    """The same power signed by the card's key (claiming ``signed_at``), time-stamped now
    by the sandbox TSA and sealed as the service would: what a forger holding the card's
    key and the seal key could make."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from saas.oidc import keys
    from saas.sandbox.tsa import SandboxTimestampAuthorityService

    body = json.loads(records.unb64u(record["signature"]["payload"]))
    prepared = records.signing_input(body, signed_at)
    signature = base64.b64decode(agent_signature(card, base64.b64encode(prepared.digest).decode())["signature"])
    certificate = card.signature.certificate.public_bytes(Encoding.DER)
    signed = records.representative_jws(prepared, signature, certificate)
    token = SandboxTimestampAuthorityService().stamp(signature)
    claims = json.loads(records.unb64u(record["seal"].split(".")[1]))
    claims.update(sigT=records.signing_time(signed_at), revocation_checked_at=records.signing_time(signed_at),
                  tst_digest=records.sha256_hex(token))
    with tenant_scope(db.session, tenants.active_tenant("bank").id):
        _kid, seal_key = keys.signing_key(tenants.active_tenant("bank"), "ES256")
    return records.record_file(method="principal", seal_value=records.seal(claims, seal_key),
                               seal_key=seal_key.as_dict(private=False), signature=signed,
                               timestamp={"token": base64.b64encode(token).decode(), "over": "signature"})


def test_a_sub_delegation_wider_than_its_parent_is_refused(app: Flask, representative: Any) -> None:
    writer = api_key(app, "bank", "delegation:write")
    parent = signed_power(app, representative, writer)
    client = app.test_client()
    wider = client.post("/t/bank/api/powers", headers=writer, json=draft(
        representative.corporate_number, parent=parent, matters=["入札及び見積りに関する件", "訴訟に関する件"]))
    assert wider.status_code == 422 and wider.get_json()["error"] == "wider_than_parent"
    richer = client.post("/t/bank/api/powers", headers=writer, json=draft(
        representative.corporate_number, parent=parent, authorization_details=[
            {"type": "e_procurement", "actions": ["bid"], "locations": ["https://p-portal.example.go.jp"],
             "limits": {"amount": {"currency": "JPY", "max": 90000000}}}]))
    assert richer.status_code == 422 and richer.get_json()["field"] == "authorization_details"
    longer = client.post("/t/bank/api/powers", headers=writer, json=draft(
        representative.corporate_number, parent=parent, valid_until=(clock.now() + timedelta(days=400)).isoformat()))
    assert longer.status_code == 422 and longer.get_json()["error"] == "wider_than_parent"
    narrower = client.post("/t/bank/api/powers", headers=writer, json=draft(
        representative.corporate_number, parent=parent, matters=["入札及び見積りに関する件"], authorization_details=[
            {"type": "e_procurement", "actions": ["bid"], "locations": ["https://p-portal.example.go.jp"],
             "limits": {"amount": {"currency": "JPY", "max": 1000000}}}], subdelegation_allowed=False,
        valid_until=(clock.now() + timedelta(days=300)).isoformat()))
    assert narrower.status_code == 201, narrower.get_json()
    child = narrower.get_json()["id"]
    client.post(f"/t/bank/api/powers/{parent}/revoke", json={"reason": "代表者の交代"}, headers=writer)
    assert client.get(f"/t/bank/api/powers/{child}", headers=api_key(app, "bank", "delegation:read")
                      ).get_json()["status"] == "revoked"  # the parent took its child with it


def test_the_representative_reads_the_machine_readable_scope_they_sign(app: Flask, representative: Any) -> None:
    # The signed power carries authorization_details, its parent and the power it replaces;
    # the text shown on the page and in the agent (and signed with the power) says all of it.
    writer = api_key(app, "bank", "delegation:write")
    client = app.test_client()
    old = client.post("/t/bank/api/powers", json=draft(representative.corporate_number),
                      headers=writer).get_json()["id"]
    details = [{"type": "payments", "actions": ["transfer"], "locations": ["https://bank.example/api"],
                "identifier": "普通 1234567", "limits": {"amount": {"currency": "JPY", "max": 1e12}},
                "purpose": {"code": "payroll"}}]
    power_id = client.post("/t/bank/api/powers", headers=writer, json=draft(
        representative.corporate_number, authorization_details=details, replaces=old)).get_json()["id"]
    link = client.post(f"/t/bank/api/powers/{power_id}/submit", headers=writer).get_json()["signing_url"]
    page = html.unescape(client.get(urlsplit(link).path).get_data(as_text=True))
    for line in ("種別: payments", "行為: transfer", "利用先: https://bank.example/api", "識別子: 普通 1234567",
                 "金額の上限: 1,000,000,000,000 JPY", 'purpose: {"code": "payroll"}', f"置き換える委任状: {old}"):
        assert line in page, line
    with app.test_request_context(), tenant_scope(db.session, tenants.active_tenant("bank").id):
        body = powers.payload(tenants.active_tenant("bank"), powers.get(power_id))
    assert "復代理の元となる委任状: poa_parent" in powers.statement({**body, "parent": "poa_parent"})
    too_long = client.post("/t/bank/api/powers", headers=writer, json=draft(
        representative.corporate_number, matters=[f"{i}番目の事項" + "あ" * 180 for i in range(12)]))
    assert too_long.status_code == 422 and too_long.get_json()["error"] == "statement_too_long"


def test_a_reissue_in_force_revokes_the_power_it_replaces(app: Flask, representative: Any) -> None:
    writer, reader = api_key(app, "bank", "delegation:write"), api_key(app, "bank", "delegation:read")
    client = app.test_client()
    old = signed_power(app, representative, writer)
    narrower = {"matters": ["入札及び見積りに関する件"], "subdelegation_allowed": False,
                "authorization_details": [{"type": "e_procurement", "actions": ["bid"],
                                           "locations": ["https://p-portal.example.go.jp"],
                                           "limits": {"amount": {"currency": "JPY", "max": 1000000}}}],
                "valid_until": (clock.now() + timedelta(days=300)).isoformat()}
    child = signed_power(app, representative, writer, parent=old, **narrower)
    # Its own parent it cannot replace: the revocation would reach down to it.
    circular = client.post("/t/bank/api/powers", headers=writer,
                           json=draft(representative.corporate_number, parent=old, replaces=old, **narrower))
    assert circular.status_code == 422 and circular.get_json()["error"] == "invalid_replaces"
    assert client.get(f"/t/bank/api/powers/{old}", headers=reader).status_code == 200  # this party will be told
    new = signed_power(app, representative, writer, replaces=old, matters=["入札及び見積りに関する件"])
    fetched = {p: client.get(f"/t/bank/api/powers/{p}", headers=reader).get_json() for p in (old, child, new)}
    assert fetched[new]["status"] == "active"
    assert fetched[old]["status"] == "revoked" and fetched[old]["end_reason"] == f"replaced by {new}"
    assert fetched[child]["status"] == "revoked"  # the old power took its sub-delegation with it
    assert f"置き換える委任状: {old}" in json.loads(records.unb64u(fetched[new]["record"]["signature"]["payload"]))["text"]
    with app.app_context(), all_tenants(db.session):
        revoked = [json.loads(e.payload)["data"] for e in db.session.scalars(
            select(Event).where(Event.type == "delegation.power.revoked").order_by(Event.id))]
    assert [data["power"] for data in revoked] == [old, child]
    assert revoked[0]["fetched_by"] == [reader_key_id(app)]


def test_another_tenants_access_code_is_not_found(app: Flask, representative: Any) -> None:
    writer = api_key(app, "bank", "delegation:write")
    power_id = signed_power(app, representative, writer)
    client = app.test_client()
    code = client.post(f"/t/bank/api/powers/{power_id}/access-codes", headers=writer).get_json()["code"]
    elsewhere = client.post("/t/clinic/api/power-access-codes/redeem", json={"code": code},
                            headers=api_key(app, "clinic", "delegation:read"))
    assert elsewhere.status_code == 404 and elsewhere.get_json()["error"] == "access_code_not_found"
    assert client.get(f"/t/clinic/api/powers/{power_id}",
                      headers=api_key(app, "clinic", "delegation:read")).status_code == 404
    reader = api_key(app, "bank", "delegation:read")
    redeemed = client.post("/t/bank/api/power-access-codes/redeem", json={"code": code.lower()}, headers=reader)
    assert redeemed.status_code == 200 and redeemed.get_json()["id"] == power_id
    again = client.post("/t/bank/api/power-access-codes/redeem", json={"code": code}, headers=reader)
    assert again.status_code == 404  # once only


def test_batch_lookup_and_search(app: Flask, representative: Any) -> None:
    writer, reader = api_key(app, "bank", "delegation:write"), api_key(app, "bank", "delegation:read")
    power_id = signed_power(app, representative, writer)
    client = app.test_client()
    found = client.post("/t/bank/api/powers/lookup", json={"ids": [power_id, "poa_missing", power_id]},
                        headers=reader).get_json()
    assert [p["id"] for p in found["data"]] == [power_id] and found["not_found"] == ["poa_missing"]
    [shown] = found["data"]
    assert "record" not in shown and shown["as_of"]["status"] == "active" and shown["agents"]
    drafted = client.post("/t/bank/api/powers", json=draft(representative.corporate_number),
                          headers=writer).get_json()["id"]
    both = client.post("/t/bank/api/powers/lookup", json={"ids": [drafted, power_id]}, headers=reader).get_json()
    assert [(p["id"], p["as_of"]["status"]) for p in both["data"]] == [(drafted, "not_in_force"), (power_id, "active")]
    elsewhere = client.post("/t/clinic/api/powers/lookup", json={"ids": [power_id]},
                            headers=api_key(app, "clinic", "delegation:read")).get_json()
    assert elsewhere == {"data": [], "not_found": [power_id]}  # another tenant's power: unknown there
    too_many = client.post("/t/bank/api/powers/lookup", json={"ids": [f"poa_{i}" for i in range(501)]},
                           headers=reader)
    assert too_many.status_code == 422 and too_many.get_json()["error"] == "invalid_ids"
    search = client.get("/t/bank/api/powers", headers=reader,
                        query_string={"corporate_number": representative.corporate_number, "agent_name": "佐藤　一郎"})
    assert [p["id"] for p in search.get_json()["data"]] == [drafted, power_id]  # newest first


def test_bad_drafts_are_refused_with_a_reason(app: Flask, representative: Any) -> None:
    writer = api_key(app, "bank", "delegation:write")
    client = app.test_client()
    number = representative.corporate_number
    cases = [
        (draft("1234567890123"), "invalid_corporate_number"),
        (draft(number, principal={"corporate_number": number, "name": "別の会社", "address": "東京都"}),
         "principal_mismatch"),
        (draft(number, matters=[f"事項{i}" for i in range(21)]), "invalid_matters"),
        (draft(number, authorization_details=[{"actions": ["bid"]}]), "invalid_authorization_details"),
        (draft(number, valid_until=(clock.now() + timedelta(days=2000)).isoformat()), "invalid_validity"),
        (draft(number, agents=[]), "invalid_agents"),
        (draft(number, agency="some"), "invalid_agency"),
    ]
    for body, code in cases:
        response = client.post("/t/bank/api/powers", json=body, headers=writer)
        assert response.status_code == 422 and response.get_json()["error"] == code, (code, response.get_json())
    with app.app_context(), all_tenants(db.session):
        assert db.session.scalar(select(PowerOfAttorney.id)) is None  # nothing kept


def test_an_amount_limit_that_is_not_a_finite_number_is_refused(app: Flask, representative: Any) -> None:
    writer = api_key(app, "bank", "delegation:write")
    client = app.test_client()
    for number in ("NaN", "Infinity"):  # Python's JSON reads both; no JSON (nor the signed power) holds them
        raw = json.dumps(draft(representative.corporate_number)).replace('"max": 50000000', f'"max": {number}')
        refused = client.post("/t/bank/api/powers", data=raw, headers={**writer, "Content-Type": "application/json"})
        assert refused.status_code == 422, (number, refused.get_json())
        assert refused.get_json()["error"] == "invalid_authorization_details"
        assert refused.get_json()["field"] == "authorization_details" and "NaN" in refused.get_json()["message"]
    # NaN compares false with any number: it would pass every ceiling of a parent.
    now = clock.now()
    parent = {"matters": ["入札"], "valid_from": now, "valid_until": now + timedelta(days=1),
              "authorization_details": [{"type": "bid", "limits": {"amount": {"currency": "JPY", "max": 1}}}]}
    child = {**parent, "authorization_details": [
        {"type": "bid", "limits": {"amount": {"currency": "JPY", "max": float("nan")}}}]}
    with pytest.raises(scope.ScopeError):
        scope.within_parent(parent, child)


def test_the_history_chain_detects_an_edited_line(app: Flask, representative: Any) -> None:
    writer = api_key(app, "bank", "delegation:write")
    power_id = signed_power(app, representative, writer)
    with app.app_context(), all_tenants(db.session):
        power = db.session.scalar(select(PowerOfAttorney).where(PowerOfAttorney.public_id == power_id))
        assert [h.action for h in powers.history(power)] == ["created", "submitted", "activated"]
        assert powers.verify_history(power) == []
        db.session.execute(update(PowerHistory).where(PowerHistory.power_id == power.id, PowerHistory.seq == 2)
                           .values(actor="someone else"))
        assert powers.verify_history(power) == ["line 2 was altered"]


def test_the_verify_command_prints_a_plain_verdict(app: Flask, representative: Any, tmp_path: Path) -> None:
    writer, reader = api_key(app, "bank", "delegation:write"), api_key(app, "bank", "delegation:read")
    power_id = signed_power(app, representative, writer)
    client = app.test_client()
    answer = client.get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()
    (tmp_path / "answer.json").write_text(json.dumps(answer, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "jwks.json").write_text(json.dumps(client.get("/t/bank/jwks.json").get_json()))
    runner = app.test_cli_runner()
    good = runner.invoke(args=["delegation", "verify", str(tmp_path / "answer.json"),
                               "--jwks", str(tmp_path / "jwks.json")])
    assert good.exit_code == 0 and "VALID" in good.output and power_id in good.output, good.output
    assert representative.person.attributes.name in good.output
    other = client.get("/t/clinic/jwks.json").get_json()
    (tmp_path / "other.json").write_text(json.dumps(other))
    foreign = runner.invoke(args=["delegation", "verify", str(tmp_path / "answer.json"),
                                  "--jwks", str(tmp_path / "other.json")])
    assert foreign.exit_code == 1 and "INVALID (seal_key_unknown)" in foreign.output
    record = answer["record"]
    record["method"] = "operator"
    (tmp_path / "changed.json").write_text(json.dumps(record))
    changed = runner.invoke(args=["delegation", "verify", str(tmp_path / "changed.json")])
    assert changed.exit_code == 1 and "INVALID (tampered)" in changed.output
    live = runner.invoke(args=["delegation", "verify", str(tmp_path / "answer.json"), "--mode", "live"])
    assert live.exit_code == 1 and "INVALID (untrusted_certificate)" in live.output  # a sandbox card, never live


def test_powers_past_their_end_expire_with_an_event(app: Flask, representative: Any) -> None:
    writer, reader = api_key(app, "bank", "delegation:write"), api_key(app, "bank", "delegation:read")
    power_id = signed_power(app, representative, writer,
                            valid_until=(clock.now() + timedelta(days=2)).isoformat())
    later = clock.now() + timedelta(days=3)
    with clock.frozen(later):
        result = app.test_cli_runner().invoke(args=["delegation", "expire"])
        assert result.exit_code == 0 and "expired 1 powers" in result.output
        fetched = app.test_client().get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()
    assert fetched["status"] == "expired" and fetched["as_of"]["status"] == "expired"
    with app.app_context(), all_tenants(db.session):
        assert db.session.scalar(select(Event.id).where(Event.type == "delegation.power.expired")) is not None


def test_the_console_prepares_sends_shows_and_revokes_a_power(app: Flask, representative: Any) -> None:
    from tests.test_console import csrf, verified_owner

    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    with app.app_context():
        slug = verified_owner(client)
    form = {"corporate_number": representative.corporate_number, "principal_name": "株式会社かけはし商事",
            "principal_address": "東京都千代田区丸の内１丁目１番１号", "agent_name_0": "佐藤 一郎",
            "agent_affiliation_0": "営業部", "matters": "入札及び見積りに関する件\n契約の締結に関する件\n",
            "detail_type": "e_procurement", "detail_actions": "bid, contract", "amount_max": "50,000,000",
            "valid_until": (clock.now() + timedelta(days=200)).date().isoformat(), "agency": "several",
            "method": "principal"}
    new = f"/t/{slug}/console/powers/new"
    bad = client.post(new, data={**form, "corporate_number": "123", "csrf_token": csrf(client, new)})
    assert bad.status_code == 422 and 'id="f-corporate_number-error"' in bad.get_data(as_text=True)
    created = client.post(new, data={**form, "csrf_token": csrf(client, new)})
    assert created.status_code == 302, created.get_data(as_text=True)
    detail = created.headers["Location"]
    page = client.get(detail).get_data(as_text=True)
    assert "Draft" in page and "入札及び見積りに関する件" in page and "50000000" in page
    sent = client.post(f"{detail}/submit", data={"csrf_token": csrf(client, detail)}).get_data(as_text=True)
    link = re.search(r'id="signing-url">([^<]+)<', sent).group(1)  # type: ignore[union-attr]
    assert sign_as(app.test_client(), link, representative).status_code == 200
    page = client.get(detail).get_data(as_text=True)
    assert "In force" in page and "confirmed by the commercial register" in page and "Download the record" in page
    record = client.get(f"{detail}/record.json")
    assert record.status_code == 200 and verify(app, record.get_json()).valid
    revoked = client.post(f"{detail}/revoke", data={"reason": "退職のため", "csrf_token": csrf(client, detail)})
    assert revoked.status_code == 302
    listing = client.get(f"/t/{slug}/console/powers?status=revoked").get_data(as_text=True)
    assert "株式会社かけはし商事" in listing and "Revoked" in listing
    assert "退職のため" in client.get(detail).get_data(as_text=True)
    dashboard = client.get(f"/t/{slug}/console/").get_data(as_text=True)
    assert "Powers of attorney by status" in dashboard and "Revoked" in dashboard
    assert 'id="power-fetches">0<' in dashboard and 'id="links-active">0<' in dashboard


def test_a_hidden_representative_address_goes_through_an_operators_review(app: Flask) -> None:
    hidden = represents(app, 33, "非表示株式会社", "大阪府大阪市北区梅田１丁目", address_hidden=True)
    writer, reader = api_key(app, "bank", "delegation:write"), api_key(app, "bank", "delegation:read")
    client = app.test_client()
    body = draft(hidden.corporate_number, principal={"corporate_number": hidden.corporate_number,
                                                     "name": "非表示株式会社", "address": "大阪府大阪市北区梅田１丁目"})
    power_id = client.post("/t/bank/api/powers", json=body, headers=writer).get_json()["id"]
    link = client.post(f"/t/bank/api/powers/{power_id}/submit", headers=writer).get_json()["signing_url"]
    assert sign_as(app.test_client(), link, hidden).status_code == 200
    waiting = client.get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()
    assert waiting["status"] == "awaiting_review" and waiting["record"] is None
    with app.test_request_context():  # as the operator's console page does
        tenant = tenants.active_tenant("bank")
        with tenant_scope(db.session, tenant.id):
            powers.review(tenant, powers.get(power_id), approve=True, reviewer="operator ops@kakehashi.example",
                          evidence="印鑑証明書 第123号、登記事項証明書 2026-11-20")
            db.session.commit()
    fetched = client.get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()
    assert fetched["status"] == "active" and fetched["representative"]["confirmed_by"] == "paper"
    verdict = verify(app, fetched["record"])
    assert verdict.valid and verdict.facts["route"] == "paper", verdict.reasons
    assert fetched["record"]["evidence"]["evidence"].startswith("印鑑証明書")


def approved_on_paper(app: Flask, *, replacing_a_draft: bool = False) -> tuple[str, str | None]:
    """(a power of a corporation that hides its representative's address, signed with the card
    and approved by an operator's review of the papers; the draft it replaces, if asked)."""
    hidden = represents(app, 33, "非表示株式会社", "大阪府大阪市北区梅田１丁目", address_hidden=True)
    writer = api_key(app, "bank", "delegation:write")
    client = app.test_client()
    principal = {"corporate_number": hidden.corporate_number, "name": "非表示株式会社",
                 "address": "大阪府大阪市北区梅田１丁目"}
    power_id = client.post("/t/bank/api/powers", json=draft(hidden.corporate_number, principal=principal),
                           headers=writer).get_json()["id"]
    replaced = None
    if replacing_a_draft:
        replaced = power_id
        power_id = client.post("/t/bank/api/powers", json=draft(hidden.corporate_number, principal=principal,
                                                                replaces=replaced), headers=writer).get_json()["id"]
    link = client.post(f"/t/bank/api/powers/{power_id}/submit", headers=writer).get_json()["signing_url"]
    assert sign_as(app.test_client(), link, hidden).status_code == 200
    with app.test_request_context():
        tenant = tenants.active_tenant("bank")
        with tenant_scope(db.session, tenant.id):
            powers.review(tenant, powers.get(power_id), approve=True, reviewer="operator ops@kakehashi.example",
                          evidence="印鑑証明書 第123号")
            db.session.commit()
    return power_id, replaced


def test_the_seal_covers_the_operators_evidence(app: Flask) -> None:
    power_id, _ = approved_on_paper(app)
    reader = api_key(app, "bank", "delegation:read")
    record = app.test_client().get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()["record"]
    assert record["format"] == records.FORMAT and verify(app, record).valid
    forged = copy.deepcopy(record)
    forged["evidence"]["evidence"] = "no document was ever checked"
    assert verify(app, forged).code == "tampered"
    relabelled = {**forged, "format": records.FORMAT_1}
    assert verify(app, relabelled).code == "tampered"  # the seal still names the evidence
    dropped = {k: v for k, v in record.items() if k != "evidence"}
    assert verify(app, dropped).code == "tampered"
    # A record sealed before the seal covered the evidence (format 1) still verifies.
    from saas.oidc import keys

    claims = json.loads(records.unb64u(record["seal"].split(".")[1]))
    del claims["evidence_digest"]
    with app.app_context(), tenant_scope(db.session, tenants.active_tenant("bank").id):
        _kid, seal_key = keys.signing_key(tenants.active_tenant("bank"), "ES256")
    earlier = {**record, "format": records.FORMAT_1, "seal": records.seal(claims, seal_key)}
    assert verify(app, earlier).valid, verify(app, earlier).reasons


def test_a_reissue_approved_on_paper_revokes_the_power_it_replaces(app: Flask) -> None:
    power_id, replaced = approved_on_paper(app, replacing_a_draft=True)
    reader = api_key(app, "bank", "delegation:read")
    client = app.test_client()
    assert client.get(f"/t/bank/api/powers/{power_id}", headers=reader).get_json()["status"] == "active"
    old = client.get(f"/t/bank/api/powers/{replaced}", headers=reader).get_json()
    assert old["status"] == "revoked" and old["end_reason"] == f"replaced by {power_id}"


POWER_DETAILS = json.dumps([{"type": "kakehashi_power_of_attorney"}])


def bind_as(client: Any, binding_url: str, card: Any) -> Any:
    """The agent's browser and bridge agent: the card login through the binding link."""
    path = urlsplit(binding_url).path
    opened = client.get(path)
    if opened.status_code != 200:
        return opened
    page = opened.get_data(as_text=True)
    csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    challenge = re.search(r'data-challenge="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    return client.post(f"{path}/card", json={"token": agent_token(card, challenge)},
                       headers={"X-CSRFToken": csrf, "Accept": "application/json", "Accept-Language": "en"})


def test_a_bound_agent_presents_the_power_at_an_oidc_login(app: Flask, representative: Any) -> None:
    from tests.oidc_helpers import claims_of, log_in, register

    writer = api_key(app, "bank", "delegation:write")  # a relying party at a login needs no API key
    power_id = signed_power(app, representative, writer)
    agent_card = issue_card(app, seed=34)
    client = app.test_client()
    link = client.post(f"/t/bank/api/powers/{power_id}/agents/0/binding-link", headers=writer).get_json()
    assert bind_as(app.test_client(), link["binding_url"], agent_card).status_code == 200
    assert bind_as(app.test_client(), link["binding_url"], agent_card).status_code == 404  # used
    with app.app_context(), all_tenants(db.session):
        mailed = db.session.scalar(select(__import__("saas.mail.models", fromlist=["OutgoingMail"]).OutgoingMail.body))
        assert link["binding_url"] in mailed  # the agent has an address: the link went there too

    rp = register(app, "bank", scopes="openid")
    browser = app.test_client()
    answer = log_in(browser, rp, agent_card, authorization_details=POWER_DETAILS)
    tokens = rp.exchange(app.test_client(), answer["code"]).get_json()
    [presented] = tokens["authorization_details"]
    assert presented["type"] == "kakehashi_power_of_attorney" and presented["power_id"] == power_id
    assert presented["principal"]["corporate_number"] == representative.corporate_number
    assert presented["authorization_details"][0]["limits"]["amount"]["max"] == 50000000
    id_token = claims_of(tokens["id_token"])
    assert id_token["authorization_details"] == tokens["authorization_details"]
    assert presented["act"] == {"sub": id_token["sub"]}

    # The representative's own card is not the agent's: nothing to present.
    other = log_in(app.test_client(), rp, representative, authorization_details=POWER_DETAILS)
    assert rp.exchange(app.test_client(), other["code"]).get_json()["authorization_details"] == []

    # Revoked: no longer presented, and the client that received it is told.
    client.post(f"/t/bank/api/powers/{power_id}/revoke", json={"reason": "退職"}, headers=writer)
    again = log_in(app.test_client(), rp, agent_card, authorization_details=POWER_DETAILS)
    assert rp.exchange(app.test_client(), again["code"]).get_json()["authorization_details"] == []
    with app.app_context(), all_tenants(db.session):
        event = db.session.scalar(select(Event).where(Event.type == "delegation.power.revoked"))
        assert rp.client_id in json.loads(event.payload)["data"]["fetched_by"]


def test_an_unknown_authorization_details_type_is_refused(app: Flask) -> None:
    from tests.oidc_helpers import register, start

    rp = register(app, "bank", scopes="openid")
    response = start(app.test_client(), rp, authorization_details=json.dumps([{"type": "payment_initiation"}]))
    location = response.headers["Location"]
    assert "error=invalid_authorization_details" in location and "payment_initiation" in location
    discovery = app.test_client().get("/t/bank/.well-known/openid-configuration").get_json()
    assert discovery["authorization_details_types_supported"] == ["kakehashi_id_link", "kakehashi_power_of_attorney"]


def test_the_printable_pdf_needs_the_verification_code(app: Flask, representative: Any) -> None:
    writer = api_key(app, "bank", "delegation:write")
    power_id = signed_power(app, representative, writer)
    with app.app_context(), all_tenants(db.session):
        code = db.session.scalar(select(PowerOfAttorney.verification_code)
                                 .where(PowerOfAttorney.public_id == power_id))
    client = app.test_client()
    pdf = client.get(f"/t/bank/powers/{power_id}/rendition.pdf", query_string={"code": code})
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF-")
    assert b"HeiseiMin-W3" in pdf.data and len(pdf.data) > 3000
    assert client.get(f"/t/bank/powers/{power_id}/rendition.pdf", query_string={"code": "WRONG"}).status_code == 404
    assert client.get(f"/t/clinic/powers/{power_id}/rendition.pdf", query_string={"code": code}).status_code == 404
    page = client.get(f"/t/bank/powers/{power_id}/signed", query_string={"code": code})
    assert page.status_code == 200 and code in page.get_data(as_text=True)


def test_the_sandbox_registers_a_card_holder_as_a_representative(app: Flask, tmp_path: Path) -> None:
    from tests.bridge_fixtures import write_card_file

    card_file = write_card_file(issue_card(app, seed=35), tmp_path)
    arguments = ["sandbox", "register-corporation", "--card", str(card_file), "--name", "株式会社架け橋デモ商事",
                 "--address", "東京都千代田区霞が関１丁目１番１号"]
    first = app.test_cli_runner().invoke(args=arguments)
    again = app.test_cli_runner().invoke(args=arguments)
    assert first.exit_code == 0 and first.output == again.output, (first.output, again.output)
    number = first.output.strip().rsplit(" ", 1)[1]
    with app.app_context():
        record = register.SandboxRegister().lookup(number)
    assert record is not None and record.name == "株式会社架け橋デモ商事"
    assert record.representatives[0].title == "代表取締役"


def test_a_relying_party_hears_only_of_the_powers_its_key_fetched(app: Flask, representative: Any) -> None:
    from saas.events import relay
    from saas.events import services as events
    from saas.events.models import Delivery, WebhookEndpoint
    from saas.tenants import apikeys
    from saas.tenants.models import ApiKey

    writer = api_key(app, "bank", "delegation:write")
    party_a, party_b = api_key(app, "bank", "delegation:read"), api_key(app, "bank", "delegation:read")
    client = app.test_client()
    hook = "/t/bank/api/relying-party-webhook"
    assert client.get(hook, headers=party_a).get_json()["error"] == "webhook_endpoint_not_found"
    registered = client.put(hook, json={"url": "https://old.party-a.example/hook"}, headers=party_a)
    assert registered.status_code == 201 and registered.get_json()["secret"].startswith("whsec_")
    moved = client.put(hook, json={"url": "https://party-a.example/hook"}, headers=party_a)
    assert moved.status_code == 200 and "secret" not in moved.get_json()  # the secret was shown once
    assert client.put(hook, json={"url": "https://party-b.example/hook"}, headers=party_b).status_code == 201
    with app.app_context():
        tenant = tenants.active_tenant("bank")
        with tenant_scope(db.session, tenant.id):
            events.create_endpoint(tenant, url="https://bank.example/hook", event_types=["*"])
        db.session.commit()
    fetched, unfetched = signed_power(app, representative, writer), signed_power(app, representative, writer)
    assert client.get(f"/t/bank/api/powers/{fetched}", headers=party_a).status_code == 200
    for power_id in (fetched, unfetched):
        assert client.post(f"/t/bank/api/powers/{power_id}/suspend", json={"reason": "調査中"},
                           headers=writer).status_code == 200

    def delivered() -> dict[str, list[str]]:
        with app.app_context(), all_tenants(db.session):
            relay.fan_out()
            db.session.commit()
            found: dict[str, list[str]] = {}
            for url, subject in db.session.execute(select(WebhookEndpoint.url, Delivery.subject).join(
                    Delivery, Delivery.endpoint_id == WebhookEndpoint.id).order_by(Delivery.id)):
                found.setdefault(url, []).append(subject)
            return found

    seen = delivered()
    assert seen["https://party-a.example/hook"] == [f"power:{fetched}"]  # not the power it never fetched
    assert "https://party-b.example/hook" not in seen  # it fetched neither
    assert {f"power:{fetched}", f"power:{unfetched}"} <= set(seen["https://bank.example/hook"])  # the tenant: all
    shown = client.get(hook, headers=party_a).get_json()
    assert shown["url"] == "https://party-a.example/hook" and "secret" not in shown
    assert [d["type"] for d in shown["deliveries"]] == ["delegation.power.suspended"]
    assert "id" not in shown["deliveries"][0]  # the platform's own delivery ids are not a party's business

    def posted() -> dict[str, list[dict[str, Any]]]:
        """What the relay would post now, by URL (claimed, prepared, then let go)."""
        with app.app_context():
            token, ids = relay.claim()
            bodies: dict[str, list[dict[str, Any]]] = {}
            for outgoing in relay._prepare(token, ids, clock.now()):
                bodies.setdefault(outgoing.url, []).append(json.loads(outgoing.body))
            relay.release(token, ids)
            db.session.commit()
            return bodies

    bodies = posted()
    [to_party] = bodies["https://party-a.example/hook"]
    assert to_party["data"]["power"] == fetched and "fetched_by" not in to_party["data"]  # nor who else fetched it
    assert all("fetched_by" in body["data"] for body in bodies["https://bank.example/hook"])  # the tenant sees them
    # A revoked key's endpoint hears nothing more: no new delivery, and the pending one is not sent.
    with app.app_context(), all_tenants(db.session):
        key = db.session.scalar(select(ApiKey).join(WebhookEndpoint, WebhookEndpoint.relying_party_key_id == ApiKey.id)
                                .where(WebhookEndpoint.url == "https://party-a.example/hook"))
        assert key is not None
        apikeys.revoke(key)
        db.session.commit()
    assert "https://party-a.example/hook" not in posted()
    assert client.post(f"/t/bank/api/powers/{fetched}/resume", headers=writer).status_code == 200
    assert delivered()["https://party-a.example/hook"] == [f"power:{fetched}"]


def test_relying_parties_endpoints_do_not_count_towards_the_organisations_allowance(app: Flask) -> None:
    from saas.events import services as events

    with app.app_context():
        tenant = tenants.active_tenant("bank")
        with tenant_scope(db.session, tenant.id):
            for n in range(events.MAX_ENDPOINTS):
                events.create_endpoint(tenant, url=f"https://bank.example/hook/{n}", event_types=["*"])
        db.session.commit()
    party = api_key(app, "bank", "delegation:read")
    registered = app.test_client().put("/t/bank/api/relying-party-webhook", json={"url": "https://party.example/"},
                                       headers=party)
    assert registered.status_code == 201, registered.get_json()


def test_a_relying_partys_webhook_refuses_bad_input_and_other_tenants(app: Flask) -> None:
    party, other = api_key(app, "bank", "delegation:read"), api_key(app, "clinic", "delegation:read")
    client = app.test_client()
    hook = "/t/bank/api/relying-party-webhook"
    for body in ({}, {"url": 42}, {"url": "ftp://party.example/hook"}, {"url": "https://user:pw@party.example/"}):
        refused = client.put(hook, json=body, headers=party)
        assert refused.status_code == 422 and refused.get_json()["error"] == "invalid_url", body
    assert client.put(hook, json={"url": "https://party.example/hook"}, headers=other).status_code == 401
    assert client.put(hook, json={"url": "https://party.example/hook"}, headers=party).status_code == 201
    assert client.get(hook, headers=other).status_code == 401
    assert client.get("/t/clinic/api/relying-party-webhook", headers=other).status_code == 404  # its own: none
    assert client.delete(hook, headers=party).status_code == 204
    assert client.get(hook, headers=party).status_code == 404
