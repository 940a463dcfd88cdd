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
from sqlalchemy import func, select, update

from saas import clock, db
from saas.db import all_tenants, tenant_scope
from saas.events.models import Event
from saas.tenants import services as tenants
from tests.conftest import make_app
from tests.oidc_helpers import api_key, claims_of, issue_card, log_in, register


@pytest.fixture
def app(committed_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(committed_url, tmp_path)
    with application.app_context():
        for slug in ("clinic", "bank"):
            tenants.create_tenant(slug=slug, display_name=slug, kind="hospital")
        db.session.commit()
    yield application
    db.get_database(application).engine.dispose()




def linked_at_login(app: Flask, rp: Any, card: Any, **detail: str) -> list[dict[str, Any]]:
    """A card login through the tenant's app asking for links; what the token response says."""
    requested = json.dumps([{"type": "kakehashi_id_link", **detail}])
    answer = log_in(app.test_client(), rp, card, authorization_details=requested)
    tokens = rp.exchange(app.test_client(), answer["code"]).get_json()
    assert claims_of(tokens["id_token"])["authorization_details"] == tokens["authorization_details"]
    return tokens["authorization_details"]


def refused(details: list[dict[str, Any]]) -> str | None:
    """Why the login's invitation linked nothing (None when it did, or none was given)."""
    return next((d["invitation_refused"] for d in details if "invitation_refused" in d), None)


def local_ids(details: list[dict[str, Any]]) -> list[str]:
    return [d["local_id"] for d in details if "local_id" in d]


def test_an_invitation_links_the_member_who_logs_in_with_it(app: Flask) -> None:
    writer, reader = api_key(app, "clinic", "idlink:write"), api_key(app, "clinic", "idlink:read")
    client = app.test_client()
    invited = client.post("/t/clinic/api/link-invitations", json={"local_ids": ["P-0001", "P-0002"]}, headers=writer)
    assert invited.status_code == 201
    codes = {item["local_id"]: item["code"] for item in invited.get_json()["data"]}
    card, rp = issue_card(app, seed=61), register(app, "clinic", scopes="openid")
    [made] = linked_at_login(app, rp, card, invitation=codes["P-0001"].lower())  # typed as printed, any case
    assert made["local_id"] == "P-0001" and made["assurance"] == "card_login"
    again = linked_at_login(app, rp, card, invitation=codes["P-0001"])  # used: nothing new
    assert local_ids(again) == ["P-0001"] and refused(again) == "invitation_invalid"
    assert [d["local_id"] for d in linked_at_login(app, rp, card)] == ["P-0001"]  # later logins: the links
    found = client.get("/t/clinic/api/links", query_string={"local_id": "P-0001"}, headers=reader).get_json()
    assert found["id"] == made["link_id"] and found["status"] == "active"
    with app.app_context(), all_tenants(db.session):
        created = db.session.scalars(select(Event.payload).where(Event.type == "idlink.link.created")).all()
    assert [json.loads(p)["data"]["local_id"] for p in created] == ["P-0001"]


def allow_several(app: Flask, slug: str, several: bool = True) -> None:
    from saas.idlink import services

    with app.app_context():
        tenant = tenants.active_tenant(slug)
        with tenant_scope(db.session, tenant.id):
            services.set_several_per_person(tenant, several, by="test")
        db.session.commit()


def test_one_id_per_person_unless_the_tenant_allows_several(app: Flask) -> None:
    writer = api_key(app, "clinic", "idlink:write")
    codes = [item["code"] for item in app.test_client().post(
        "/t/clinic/api/link-invitations", json={"local_ids": ["P-0201", "P-0202"]}, headers=writer).get_json()["data"]]
    card, rp = issue_card(app, seed=64), register(app, "clinic", scopes="openid")
    assert [d["local_id"] for d in linked_at_login(app, rp, card, invitation=codes[0])] == ["P-0201"]
    # A hospital: one patient number a person. The second code is refused and stays usable.
    second = linked_at_login(app, rp, card, invitation=codes[1])
    assert local_ids(second) == ["P-0201"] and refused(second) == "person_already_linked"
    allow_several(app, "clinic")
    assert [d["local_id"] for d in linked_at_login(app, rp, card, invitation=codes[1])] == ["P-0201", "P-0202"]
    allow_several(app, "clinic", False)  # links made before stay
    assert [d["local_id"] for d in linked_at_login(app, rp, card)] == ["P-0201", "P-0202"]


def test_a_ticket_vendor_lets_a_person_hold_several_tickets_by_default(app: Flask) -> None:
    from saas.idlink import services

    with app.app_context():
        ticketing = tenants.create_tenant(slug="tickets", display_name="tickets", kind="ticketing")
        clinic = tenants.active_tenant("clinic")
        with tenant_scope(db.session, ticketing.id):
            assert services.several_per_person(ticketing)
        with tenant_scope(db.session, clinic.id):
            assert not services.several_per_person(clinic)
            services.link(clinic, local_id="P-1", person_id=9001, sub="s", assurance="operator", made_by="t")
            with pytest.raises(services.LinkError) as refused:
                services.link(clinic, local_id="P-2", person_id=9001, sub="s", assurance="operator", made_by="t")
        db.session.rollback()
    assert refused.value.code == "person_already_linked" and refused.value.status == 409


def test_a_local_id_is_never_taken_from_the_person_who_holds_it(app: Flask) -> None:
    writer = api_key(app, "clinic", "idlink:write")
    client = app.test_client()
    first, second = (client.post("/t/clinic/api/link-invitations", json={"local_ids": ["P-0009"]},
                                 headers=writer).get_json()["data"][0]["code"] for _ in range(2))
    rp = register(app, "clinic", scopes="openid")
    holder, other = issue_card(app, seed=62), issue_card(app, seed=63)
    assert [d["local_id"] for d in linked_at_login(app, rp, holder, invitation=first)] == ["P-0009"]
    answer = linked_at_login(app, rp, other, invitation=second)  # another person: refused, and told why
    assert local_ids(answer) == [] and refused(answer) == "local_id_taken"


def test_expired_and_other_tenants_invitations_link_nothing(app: Flask) -> None:
    writer = api_key(app, "clinic", "idlink:write")
    code = app.test_client().post("/t/clinic/api/link-invitations", json={"local_ids": ["P-0100"]},
                                  headers=writer).get_json()["data"][0]["code"]
    with clock.frozen(clock.now() - timedelta(days=31)):  # sent a month ago: expired by now
        old = app.test_client().post("/t/clinic/api/link-invitations", json={"local_ids": ["P-0101"]},
                                     headers=writer).get_json()["data"][0]["code"]
    card = issue_card(app, seed=64)
    for answer in (linked_at_login(app, register(app, "bank", scopes="openid"), card, invitation=code),
                   linked_at_login(app, register(app, "clinic", scopes="openid"), card, invitation=old)):
        assert local_ids(answer) == [] and refused(answer) == "invitation_invalid"


def test_unlinking_ends_the_link_with_an_event_and_isolation_holds(app: Flask) -> None:
    writer, reader = api_key(app, "clinic", "idlink:write"), api_key(app, "clinic", "idlink:read")
    client = app.test_client()
    code = client.post("/t/clinic/api/link-invitations", json={"local_ids": ["P-0200"]},
                       headers=writer).get_json()["data"][0]["code"]
    card, rp = issue_card(app, seed=65), register(app, "clinic", scopes="openid")
    [made] = linked_at_login(app, rp, card, invitation=code)
    elsewhere = api_key(app, "bank", "idlink:read", "idlink:write")
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
                                      headers=api_key(app, "clinic", "idlink:write"))
    assert response.status_code == 422 and response.get_json()["error"] == code


