"""Card login for a tenant: trust by mode, revocation, persons across renewal, pairwise subs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from saas import db
from saas.db import tenant_scope
from saas.jpki.errors import VerificationFailed
from saas.oidc import login
from saas.sandbox import jobs as sandbox_jobs
from saas.sandbox import services as sandbox
from saas.tenants import services as tenants
from saas.tenants.models import TenantMode
from tests.conftest import make_app
from tests.test_jpki_webeid import sign_token

ORIGIN = "https://kakehashi.example"


@pytest.fixture
def app(committed_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(committed_url, tmp_path)
    with application.app_context():
        tenants.create_tenant(slug="login-bank", display_name="ログイン銀行", kind="bank")
        tenants.create_tenant(slug="login-clinic", display_name="ログイン医院", kind="hospital")
        tenants.create_tenant(slug="live-bank", display_name="本番銀行", kind="bank",
                              mode=TenantMode.LIVE)
        db.session.commit()
    yield application
    db.get_database(application).engine.dispose()


def log_in(slug: str, card: Any) -> login.CardLogin:
    tenant = tenants.active_tenant(slug)
    challenge = login.issue_challenge()
    with tenant_scope(db.session, tenant.id):
        result = login.verify_card_login(tenant, sign_token(card, ORIGIN, challenge.nonce),
                                         nonce=challenge.nonce, origin=ORIGIN)
        db.session.commit()
    return result


def refresh() -> None:
    sandbox_jobs.refresh_revocation_data()
    db.session.commit()


def test_a_card_logs_in_with_a_stable_pairwise_sub(app: Flask) -> None:
    with app.app_context():
        card = sandbox.issue_card(seed=41)
        db.session.commit()
        refresh()
        first, second = log_in("login-bank", card), log_in("login-bank", card)
        elsewhere = log_in("login-clinic", card)
    assert first.sub == second.sub and first.person_id == second.person_id
    assert elsewhere.sub != first.sub and elsewhere.person_id == first.person_id
    assert len(first.sub) >= 43 and first.sub != str(first.person_id)  # random, not the internal id


def test_a_renewed_card_logs_into_the_same_sub(app: Flask) -> None:
    with app.app_context():
        card = sandbox.issue_card(seed=42)
        db.session.commit()
        refresh()
        before = log_in("login-bank", card)
        renewed = sandbox.renew(card.auth.certificate.serial_number)
        db.session.commit()
        refresh()  # the new CRL (old card superseded) and the linkage feed
        after = log_in("login-bank", renewed)
        with pytest.raises(VerificationFailed) as old_card:
            log_in("login-bank", card)
    assert after.sub == before.sub
    assert old_card.value.code == "revoked:superseded"


def test_a_lost_card_is_refused_with_the_reason(app: Flask) -> None:
    with app.app_context():
        card = sandbox.issue_card(seed=43)
        sandbox.report_lost(card.auth.certificate.serial_number)
        db.session.commit()
        refresh()
        with pytest.raises(VerificationFailed) as error:
            log_in("login-bank", card)
    assert error.value.code == "revoked:keyCompromise"


def test_a_sandbox_card_never_logs_into_a_live_tenant(app: Flask) -> None:
    with app.app_context():
        card = sandbox.issue_card(seed=44)
        db.session.commit()
        refresh()
        with pytest.raises(VerificationFailed) as error:
            log_in("live-bank", card)
    assert error.value.code == "test_certificate"


def test_without_revocation_data_a_login_fails_closed(app: Flask) -> None:
    with app.app_context():
        card = sandbox.issue_card(seed=45)
        db.session.commit()
        with pytest.raises(VerificationFailed) as error:
            log_in("login-bank", card)
    assert error.value.code == "revocation_unknown"


def test_the_stores_live_as_long_as_the_app(app: Flask) -> None:
    # Rebuilt per login, the revocation index would be reloaded and a pool opened each time.
    from saas.stores import jpki_stores

    with app.app_context():
        first = jpki_stores()
    with app.app_context():
        assert jpki_stores() is first


def test_two_first_logins_at_once_share_one_subject(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    with app.app_context():
        tenant = tenants.active_tenant("login-bank")
        with tenant_scope(db.session, tenant.id):
            first = login.pairwise_sub(tenant, 4242)  # the other request's
            real = db.session.scalar
            calls: list[object] = []

            def raced(statement: object) -> object:
                calls.append(statement)
                return None if len(calls) == 1 else real(statement)  # it looked too early

            monkeypatch.setattr(db.session, "scalar", raced)
            assert login.pairwise_sub(tenant, 4242) == first
            monkeypatch.undo()
            db.session.commit()
