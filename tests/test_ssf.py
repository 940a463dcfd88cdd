"""The Shared Signals transmitter: metadata, streams, signed SETs pushed (RFC 8935) and
polled (RFC 8936), verification, status, and one tenant's streams invisible to another."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import event

from saas import db
from saas.db import tenant_scope
from saas.events import relay, services, ssf
from saas.tenants import apikeys
from saas.tenants import services as tenants
from tests.conftest import make_app
from tests.test_events import KEK, Receiver, receiver  # noqa: F401 - the receiver fixture


@pytest.fixture
def app(committed_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(committed_url, tmp_path, KEY_ENCRYPTION_KEY=KEK)
    with application.app_context():
        for slug in ("bank", "clinic"):
            tenant = tenants.create_tenant(slug=slug, display_name=slug, kind="bank")
            db.session.commit()
            with tenant_scope(db.session, tenant.id):
                _, key = apikeys.create(tenant, name="ssf", scopes=["ssf:manage", "ssf:receive"], expires_at=None,
                                        by=None)
                _, reader = apikeys.create(tenant, name="webhooks", scopes=["webhooks:read"], expires_at=None,
                                           by=None)
            db.session.commit()
            application.config[f"TEST_KEY_{slug}"] = key
            application.config[f"TEST_READER_{slug}"] = reader
    yield application
    db.get_database(application).engine.dispose()


def auth(app: Flask, slug: str = "bank") -> dict[str, str]:
    return {"Authorization": f"Bearer {app.config[f'TEST_KEY_{slug}']}"}


def emit_logout(app: Flask, sub: str = "sub-123") -> str:
    with app.app_context():
        tenant = tenants.active_tenant("bank")
        with tenant_scope(db.session, tenant.id):
            event_id = services.emit(tenant, "oidc.session.ended", f"sub:{sub}",
                                     {"sub": sub, "sid": "s1", "reason": "logout"})
        db.session.commit()
        relay.fan_out()
        db.session.commit()
    return event_id


def decode(client: Any, token: str) -> Any:
    keys = KeySet.import_key_set(client.get("/t/bank/jwks.json").get_json())
    return jwt.decode(token, keys, algorithms=["ES256"])


def test_the_metadata_names_the_endpoints(app: Flask) -> None:
    client = app.test_client()
    metadata = client.get("/.well-known/ssf-configuration/t/bank").get_json()
    assert metadata["issuer"] == "http://localhost/t/bank" and metadata["spec_version"] == "1_0"
    assert metadata["configuration_endpoint"] == "http://localhost/t/bank/ssf/streams"
    assert set(metadata["delivery_methods_supported"]) == {ssf.PUSH, ssf.POLL}
    assert client.get("/.well-known/ssf-configuration/t/nobody").status_code == 404


def test_a_polled_stream_returns_signed_sets_until_they_are_acknowledged(app: Flask) -> None:
    client = app.test_client()
    created = client.post("/t/bank/ssf/streams", headers=auth(app), json={
        "delivery": {"method": ssf.POLL}, "events_requested": [ssf.SESSION_REVOKED, ssf.ACCOUNT_DISABLED],
        "aud": "https://rp.example", "description": "会員サイト"})
    assert created.status_code == 201
    stream = created.get_json()
    assert stream["events_delivered"] == [ssf.SESSION_REVOKED]  # account-disabled is not emitted yet
    assert stream["delivery"]["endpoint_url"] == f"http://localhost/t/bank/ssf/poll/{stream['stream_id']}"
    event_id = emit_logout(app)
    poll_url = stream["delivery"]["endpoint_url"].removeprefix("http://localhost")
    first = client.post(poll_url, headers=auth(app), json={"maxEvents": 10}).get_json()
    assert list(first["sets"]) == [event_id] and first["moreAvailable"] is False
    token = decode(client, first["sets"][event_id])
    assert token.header["typ"] == "secevent+jwt"
    claims = token.claims
    assert claims["iss"] == "http://localhost/t/bank" and claims["aud"] == "https://rp.example"
    assert claims["jti"] == event_id
    assert claims["sub_id"] == {"format": "iss_sub", "iss": "http://localhost/t/bank", "sub": "sub-123"}
    assert claims["events"][ssf.SESSION_REVOKED]["initiating_entity"] == "user"
    again = client.post(poll_url, headers=auth(app), json={}).get_json()
    assert list(again["sets"]) == [event_id]  # not acknowledged: offered again
    acked = client.post(poll_url, headers=auth(app), json={"ack": [event_id]}).get_json()
    assert acked["sets"] == {}


def test_a_pushed_stream_posts_sets_with_the_receivers_authorization(app: Flask, receiver: Receiver) -> None:  # noqa: F811
    client = app.test_client()
    stream = client.post("/t/bank/ssf/streams", headers=auth(app), json={
        "delivery": {"method": ssf.PUSH, "endpoint_url": receiver.url, "authorization_header": "Bearer rx-secret"},
        "events_requested": [ssf.SESSION_REVOKED]}).get_json()
    assert client.post("/t/bank/ssf/verify", headers=auth(app),
                       json={"stream_id": stream["stream_id"], "state": "abc"}).status_code == 204
    emit_logout(app)
    with app.app_context():
        token, ids = relay.claim()
        db.session.commit()
        assert relay.deliver(token, ids) == {"succeeded": 2, "failed": 0}
        db.session.commit()
    assert len(receiver.received) == 2
    for got in receiver.received:
        assert got.headers["Content-Type"] == "application/secevent+jwt"
        assert got.headers["Authorization"] == "Bearer rx-secret"
    kinds = [set(decode(client, got.body.decode()).claims["events"]) for got in receiver.received]
    assert {ssf.VERIFICATION} in kinds and {ssf.SESSION_REVOKED} in kinds
    verification = next(decode(client, g.body.decode()).claims for g in receiver.received
                        if ssf.VERIFICATION in decode(client, g.body.decode()).claims["events"])
    assert verification["events"][ssf.VERIFICATION] == {"state": "abc"}


def test_each_tenants_sets_are_signed_with_its_own_key_made_to_stand_first(app: Flask,
                                                                            receiver: Receiver) -> None:  # noqa: F811
    """The relay signs under all_tenants: each tenant's SETs take that tenant's key (made
    on first use), never another's; and a key made while preparing a batch is committed,
    waiting for the disk, before the batch is posted and its record commits lazily."""
    client = app.test_client()
    for slug in ("bank", "clinic"):
        assert client.post(f"/t/{slug}/ssf/streams", headers=auth(app, slug), json={
            "delivery": {"method": ssf.PUSH, "endpoint_url": receiver.url},
            "events_requested": [ssf.SESSION_REVOKED]}).status_code == 201
    engine = db.get_database(app).engine
    statements: list[str] = []
    listener = lambda _c, _k, statement, *_: statements.append(statement.split(" (")[0][:40])  # noqa: E731
    with app.app_context():
        for slug in ("bank", "clinic"):
            tenant = tenants.active_tenant(slug)
            with tenant_scope(db.session, tenant.id):
                services.emit(tenant, "oidc.session.ended", "sub:x", {"sub": "x", "sid": "s1", "reason": "logout"})
            db.session.commit()
        relay.fan_out()
        db.session.commit()
        token, ids = relay.claim()
        db.session.commit()
        event.listen(engine, "before_cursor_execute", listener)
        event.listen(engine, "commit", lambda _c: statements.append("COMMIT"))
        try:
            assert relay.deliver(token, ids) == {"succeeded": 2, "failed": 0}
            db.session.commit()
        finally:
            event.remove(engine, "before_cursor_execute", listener)
    by_issuer = {json.loads(_part(got.body.decode(), 1))["iss"]: got.body.decode() for got in receiver.received}
    assert set(by_issuer) == {"http://localhost/t/bank", "http://localhost/t/clinic"}
    for slug in ("bank", "clinic"):
        token = by_issuer[f"http://localhost/t/{slug}"]
        published = client.get(f"/t/{slug}/jwks.json").get_json()
        assert json.loads(_part(token, 0))["kid"] in {key["kid"] for key in published["keys"]}
        jwt.decode(token, KeySet.import_key_set(published), algorithms=["ES256"])  # raises unless its own key
    made = [n for n, statement in enumerate(statements) if statement.startswith("INSERT INTO oidc_signing_keys")]
    recorded = next(n for n, statement in enumerate(statements) if statement.startswith("UPDATE webhook_deliveries"))
    assert made and "COMMIT" in statements[max(made):recorded]
    if engine.dialect.name == "postgresql":
        assert statements.index("SET LOCAL synchronous_commit = off") > statements.index("COMMIT", max(made))


def _part(token: str, index: int) -> str:
    import base64

    part = token.split(".")[index]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def test_paused_and_disabled_streams(app: Flask) -> None:
    client = app.test_client()
    stream = client.post("/t/bank/ssf/streams", headers=auth(app),
                         json={"delivery": {"method": ssf.POLL}}).get_json()
    poll_url = f"/t/bank/ssf/poll/{stream['stream_id']}"
    paused = client.post("/t/bank/ssf/status", headers=auth(app),
                         json={"stream_id": stream["stream_id"], "status": "paused"})
    assert paused.get_json()["status"] == "paused"
    emit_logout(app)
    assert client.post(poll_url, headers=auth(app), json={}).get_json()["sets"] == {}  # held while paused
    client.post("/t/bank/ssf/status", headers=auth(app), json={"stream_id": stream["stream_id"], "status": "enabled"})
    assert len(client.post(poll_url, headers=auth(app), json={}).get_json()["sets"]) == 1
    client.post("/t/bank/ssf/status", headers=auth(app), json={"stream_id": stream["stream_id"], "status": "disabled"})
    client.post("/t/bank/ssf/status", headers=auth(app), json={"stream_id": stream["stream_id"], "status": "enabled"})
    assert client.post(poll_url, headers=auth(app), json={}).get_json()["sets"] == {}  # dropped when disabled
    status = client.get(f"/t/bank/ssf/status?stream_id={stream['stream_id']}", headers=auth(app)).get_json()
    assert status == {"stream_id": stream["stream_id"], "status": "enabled"}


def test_stream_changes_and_deletion(app: Flask) -> None:
    client = app.test_client()
    stream = client.post("/t/bank/ssf/streams", headers=auth(app),
                         json={"delivery": {"method": ssf.POLL}, "description": "a"}).get_json()
    patched = client.patch("/t/bank/ssf/streams", headers=auth(app),
                           json={"stream_id": stream["stream_id"], "description": "b"}).get_json()
    assert patched["description"] == "b" and patched["events_requested"] == ssf.SUPPORTED
    listed = client.get("/t/bank/ssf/streams", headers=auth(app)).get_json()
    assert [s["stream_id"] for s in listed] == [stream["stream_id"]]
    assert client.delete(f"/t/bank/ssf/streams?stream_id={stream['stream_id']}", headers=auth(app)).status_code == 204
    assert client.get(f"/t/bank/ssf/streams?stream_id={stream['stream_id']}", headers=auth(app)).status_code == 404


@pytest.mark.parametrize(("body", "code"), [
    ({"delivery": {"method": "urn:nothing"}}, "invalid_request"),
    ({"delivery": {"method": ssf.PUSH, "endpoint_url": "ftp://x.example/"}}, "invalid_url"),
    ({"delivery": {"method": ssf.PUSH, "endpoint_url": "https://x.example/",  # a header of its own
                   "authorization_header": "Bearer x\r\nX-Injected: 1"}}, "invalid_request"),
    ({"delivery": {"method": ssf.POLL}, "events_requested": "all"}, "invalid_request"),
    ({"delivery": {"method": ssf.POLL}, "aud": 7}, "invalid_request"),
])
def test_bad_stream_configuration_is_refused_with_a_code(app: Flask, body: dict[str, Any], code: str) -> None:
    response = app.test_client().post("/t/bank/ssf/streams", headers=auth(app), json=body)
    assert response.status_code in (400, 422) and response.get_json()["error"] == code


def test_streams_are_per_tenant_and_need_their_scope(app: Flask) -> None:
    client = app.test_client()
    stream = client.post("/t/bank/ssf/streams", headers=auth(app), json={"delivery": {"method": ssf.POLL}}).get_json()
    theirs = auth(app, "clinic")
    assert client.get(f"/t/clinic/ssf/streams?stream_id={stream['stream_id']}", headers=theirs).status_code == 404
    assert client.post(f"/t/clinic/ssf/poll/{stream['stream_id']}", headers=theirs, json={}).status_code == 404
    assert client.get("/t/bank/ssf/streams", headers=theirs).status_code == 401
    reader = {"Authorization": f"Bearer {app.config['TEST_READER_bank']}"}
    assert client.get("/t/bank/ssf/streams", headers=reader).get_json()["error"] == "insufficient_scope"
    assert json.loads(json.dumps(client.get("/t/bank/api/webhooks", headers=reader).get_json())) == {"data": []}


def test_a_linked_persons_lost_card_is_a_credential_change_about_that_person(app: Flask) -> None:
    client = app.test_client()
    stream = client.post("/t/bank/ssf/streams", headers=auth(app), json={
        "delivery": {"method": ssf.POLL}, "events_requested": [ssf.CREDENTIAL_CHANGE]}).get_json()
    assert stream["events_delivered"] == [ssf.CREDENTIAL_CHANGE]
    with app.app_context():
        tenant = tenants.active_tenant("bank")
        with tenant_scope(db.session, tenant.id):
            event_id = services.emit(tenant, "idlink.link.card_lost", "link:lnk_1", {
                "link": "lnk_1", "local_id": "M-1", "sub": "sub-9", "card_status": "lost",
                "reason": "keyCompromise", "as_of": "2026-11-25T00:00:00+00:00"})
        db.session.commit()
        relay.fan_out()
        db.session.commit()
    poll_url = stream["delivery"]["endpoint_url"].removeprefix("http://localhost")
    sets = client.post(poll_url, headers=auth(app), json={}).get_json()["sets"]
    claims = decode(client, sets[event_id]).claims
    assert claims["sub_id"] == {"format": "iss_sub", "iss": "http://localhost/t/bank", "sub": "sub-9"}
    change = claims["events"][ssf.CREDENTIAL_CHANGE]
    assert change["credential_type"] == "x509" and change["change_type"] == "revoke"
    assert change["reason_admin"] == {"en": "card_lost: keyCompromise"}