# -- reception, gates and shelters --------------------------------------------------------------------

KIOSK = "https://kiosk.clinic.example"


def device(app: Flask, kind: str, name: str = "受付1") -> tuple[str, dict[str, str]]:
    from saas.idlink import checkin

    with app.app_context():
        tenant = tenants.active_tenant("clinic")
        with tenant_scope(db.session, tenant.id):
            row, value = checkin.register_device(tenant, name=name, kind=kind, origin=KIOSK, location="1F")
            public_id = row.public_id
        db.session.commit()
    return public_id, {"Authorization": f"Bearer {value}", "Accept-Language": "en"}


def present(app: Flask, headers: dict[str, str], card: Any, **extra: str) -> Any:
    """What the kiosk does: a challenge, the agent's token over it (the kiosk's origin), the post."""
    from tests.oidc_helpers import agent_token

    client = app.test_client()
    answer = client.post("/t/clinic/api/checkin/challenge", headers=headers).get_json()
    assert answer["origin"] == KIOSK
    return client.post("/t/clinic/api/checkin", headers=headers,
                       json={"token": agent_token(card, answer["challenge"], origin=KIOSK),
                             "challenge": answer["challenge"], **extra})


def test_reception_answers_the_patient_number_or_links_one_after_staff_confirm(app: Flask) -> None:
    _id, kiosk = device(app, "reception")
    card = issue_card(app, seed=71)
    first = present(app, kiosk, card).get_json()
    assert first["result"] == "not_linked" and first["local_ids"] == []
    made = app.test_client().post("/t/clinic/api/checkin/link", headers=kiosk,
                                  json={"checkin": first["checkin"], "local_id": "診察券-000123"})
    assert made.status_code == 201 and made.get_json()["assurance"] == "reception"
    again = present(app, kiosk, card).get_json()
    assert again["result"] == "linked" and again["local_ids"] == ["診察券-000123"]


