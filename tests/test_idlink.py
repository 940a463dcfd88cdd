"""Linking a tenant's own ids to verified persons: an invitation code redeemed at a card
login through the tenant's app (RFC 9396 authorization_details), the person's links at
every later login, lookups and unlinking through the API, events, and isolation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from saas import clock, db
from saas.db import all_tenants, tenant_scope
from saas.events.models import Event
from saas.tenants import apikeys
from saas.tenants import services as tenants
from tests.conftest import make_app
from tests.oidc_helpers import claims_of, issue_card, log_in, register


@pytest.fixture
def app(committed_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(committed_url, tmp_path)
    with application.app_context():
        for slug in ("clinic", "bank"):
            tenants.create_tenant(slug=slug, display_name=slug, kind="hospital")
        db.session.commit()
    yield application
    db.get_database(application).engine.dispose()


def key(app: Flask, slug: str, *scopes: str) -> dict[str, str]:
    with app.app_context():
        tenant = tenants.active_tenant(slug)
        with tenant_scope(db.session, tenant.id):
            _row, value = apikeys.create(tenant, name=f"{slug} system", scopes=list(scopes), expires_at=None, by=None)
        db.session.commit()
    return {"Authorization": f"Bearer {value}", "Accept-Language": "en"}


def linked_at_login(app: Flask, rp: Any, card: Any, **detail: str) -> list[dict[str, Any]]:
    """A card login through the tenant's app asking for links; what the token response says."""
    requested = json.dumps([{"type": "kakehashi_id_link", **detail}])
    answer = log_in(app.test_client(), rp, card, authorization_details=requested)
    tokens = rp.exchange(app.test_client(), answer["code"]).get_json()
    assert claims_of(tokens["id_token"])["authorization_details"] == tokens["authorization_details"]
    return tokens["authorization_details"]


def test_an_invitation_links_the_member_who_logs_in_with_it(app: Flask) -> None:
    writer, reader = key(app, "clinic", "idlink:write"), key(app, "clinic", "idlink:read")
    client = app.test_client()
    invited = client.post("/t/clinic/api/link-invitations", json={"local_ids": ["P-0001", "P-0002"]}, headers=writer)
    assert invited.status_code == 201
    codes = {item["local_id"]: item["code"] for item in invited.get_json()["data"]}
    card, rp = issue_card(app, seed=61), register(app, "clinic", scopes="openid")
    [made] = linked_at_login(app, rp, card, invitation=codes["P-0001"].lower())  # typed as printed, any case
    assert made["local_id"] == "P-0001" and made["assurance"] == "card_login"
    assert linked_at_login(app, rp, card, invitation=codes["P-0001"]) == [made]  # used: nothing new
    assert [d["local_id"] for d in linked_at_login(app, rp, card)] == ["P-0001"]  # later logins: the links
    assert [d["local_id"] for d in linked_at_login(app, rp, card, invitation=codes["P-0002"])] == ["P-0001", "P-0002"]
    found = client.get("/t/clinic/api/links", query_string={"local_id": "P-0001"}, headers=reader).get_json()
    assert found["id"] == made["link_id"] and found["status"] == "active"
    with app.app_context(), all_tenants(db.session):
        created = db.session.scalars(select(Event.payload).where(Event.type == "idlink.link.created")).all()
    assert sorted(json.loads(p)["data"]["local_id"] for p in created) == ["P-0001", "P-0002"]


def test_a_local_id_is_never_taken_from_the_person_who_holds_it(app: Flask) -> None:
    writer = key(app, "clinic", "idlink:write")
    client = app.test_client()
    first, second = (client.post("/t/clinic/api/link-invitations", json={"local_ids": ["P-0009"]},
                                 headers=writer).get_json()["data"][0]["code"] for _ in range(2))
    rp = register(app, "clinic", scopes="openid")
    holder, other = issue_card(app, seed=62), issue_card(app, seed=63)
    assert [d["local_id"] for d in linked_at_login(app, rp, holder, invitation=first)] == ["P-0009"]
    assert linked_at_login(app, rp, other, invitation=second) == []  # another person: refused


def test_expired_and_other_tenants_invitations_link_nothing(app: Flask) -> None:
    writer = key(app, "clinic", "idlink:write")
    code = app.test_client().post("/t/clinic/api/link-invitations", json={"local_ids": ["P-0100"]},
                                  headers=writer).get_json()["data"][0]["code"]
    with clock.frozen(clock.now() - timedelta(days=31)):  # sent a month ago: expired by now
        old = app.test_client().post("/t/clinic/api/link-invitations", json={"local_ids": ["P-0101"]},
                                     headers=writer).get_json()["data"][0]["code"]
    card = issue_card(app, seed=64)
    assert linked_at_login(app, register(app, "bank", scopes="openid"), card, invitation=code) == []
    assert linked_at_login(app, register(app, "clinic", scopes="openid"), card, invitation=old) == []


def test_unlinking_ends_the_link_with_an_event_and_isolation_holds(app: Flask) -> None:
    writer, reader = key(app, "clinic", "idlink:write"), key(app, "clinic", "idlink:read")
    client = app.test_client()
    code = client.post("/t/clinic/api/link-invitations", json={"local_ids": ["P-0200"]},
                       headers=writer).get_json()["data"][0]["code"]
    card, rp = issue_card(app, seed=65), register(app, "clinic", scopes="openid")
    [made] = linked_at_login(app, rp, card, invitation=code)
    elsewhere = key(app, "bank", "idlink:read", "idlink:write")
    assert client.get(f"/t/bank/api/links/{made['link_id']}", headers=elsewhere).status_code == 404
    assert client.delete(f"/t/bank/api/links/{made['link_id']}", headers=elsewhere).status_code == 404
    assert client.get(f"/t/bank/api/links/{made['link_id']}", headers=reader).status_code == 401  # clinic's key
    gone = client.delete(f"/t/clinic/api/links/{made['link_id']}", headers=writer)
    assert gone.status_code == 200 and gone.get_json()["status"] == "unlinked"
    assert client.delete(f"/t/clinic/api/links/{made['link_id']}", headers=writer).status_code == 409
    assert linked_at_login(app, rp, card) == []
    with app.app_context(), all_tenants(db.session):
        assert db.session.scalar(select(Event.id).where(Event.type == "idlink.link.unlinked")) is not None


@pytest.mark.parametrize(("body", "code"), [
    ({"local_ids": []}, "invalid_local_ids"),
    ({"local_ids": ["has space"]}, "invalid_local_id"),
    ({"local_ids": ["x" * 101]}, "invalid_local_id"),
    ({"local_ids": [f"P-{i}" for i in range(1001)]}, "invalid_local_ids"),
    ({}, "invalid_local_ids"),
])
def test_bad_invitations_are_refused_with_a_code(app: Flask, body: dict[str, Any], code: str) -> None:
    response = app.test_client().post("/t/clinic/api/link-invitations", json=body,
                                      headers=key(app, "clinic", "idlink:write"))
    assert response.status_code == 422 and response.get_json()["error"] == code
