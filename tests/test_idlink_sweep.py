"""The daily status sweep over linked persons, with the sandbox J-LIS: renewal, a move
(attributes only with a signed consent), a lost or returned card, expiry, and a sweep
killed in the middle that resumes without double events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from saas import clock, db
from saas.db import all_tenants, tenant_scope
from saas.events.models import Event
from saas.idlink import sweep
from saas.idlink.models import IdLink, IdLinkHistory, SweepChunk, SweepRun
from saas.oidc.authorize import release_text
from saas.oidc.models import AttributeUpdateConsent
from saas.tenants import services as tenants
from tests.conftest import make_app
from tests.oidc_helpers import api_key, issue_card, log_in, register
from tests.test_idlink import device, linked_at_login, present

MOVED_TO = "東京都千代田区霞が関一丁目1番1号"


@pytest.fixture
def app(committed_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(committed_url, tmp_path)
    with application.app_context():
        for slug in ("clinic", "bank"):
            tenants.create_tenant(slug=slug, display_name=slug, kind="hospital")
        db.session.commit()
    yield application
    db.get_database(application).engine.dispose()


def invite(app: Flask, slug: str, local_id: str) -> str:
    answer = app.test_client().post(f"/t/{slug}/api/link-invitations", json={"local_ids": [local_id]},
                                    headers=api_key(app, slug, "idlink:write"))
    return answer.get_json()["data"][0]["code"]


def linked(app: Flask, card: Any, local_id: str, slug: str = "clinic") -> str:
    """``local_id`` linked to the card's person through a login; the link's id."""
    [made] = linked_at_login(app, register(app, slug, scopes="openid"), card, invitation=invite(app, slug, local_id))
    return made["link_id"]


def life_event(app: Flask, change: str, card: Any, **arguments: Any) -> Any:
    """A sandbox J-LIS event for the card, then the CRLs and linkage feed read, as daily."""
    from saas.sandbox import jobs as sandbox_jobs
    from saas.sandbox import services as sandbox

    with app.app_context():
        result = getattr(sandbox, change)(card.auth.certificate.serial_number, **arguments)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
    return result


def run_sweep(app: Flask, **options: Any) -> dict[str, Any]:
    with app.app_context():
        run = sweep.start(workers=0, **options)
        sweep_id = run.id
        db.session.commit()
        sweep.work(sweep_id)
        return sweep.summary(sweep_id)


def link_events(app: Flask, type_: str) -> list[dict[str, Any]]:
    with app.app_context(), all_tenants(db.session):
        payloads = db.session.scalars(select(Event.payload).where(Event.type == type_).order_by(Event.id)).all()
    return [json.loads(payload) for payload in payloads]


def test_a_renewed_card_keeps_its_links_and_the_sweep_says_so_once(app: Flask) -> None:
    card = issue_card(app, seed=91)
    link_id = linked(app, card, "P-9100")
    assert run_sweep(app)["changes"] == 0  # nothing happened yet
    renewed = life_event(app, "renew", card)
    summary = run_sweep(app)
    assert summary["status"] == "done" and summary["persons"] == 1 and summary["changes"] == 1
    [event] = link_events(app, "idlink.link.renewed")
    assert event["data"]["link"] == link_id and event["data"]["card_status"] == "valid"
    assert "previous_sub" not in event["data"]  # the same person, the same subject
    assert run_sweep(app)["changes"] == 0  # said once
    rp = register(app, "clinic", scopes="openid")
    assert [d["local_id"] for d in linked_at_login(app, rp, renewed)] == ["P-9100"]  # the new card: same links
    assert link_events(app, "idlink.link.revoked") == []  # superseded is not a revocation


def test_a_move_is_an_event_and_the_new_address_goes_only_where_the_person_consented(app: Flask) -> None:
    card = issue_card(app, seed=92)
    linked(app, card, "P-9200")  # the clinic: no consent to updates
    bank = register(app, "bank", scopes="openid address")
    requested = json.dumps([{"type": "kakehashi_id_link", "invitation": invite(app, "bank", "口座-0001"),
                             "attribute_updates": True}])
    shown = log_in(app.test_client(), bank, card, release=False, scope="openid address",
                   authorization_details=requested)
    assert "最新の住所" in shown["text"] and "receives my latest address" in shown["text"]  # what the agent shows
    answer = log_in(app.test_client(), bank, card, scope="openid address", authorization_details=requested)
    assert bank.exchange(app.test_client(), answer["code"]).status_code == 200
    with app.app_context(), all_tenants(db.session):
        [consent] = db.session.scalars(select(AttributeUpdateConsent)).all()
        assert consent.attributes == "address" and consent.withdrawn_at is None
    life_event(app, "change_attributes", card, address=MOVED_TO)
    assert run_sweep(app)["changes"] == 2
    events = {e["tenant"]: e["data"] for e in link_events(app, "idlink.link.attributes_changed")}
    with app.app_context():
        clinic, bank_tenant = tenants.active_tenant("clinic").public_id, tenants.active_tenant("bank").public_id
    assert events[clinic]["attributes_consented"] is False and "attributes" not in events[clinic]
    released = events[bank_tenant]["attributes"]
    assert released["address"]["formatted"] == MOVED_TO
    assert "name" not in released and "birthdate" not in released  # only what was consented
    assert run_sweep(app)["changes"] == 0


def test_a_lost_card_is_an_event_and_fails_check_in_with_the_reason(app: Flask) -> None:
    _id, kiosk = device(app, "reception")
    card = issue_card(app, seed=93)
    link_id = linked(app, card, "P-9300")
    life_event(app, "report_lost", card)
    assert run_sweep(app)["changes"] == 1
    [event] = link_events(app, "idlink.link.card_lost")
    assert event["data"]["link"] == link_id and event["data"]["reason"] == "keyCompromise"
    refused = present(app, kiosk, card).get_json()
    assert refused["result"] == "refused" and refused["reason"] == "revoked:keyCompromise"
    reader = api_key(app, "clinic", "idlink:read")
    shown = app.test_client().get(f"/t/clinic/api/links/{link_id}", headers=reader).get_json()
    assert shown["card"]["status"] == "lost" and shown["card"]["reason"] == "keyCompromise"
    with app.app_context(), all_tenants(db.session):
        actions = db.session.scalars(select(IdLinkHistory.action).order_by(IdLinkHistory.id)).all()
    assert actions == ["linked", "card_lost"]


def test_a_returned_card_is_revoked_with_its_reason_and_an_expired_one_is_expired(app: Flask) -> None:
    returned, ageing = issue_card(app, seed=94), issue_card(app, seed=95)
    linked(app, returned, "P-9400")
    linked(app, ageing, "P-9500")
    life_event(app, "end_card", returned)
    assert run_sweep(app)["changes"] == 1
    [revoked] = link_events(app, "idlink.link.revoked")
    assert revoked["data"]["reason"] == "cessationOfOperation" and revoked["data"]["local_id"] == "P-9400"
    expiry = ageing.auth.certificate.not_valid_after_utc
    with clock.frozen(expiry + timedelta(days=1)):  # no CRL is current by then: expiry needs none
        assert run_sweep(app)["changes"] == 1
    [expired] = link_events(app, "idlink.link.expired")
    assert expired["data"]["local_id"] == "P-9500" and expired["data"]["card_status"] == "expired"


def test_a_sweep_killed_in_the_middle_resumes_without_double_events(app: Flask, monkeypatch: Any) -> None:
    cards = [issue_card(app, seed=96 + n) for n in range(5)]
    for n, card in enumerate(cards):
        linked(app, card, f"P-96{n:02d}")
    for card in cards:
        life_event(app, "report_lost", card)
    with app.app_context():
        run = sweep.start(workers=0, chunk=2)
        sweep_id = run.id
        db.session.commit()
        assert [c.status for c in sweep.chunk_rows(sweep_id)] == ["pending"] * 3
        first = sweep._lease(sweep_id)
        second = sweep._lease(sweep_id)  # another worker: another chunk
        assert first is not None and second is not None and first != second
        assert sweep.sweep_chunk(first)["changes"] == 2
        emit_many = sweep.events.emit_many

        def emits_then_dies(*args: Any) -> list[str]:
            assert len(emit_many(*args)) == 2  # the events are written, the chunk not yet done
            raise SystemExit("worker killed")

        monkeypatch.setattr(sweep.events, "emit_many", emits_then_dies)
        with pytest.raises(SystemExit):
            sweep.sweep_chunk(second)
        db.session.rollback()
        monkeypatch.setattr(sweep.events, "emit_many", emit_many)
        third = sweep._lease(sweep_id)  # the second is still leased by the dead worker: the third
        assert third not in (None, first, second)
        assert sweep._lease(sweep_id) is None  # nothing free until a lease lapses
        db.session.rollback()
    assert len(link_events(app, "idlink.link.card_lost")) == 2
    with app.app_context(), clock.frozen(clock.now() + sweep.LEASE + timedelta(seconds=1)):
        resumed = sweep.resume(workers=0)
        assert resumed is not None and resumed.id == sweep_id
        sweep.work(sweep_id)
        summary = sweep.summary(sweep_id)
    assert summary["status"] == "done" and summary["chunks_done"] == 3 and summary["changes"] == 5
    lost = link_events(app, "idlink.link.card_lost")
    assert sorted(e["data"]["local_id"] for e in lost) == [f"P-96{n:02d}" for n in range(5)]  # each once
    with app.app_context(), all_tenants(db.session):
        assert db.session.scalar(select(SweepChunk.attempts).where(SweepChunk.id == second)) == 2
        assert db.session.scalar(select(SweepRun.status).where(SweepRun.id == sweep_id)) == "done"


def test_a_chunk_finished_by_another_worker_keeps_nothing_of_a_late_one(app: Flask) -> None:
    card = issue_card(app, seed=101)
    linked(app, card, "P-10100")
    life_event(app, "report_lost", card)
    with app.app_context():
        run = sweep.start(workers=0)
        sweep_id = run.id
        db.session.commit()
        [chunk] = sweep.chunk_rows(sweep_id)
        chunk_id = chunk.id
        with all_tenants(db.session):
            db.session.execute(SweepChunk.__table__.update().values(status="done"))  # the other worker won
            db.session.commit()
        assert sweep.sweep_chunk(chunk_id) == {"persons": 0, "changes": 0}
        with all_tenants(db.session):
            assert db.session.scalar(select(IdLink.card_status)) == "valid"  # rolled back
    assert link_events(app, "idlink.link.card_lost") == []


def test_one_sweep_at_a_time_and_the_command_line(app: Flask) -> None:
    card = issue_card(app, seed=102)
    linked(app, card, "P-10200")
    with app.app_context():
        sweep.start(workers=0)
        db.session.commit()
        with pytest.raises(sweep.SweepBusy):
            sweep.start(workers=0)
    runner = app.test_cli_runner()
    resumed = runner.invoke(args=["idlink", "sweep", "--here"])  # the daily run finishes the stuck one first
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.stderr and json.loads(resumed.stdout)["status"] == "done"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SweepRun)) == 1
    again = runner.invoke(args=["idlink", "sweep", "--here"])
    assert again.exit_code == 0 and json.loads(again.stdout)["persons"] == 1
    assert runner.invoke(args=["idlink", "sweep", "--resume", "--here"]).exit_code != 0  # nothing to resume


def test_the_release_text_names_the_standing_consent_only_when_asked() -> None:
    moment = clock.now()
    plain = release_text("App", "Org", ["name", "address"], moment)
    asked = release_text("App", "Org", ["name", "address"], moment, updates=True)
    assert "最新" not in plain and "最新の氏名・住所" in asked


def test_links_made_before_any_revocation_data_are_judged_later(app: Flask) -> None:
    card = issue_card(app, seed=103)
    link_id = linked(app, card, "P-10300")
    with app.app_context():
        tenant = tenants.active_tenant("clinic")
        with tenant_scope(db.session, tenant.id):
            found = db.session.scalar(select(IdLink).where(IdLink.public_id == link_id))
            assert found.card_status == "valid" and found.auth_ref is not None  # judged when made
            found.card_status = found.auth_ref = found.signature_ref = None  # as if no CRL was there
        db.session.commit()
    assert run_sweep(app)["changes"] == 0  # a silent first judgement: a good card is no news
    with app.app_context(), all_tenants(db.session):
        assert db.session.scalar(select(IdLink.card_status)) == "valid"


def test_a_person_who_used_the_new_card_before_the_linkage_is_followed_with_their_first_subject(app: Flask) -> None:
    from saas.sandbox import jobs as sandbox_jobs
    from saas.sandbox import services as sandbox

    card = issue_card(app, seed=104)
    first = linked(app, card, "P-10400")
    with app.app_context():  # renewed; the CRL is read, the linkage not yet
        renewed = sandbox.renew(card.auth.certificate.serial_number)
        db.session.commit()
        position = sandbox_jobs.jpki_stores().persons.position(sandbox_jobs.LINKAGE_FEED)
    early = linked(app, renewed, "P-10401")  # a new card, not yet known as the same person
    reader = api_key(app, "clinic", "idlink:read")
    client = app.test_client()
    early_sub = client.get(f"/t/clinic/api/links/{early}", headers=reader).get_json()["sub"]
    first_sub = client.get(f"/t/clinic/api/links/{first}", headers=reader).get_json()["sub"]
    assert early_sub != first_sub
    with app.app_context():
        assert sandbox_jobs.jpki_stores().persons.position(sandbox_jobs.LINKAGE_FEED) == position
        sandbox_jobs.refresh_revocation_data()  # the linkage: one person after all
        db.session.commit()
    assert run_sweep(app)["changes"] == 2
    renewed_events = {e["data"]["link"]: e["data"] for e in link_events(app, "idlink.link.renewed")}
    assert renewed_events[early]["sub"] == first_sub and renewed_events[early]["previous_sub"] == early_sub
    assert renewed_events[first]["sub"] == first_sub and "previous_sub" not in renewed_events[first]
    assert client.get(f"/t/clinic/api/links/{early}", headers=reader).get_json()["sub"] == first_sub
    rp = register(app, "clinic", scopes="openid")
    assert [d["local_id"] for d in linked_at_login(app, rp, renewed)] == ["P-10400", "P-10401"]


@pytest.mark.redis
def test_two_rq_workers_share_a_sweep_and_say_each_change_once(committed_url: str, tmp_path: Path,
                                                                redis_url: str) -> None:
    import os
    import secrets
    import subprocess
    import sys

    from saas import ROOT, jobs
    from tests.conftest import SECRET

    prefix = f"kktest-{secrets.token_hex(4)}-"
    app = make_app(committed_url, tmp_path, REDIS_URL=redis_url, JOB_QUEUE_PREFIX=prefix)
    with app.app_context():
        tenants.create_tenant(slug="clinic", display_name="clinic", kind="hospital")
        db.session.commit()
    cards = [issue_card(app, seed=110 + n) for n in range(4)]
    for n, card in enumerate(cards):
        linked(app, card, f"P-110{n}")
        life_event(app, "report_lost", card)
    with app.app_context():
        run = sweep.start(workers=2, chunk=1)  # four chunks, two jobs on the sweeps queue
        sweep_id = run.id
        db.session.commit()
    assert jobs.runner(app).queue("sweeps").count == 2
    env = {**os.environ, "DATABASE_URL": committed_url, "REDIS_URL": redis_url, "JOB_QUEUE_PREFIX": prefix,
           "SECRET_KEY": SECRET, "KAKEHASHI_ENV": "development", "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen([sys.executable, "-m", "saas.cli", "worker", "--burst", "--queue", "sweeps"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for worker in workers:
        _out, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors[-2000:]
    with app.app_context():
        summary = sweep.summary(sweep_id)
        attempts = [chunk.attempts for chunk in sweep.chunk_rows(sweep_id)]
    assert summary["status"] == "done" and summary["changes"] == 4 and attempts == [1, 1, 1, 1]
    assert sorted(e["data"]["local_id"] for e in link_events(app, "idlink.link.card_lost")) == [
        f"P-110{n}" for n in range(4)]
    for kind in jobs.KINDS:
        jobs.runner(app).queue(kind).delete(delete_jobs=True)
    db.get_database(app).engine.dispose()


def test_the_console_shows_the_card_statuses_and_what_the_sweep_saw(app: Flask) -> None:
    from tests.test_console import verified_owner

    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    with app.app_context():
        slug = verified_owner(client)
    page = client.get(f"/t/{slug}/console/links").get_data(as_text=True)
    assert "The daily status check has not run yet." in page
    card = issue_card(app, seed=105)
    linked(app, card, "P-10500", slug=slug)
    life_event(app, "report_lost", card)
    run_sweep(app)
    page = client.get(f"/t/{slug}/console/links").get_data(as_text=True)
    assert 'id="cards-lost">1<' in page and 'id="cards-revoked">0<' in page
    assert "<code>P-10500</code></td><td>Card reported lost</td>" in page
    assert "Reported lost <small" in page and "(keyCompromise)" in page
    assert "Cards last checked against the revocation lists" in page


def test_a_chunk_that_always_fails_is_given_up_and_the_next_sweep_starts_anew(app: Flask, monkeypatch: Any) -> None:
    card = issue_card(app, seed=106)
    linked(app, card, "P-10600")
    with app.app_context():
        run = sweep.start(workers=0)
        sweep_id = run.id
        db.session.commit()

        def broken(_chunk_id: int) -> dict[str, int]:
            raise RuntimeError("a bug in one chunk")

        monkeypatch.setattr(sweep, "sweep_chunk", broken)
        moment = clock.now()
        for attempt in range(sweep.MAX_ATTEMPTS):
            with clock.frozen(moment + (sweep.LEASE + timedelta(seconds=1)) * attempt), pytest.raises(RuntimeError):
                sweep.work(sweep_id)
            db.session.rollback()
        with clock.frozen(moment + (sweep.LEASE + timedelta(seconds=1)) * sweep.MAX_ATTEMPTS):
            assert sweep.work(sweep_id)["chunks"] == 0  # given up: the run ends
        assert sweep.summary(sweep_id)["status"] == "failed"
        monkeypatch.undo()
        assert sweep.start(workers=0).id != sweep_id  # tomorrow's sweep is not blocked
        db.session.commit()