def test_only_a_reception_device_links_a_local_id(app: Flask) -> None:
    card, reader = issue_card(app, seed=77), api_key(app, "clinic", "idlink:read")
    for kind in ("gate", "shelter"):  # self-service kiosks: nobody there checked the person's papers
        _id, kiosk = device(app, kind, f"{kind} 1")
        arrived = present(app, kiosk, card).get_json()
        refused = app.test_client().post("/t/clinic/api/checkin/link", headers=kiosk | {"Accept-Language": "ja"},
                                         json={"checkin": arrived["checkin"], "local_id": "P-0077"})
        assert refused.status_code == 403 and refused.get_json()["error"] == "not_a_reception_device"
        assert "受付" in refused.get_json()["message"]
    assert app.test_client().get("/t/clinic/api/links", query_string={"local_id": "P-0077"},
                                 headers=reader).status_code == 404


def test_a_revoked_card_fails_check_in_with_the_reason(app: Flask) -> None:
    from saas.sandbox import jobs as sandbox_jobs
    from saas.sandbox import services as sandbox

    _id, kiosk = device(app, "reception")
    card = issue_card(app, seed=72)
    with app.app_context():
        sandbox.report_lost(card.auth.certificate.serial_number)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
    refused = present(app, kiosk, card).get_json()
    assert refused["result"] == "refused" and refused["reason"] == "revoked:keyCompromise"
    assert "revoked" in refused["message"]


def test_a_gate_admits_only_the_tickets_holder(app: Flask) -> None:
    writer = api_key(app, "clinic", "idlink:write")
    code = app.test_client().post("/t/clinic/api/link-invitations", json={"local_ids": ["TICKET-42"]},
                                  headers=writer).get_json()["data"][0]["code"]
    holder, other = issue_card(app, seed=73), issue_card(app, seed=74)
    linked_at_login(app, register(app, "clinic", scopes="openid"), holder, invitation=code)
    _id, gate = device(app, "gate", "東ゲート")
    assert present(app, gate, holder, ticket="TICKET-42").get_json()["result"] == "holder"
    assert present(app, gate, other, ticket="TICKET-42").get_json() | {"checkin": None, "sub": None} == {
        "result": "not_holder", "local_ids": [], "checkin": None, "sub": None}


def test_shelters_count_arrivals_and_export_them(app: Flask) -> None:
    shelter_id, shelter = device(app, "shelter", "第一小学校")
    for seed in (75, 76):
        card = issue_card(app, seed=seed)
        assert present(app, shelter, card).get_json()["result"] == "not_linked"
    present(app, shelter, card)  # the same person twice: two check-ins, one person
    with app.app_context():
        from saas.idlink import checkin

        with tenant_scope(db.session, tenants.active_tenant("clinic").id):
            [(row, total, people)] = checkin.arrivals()
            exported = checkin.arrivals_rows()
    assert (row.public_id, total, people) == (shelter_id, 3, 2)
    assert [line[0] for line in exported] == ["第一小学校"] * 3 and len({line[3] for line in exported}) == 2


def test_a_revoked_or_foreign_device_key_is_refused(app: Flask) -> None:
    from saas.idlink import checkin

    device_id, kiosk = device(app, "reception")
    client = app.test_client()
    assert client.post("/t/bank/api/checkin/challenge", headers=kiosk).status_code == 401
    assert client.post("/t/clinic/api/checkin/challenge", headers={"Authorization": "Bearer kk_dev_nope"}
                       ).status_code == 401
    with app.app_context():
        with tenant_scope(db.session, tenants.active_tenant("clinic").id):
            checkin.revoke_device(checkin.get_device(device_id))
        db.session.commit()
    refused = client.post("/t/clinic/api/checkin/challenge", headers=kiosk)
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_device_key"


def test_a_resold_ticket_moves_to_the_new_verified_holder_with_its_history(app: Flask) -> None:
    writer, reader = api_key(app, "clinic", "idlink:write"), api_key(app, "clinic", "idlink:read")
    client = app.test_client()
    code = client.post("/t/clinic/api/link-invitations", json={"local_ids": ["TICKET-77"]},
                       headers=writer).get_json()["data"][0]["code"]
    seller, buyer = issue_card(app, seed=81), issue_card(app, seed=82)
    rp = register(app, "clinic", scopes="openid")
    [ticket] = linked_at_login(app, rp, seller, invitation=code)
    offer = client.post(f"/t/clinic/api/links/{ticket['link_id']}/transfer", headers=writer)
    assert offer.status_code == 201 and offer.get_json()["code"].startswith("TRF-")
    transfer = offer.get_json()["code"]
    own = linked_at_login(app, rp, seller, invitation=transfer)  # the seller's own code: nothing moves
    assert local_ids(own) == ["TICKET-77"] and refused(own) == "transfer_void"
    assert local_ids(linked_at_login(app, rp, buyer, invitation=transfer)) == ["TICKET-77"]  # still usable
    assert refused(linked_at_login(app, rp, buyer, invitation=transfer)) == "invitation_invalid"  # used now
    assert linked_at_login(app, rp, seller) == []
    _id, gate = device(app, "gate", "西ゲート")
    assert present(app, gate, seller, ticket="TICKET-77").get_json()["result"] == "not_holder"
    assert present(app, gate, buyer, ticket="TICKET-77").get_json()["result"] == "holder"
    history = client.get(f"/t/clinic/api/links/{ticket['link_id']}/history", headers=reader).get_json()["data"]
    assert [row["action"] for row in history] == ["linked", "transferred"]
    assert history[0]["sub"] != history[1]["sub"]
    with app.app_context(), all_tenants(db.session):
        moved = db.session.scalar(select(Event.payload).where(Event.type == "idlink.link.transferred"))
    assert json.loads(moved)["data"]["from_sub"] == history[0]["sub"]


def test_a_ticket_listed_twice_is_not_taken_from_its_buyer_by_the_other_listing(app: Flask) -> None:
    from saas.idlink.models import LinkInvitation

    writer, reader = api_key(app, "clinic", "idlink:write"), api_key(app, "clinic", "idlink:read")
    client = app.test_client()
    code = client.post("/t/clinic/api/link-invitations", json={"local_ids": ["TICKET-78"]},
                       headers=writer).get_json()["data"][0]["code"]
    seller, buyer, stranger = issue_card(app, seed=83), issue_card(app, seed=84), issue_card(app, seed=85)
    rp = register(app, "clinic", scopes="openid")
    [ticket] = linked_at_login(app, rp, seller, invitation=code)
    first, second = (client.post(f"/t/clinic/api/links/{ticket['link_id']}/transfer", headers=writer)
                     .get_json()["code"] for _ in range(2))
    assert local_ids(linked_at_login(app, rp, buyer, invitation=second)) == ["TICKET-78"]
    late = linked_at_login(app, rp, stranger, invitation=first)  # voided when the ticket was sold
    assert local_ids(late) == [] and refused(late) == "transfer_void"
    with app.app_context(), all_tenants(db.session):  # as if being redeemed while the ticket sold (skipped)
        db.session.execute(update(LinkInvitation).values(voided_at=None))
        db.session.commit()
    late = linked_at_login(app, rp, stranger, invitation=first)  # still the seller's offer: void
    assert local_ids(late) == [] and refused(late) == "transfer_void"
    assert local_ids(linked_at_login(app, rp, buyer)) == ["TICKET-78"]
    resold = client.post(f"/t/clinic/api/links/{ticket['link_id']}/transfer", headers=writer).get_json()["code"]
    assert local_ids(linked_at_login(app, rp, stranger, invitation=resold)) == ["TICKET-78"]  # the buyer's offer
    history = client.get(f"/t/clinic/api/links/{ticket['link_id']}/history", headers=reader).get_json()["data"]
    assert [row["action"] for row in history] == ["linked", "transferred", "transferred"]


def test_a_transfer_offer_ends_when_its_link_is_unlinked_and_linked_again(app: Flask) -> None:
    writer = api_key(app, "clinic", "idlink:write")
    client = app.test_client()

    def invite() -> str:
        return client.post("/t/clinic/api/link-invitations", json={"local_ids": ["P-0086"]},
                           headers=writer).get_json()["data"][0]["code"]

    def offer_then_unlink(link_id: str) -> str:
        offered = client.post(f"/t/clinic/api/links/{link_id}/transfer", headers=writer).get_json()["code"]
        assert client.delete(f"/t/clinic/api/links/{link_id}", headers=writer).status_code == 200
        return offered

    first, second, stranger = issue_card(app, seed=86), issue_card(app, seed=87), issue_card(app, seed=88)
    rp = register(app, "clinic", scopes="openid")
    [held] = linked_at_login(app, rp, first, invitation=invite())
    offer = offer_then_unlink(held["link_id"])
    assert local_ids(linked_at_login(app, rp, second, invitation=invite())) == ["P-0086"]  # another holder
    late = linked_at_login(app, rp, stranger, invitation=offer)
    assert local_ids(late) == [] and refused(late) == "transfer_void"
    offer = offer_then_unlink(held["link_id"])
    assert local_ids(linked_at_login(app, rp, second, invitation=invite())) == ["P-0086"]  # the same holder again
    late = linked_at_login(app, rp, stranger, invitation=offer)
    assert local_ids(late) == [] and refused(late) == "transfer_void"
    assert local_ids(linked_at_login(app, rp, second)) == ["P-0086"]


# -- the bulk import ----------------------------------------------------------------------------------

def members_csv(rows: int, *, encoding: str = "cp932", bad_every: int = 1000) -> tuple[bytes, int]:
    """A member list as a Japanese spreadsheet saves it, with bad rows mixed in; (file, bad rows)."""
    lines, bad = ["会員番号,氏名,備考"], 0
    for n in range(1, rows + 1):
        if n % bad_every == 0:
            lines.append(f"M {n:06d},会員 {n},空白入り")  # a space: not a valid local id
            bad += 1
        else:
            lines.append(f"M-{n:06d},会員 {n},")
    lines.append("M-000001,重複,")  # listed twice
    return ("\r\n".join(lines) + "\r\n").encode(encoding), bad + 1


def test_a_bulk_import_of_50000_rows_commits_the_good_and_reports_every_bad_row(app: Flask) -> None:
    from saas.idlink import imports
    from saas.idlink.models import LinkInvitation

    raw, bad = members_csv(50_000)
    with app.app_context():
        tenant = tenants.active_tenant("clinic")
        with tenant_scope(db.session, tenant.id):
            batch = imports.preview(tenant, filename="会員一覧.csv", raw=raw, by="test")
            db.session.commit()
            assert (batch.encoding, batch.total_rows, batch.error_count) == ("Shift_JIS", 50_000 - bad + 1, bad)
            problems = json.loads(batch.errors)
            assert problems[0][:2] == [1001, "M 001000"] and "空白" in problems[0][2]  # line, value, why (ja)
            assert problems[-1] == [50_002, "M-000001", "2 行目と重複しています"]  # a duplicate names the first line
            batch_id = batch.id
        assert imports.run(batch_id, tenant.id)["created"] == 50_000 - bad + 1
        with tenant_scope(db.session, tenant.id):
            count = db.session.scalar(select(func.count()).select_from(LinkInvitation))
            codes = imports.codes(db.session.get(imports.ImportBatch, batch_id))
            assert count == len(codes) == 50_000 - bad + 1
            assert codes[0][0] == "M-000001" and codes[0][1].startswith("LNK-")
            again = imports.preview(tenant, filename="会員一覧.csv", raw=raw, by="test")  # idempotent re-import
            db.session.commit()
            assert imports.run(again.id, tenant.id) == {"created": 0, "skipped": 50_000 - bad + 1}


def test_a_killed_import_resumes_without_doubles(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    from saas import jobs
    from saas.idlink import imports
    from saas.idlink.models import LinkInvitation

    raw, bad = members_csv(5_000, encoding="utf-8-sig", bad_every=999)
    monkeypatch.setattr(imports, "CHUNK", 1_000)

    def killed(done: int, total: int) -> None:
        raise SystemExit("the worker was killed")

    with app.app_context():
        tenant = tenants.active_tenant("clinic")
        with tenant_scope(db.session, tenant.id):
            batch = imports.preview(tenant, filename="members.csv", raw=raw, by="test")
            db.session.commit()
            batch_id = batch.id
            assert batch.encoding == "UTF-8"
        monkeypatch.setattr(jobs, "report_progress", killed)
        with pytest.raises(SystemExit):
            imports.run(batch_id, tenant.id)
        db.session.rollback()
        monkeypatch.undo()
        monkeypatch.setattr(imports, "CHUNK", 1_000)
        with tenant_scope(db.session, tenant.id):
            assert db.session.get(imports.ImportBatch, batch_id).processed_rows == 1_000  # the first chunk stuck
        imports.run(batch_id, tenant.id)
        with tenant_scope(db.session, tenant.id):
            invitations = db.session.scalars(select(LinkInvitation.local_id)).all()
            assert len(invitations) == len(set(invitations)) == 5_000 - bad + 1


def test_the_console_imports_a_file_with_a_progress_bar(app: Flask) -> None:
    import io
    import re
    import time

    from tests.test_console import csrf, verified_owner

    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    with app.app_context():
        slug = verified_owner(client)
    page = f"/t/{slug}/console/links/import"
    refused = client.post(page, data={"file": (io.BytesIO(b"name\nx\n"), "x.csv"), "csrf_token": csrf(client, page)},
                          content_type="multipart/form-data")
    assert refused.status_code == 422 and "local_id" in refused.get_data(as_text=True)
    raw, _bad = members_csv(300, bad_every=100)
    checked = client.post(page, data={"file": (io.BytesIO(raw), "members.csv"), "csrf_token": csrf(client, page)},
                          content_type="multipart/form-data")
    batch_page = checked.headers["Location"]
    preview = client.get(batch_page).get_data(as_text=True)
    assert 'id="rows-good">297<' in preview and 'id="rows-bad">4<' in preview and "Import 297 rows" in preview
    assert "listed already on line 2" in preview
    start = re.search(r'action="([^"]+/start)"', preview).group(1)  # type: ignore[union-attr]
    assert client.post(start, data={"csrf_token": csrf(client, batch_page)}).status_code == 302
    deadline = time.monotonic() + 30
    while "Done:" not in (fragment := client.get(batch_page, headers={"HX-Request": "true"}).get_data(as_text=True)):
        assert time.monotonic() < deadline, fragment
        assert "<progress" in fragment
        time.sleep(0.2)
    assert "hx-trigger" not in fragment  # finished: the polling stops
    codes = client.get(f"{batch_page}/codes.csv")
    rows = codes.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert codes.status_code == 200 and rows[0] == "local_id,code" and len(rows) == 1 + 297
    assert all(re.fullmatch(r"M-\d{6},LNK-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", row) for row in rows[1:])


def make_links(app: Flask, slug: str, count: int) -> None:
    from saas.idlink import services

    allow_several(app, slug)
    with app.app_context():
        tenant = tenants.active_tenant(slug)
        with tenant_scope(db.session, tenant.id):
            for n in range(count):
                services.link(tenant, local_id=f"M-{n:04d}", person_id=9000 + n % 7, sub=f"sub-{n % 7}",
                              assurance="operator", made_by="test")
        db.session.commit()


def test_the_api_pages_through_the_links_with_filters(app: Flask) -> None:
    make_links(app, "clinic", 250)
    reader, client = api_key(app, "clinic", "idlink:read"), app.test_client()
    unlinked = client.get("/t/clinic/api/links", query_string={"local_id": "M-0007"}, headers=reader).get_json()["id"]
    client.delete(f"/t/clinic/api/links/{unlinked}", headers=api_key(app, "clinic", "idlink:write"))
    seen, after = [], ""
    while True:
        page = client.get("/t/clinic/api/links", query_string={"limit": 100, "after": after, "status": "active"},
                          headers=reader).get_json()
        seen += [link["local_id"] for link in page["data"]]
        if not (after := page["next"]):
            break
    assert seen == [f"M-{n:04d}" for n in range(250) if n != 7]
    found = client.get("/t/clinic/api/links", query_string={"local_id_prefix": "M-01", "card": "unchecked"},
                       headers=reader).get_json()
    assert [link["local_id"] for link in found["data"]] == [f"M-{n:04d}" for n in range(100, 200)]
    assert found["next"] is None
    other = client.get("/t/bank/api/links", query_string={"after": unlinked}, headers=api_key(app, "bank",
                                                                                             "idlink:read"))
    assert other.status_code == 422 and other.get_json()["error"] == "invalid_cursor"  # another tenant's link


@pytest.mark.parametrize(("query", "field"), [({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"),
                                              ({"limit": "x"}, "limit"), ({"status": "gone"}, "status"),
                                              ({"card": "stolen"}, "card"), ({"local_id_prefix": "a b"},
                                                                              "local_id_prefix")])
def test_a_bad_filter_is_refused_with_its_field(app: Flask, query: dict[str, str], field: str) -> None:
    refused = app.test_client().get("/t/clinic/api/links", query_string=query,
                                    headers=api_key(app, "clinic", "idlink:read"))
    body = refused.get_json()
    assert refused.status_code == 422 and body["error"] == "invalid_filter" and body.get("field") == field, body


def test_the_console_lists_searches_and_exports_the_links_and_sets_the_policy(app: Flask) -> None:
    from tests.test_console import csrf, verified_owner

    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    with app.app_context():
        slug = verified_owner(client)
    make_links(app, slug, 120)
    page = client.get(f"/t/{slug}/console/links").get_data(as_text=True)
    assert page.count("<code>M-") == 50 and "M-0000" in page and "Next" in page
    following = client.get(f"/t/{slug}/console/links", query_string={"after": _next_of(page)}).get_data(as_text=True)
    assert "<code>M-0050</code>" in following and "<code>M-0000</code>" not in following
    fragment = client.get(f"/t/{slug}/console/links", query_string={"prefix": "M-011"},
                          headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in fragment and fragment.count("<code>M-") == 10
    refused = client.get(f"/t/{slug}/console/links", query_string={"prefix": "a b"})
    assert refused.status_code == 422 and "Search by the start of a local id" in refused.get_data(as_text=True)
    exported = client.get(f"/t/{slug}/console/links.csv", query_string={"prefix": "M-00"})
    rows = exported.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    assert rows[0].startswith("link_id,local_id,sub,status") and len(rows) == 1 + 100
    arrivals = client.get(f"/t/{slug}/console/devices/arrivals.csv")
    assert arrivals.mimetype == "text/csv" and arrivals.get_data(as_text=True) == "\ufeffshelter,location,arrived_at,person\r\n"
    refused = client.get(f"/t/{slug}/console/links.csv", query_string={"card": "stolen"})
    assert refused.status_code == 422 and "card is one of valid" in refused.get_data(as_text=True)
    links_page = f"/t/{slug}/console/links"
    unclear = client.post(f"{links_page}/policy", data={"csrf_token": csrf(client, links_page)})
    assert unclear.status_code == 422 and "Choose one id per person or several" in unclear.get_data(as_text=True)
    saved = client.post(f"{links_page}/policy", data={"several": "no", "csrf_token": csrf(client, links_page)})
    assert saved.status_code == 302 and "one of your ids" in client.get(links_page).get_data(as_text=True)
    from saas.idlink import services

    with app.app_context():
        tenant = tenants.active_tenant(slug)
        with tenant_scope(db.session, tenant.id):
            assert not services.several_per_person(tenant)


def _next_of(page: str) -> str:
    import re

    return re.search(r"after=(lnk_[0-9a-z]+)", page).group(1)  # type: ignore[union-attr]


def test_one_bad_id_in_a_list_of_invitations_is_named_and_nothing_is_made(app: Flask) -> None:
    from saas.idlink.models import LinkInvitation

    refused = app.test_client().post("/t/clinic/api/link-invitations", json={"local_ids": ["P-1", "P 2", "P-3"]},
                                     headers=api_key(app, "clinic", "idlink:write"))
    assert refused.status_code == 422 and refused.get_json()["message"].startswith("local_ids[1]: ")
    with app.app_context(), all_tenants(db.session):
        assert db.session.scalar(select(func.count()).select_from(LinkInvitation)) == 0


def test_two_first_links_of_one_person_at_once_make_one(app: Flask) -> None:
    import threading
    import time

    from saas.idlink import services

    if db.get_database(app).engine.dialect.name != "postgresql":
        pytest.skip("SQLite lets one writer at a time anyway; this runs in the PostgreSQL pass")
    first_linked, outcomes = threading.Event(), {}

    def link(local_id: str, hold: bool) -> None:
        with app.app_context():
            tenant = tenants.active_tenant("clinic")
            db.bind_tenant(db.session, tenant.id)
            if not hold:
                first_linked.wait(10)
            try:
                services.link(tenant, local_id=local_id, person_id=9100, sub="s", assurance="operator", made_by="t")
            except services.LinkError as error:
                outcomes[local_id] = error.code
                db.session.rollback()
                return
            if hold:
                first_linked.set()
                time.sleep(0.5)  # the other one checks meanwhile
            db.session.commit()
            outcomes[local_id] = "linked"

    threads = [threading.Thread(target=link, args=("P-A", True)), threading.Thread(target=link, args=("P-B", False))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert outcomes == {"P-A": "linked", "P-B": "person_already_linked"}


def test_two_codes_of_one_ticket_redeemed_at_once_move_it_once(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from saas.idlink import services, sweep

    if db.get_database(app).engine.dialect.name != "postgresql":
        pytest.skip("SQLite lets one writer at a time anyway; this runs in the PostgreSQL pass")
    with app.app_context():
        tenant = tenants.active_tenant("clinic")
        with tenant_scope(db.session, tenant.id):
            found = services.link(tenant, local_id="T-9", person_id=9200, sub="seller", assurance="operator",
                                  made_by="t")
            codes = [services.offer_transfer(tenant, found)["code"] for _ in range(2)]
        db.session.commit()
    first_has_the_link, outcomes = threading.Event(), {}
    baseline = sweep.baseline

    def holding(found: Any) -> None:  # the first buyer holds the link while the second's code waits for it
        baseline(found)
        if threading.current_thread().name == "first":
            first_has_the_link.set()
            time.sleep(0.5)

    monkeypatch.setattr(sweep, "baseline", holding)

    def redeem(code: str, person_id: int) -> None:
        with app.app_context():
            tenant = tenants.active_tenant("clinic")
            db.bind_tenant(db.session, tenant.id)
            if threading.current_thread().name == "second":
                first_has_the_link.wait(10)
            try:
                services.redeem(tenant, code, person_id=person_id, sub=f"buyer-{person_id}", made_by="t")
            except services.LinkError as error:
                outcomes[person_id] = error.code
                db.session.rollback()
                return
            db.session.commit()
            outcomes[person_id] = "moved"

    threads = [threading.Thread(target=redeem, args=(codes[0], 9201), name="first"),
               threading.Thread(target=redeem, args=(codes[1], 9202), name="second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert outcomes == {9201: "moved", 9202: "transfer_void"}
