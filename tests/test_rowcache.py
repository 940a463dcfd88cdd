"""The short per-process caches of tenants and API keys, and the batched API request log."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select, text, update

from saas import batches, db
from saas.db import all_tenants, tenant_scope
from saas.tenants import apikeys
from saas.tenants import services as tenants
from saas.tenants.models import ApiKey, ApiRequest, TenantMode
from tests.conftest import make_app


@pytest.fixture
def app(committed_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(committed_url, tmp_path, ROW_CACHE_SECONDS=2, BATCH_FLUSH_SECONDS=0.2)
    with application.app_context():
        tenants.create_tenant(slug="shop", display_name="shop", kind="other", mode=TenantMode.LIVE)
        db.session.commit()
    yield application
    batches.forget_all(application)  # its database is dropped next
    db.get_database(application).engine.dispose()


def new_key(app: Flask) -> tuple[str, dict[str, str]]:
    with app.app_context():
        tenant = tenants.active_tenant("shop")
        with tenant_scope(db.session, tenant.id):
            row, value = apikeys.create(tenant, name="system", scopes=["webhooks:read"], expires_at=None, by=None)
            public_id = row.public_id
        db.session.commit()
    return public_id, {"Authorization": f"Bearer {value}", "Accept-Language": "en"}


def statements(app: Flask) -> list[str]:
    """What this thread sends to the database from now on (not the request log's thread)."""
    seen: list[str] = []
    engine = db.get_database(app).engine
    me = threading.get_ident()
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_a: seen.append(sql) if threading.get_ident() == me else None)
    return seen


def test_a_warm_call_reads_neither_the_tenant_nor_the_key(app: Flask) -> None:
    _id, headers = new_key(app)
    client = app.test_client()
    assert client.get("/t/shop/api/webhooks", headers=headers).status_code == 200
    seen = statements(app)
    assert client.get("/t/shop/api/webhooks", headers=headers).status_code == 200
    assert not [sql for sql in seen if "FROM tenants" in sql or "FROM api_keys" in sql], seen
    assert not [sql for sql in seen if "INSERT INTO api_requests" in sql]  # batched


def test_a_key_revoked_here_stops_at_once_and_elsewhere_within_the_cache_time(app: Flask) -> None:
    # The request log is written with each call here: on SQLite, the batch writer's commit
    # between this test's reads and its writes would refuse them (a stale WAL snapshot).
    app.config["BATCH_FLUSH_SECONDS"] = 0
    key_id, headers = new_key(app)
    client = app.test_client()
    assert client.get("/t/shop/api/webhooks", headers=headers).status_code == 200
    with app.app_context(), all_tenants(db.session):  # another server revokes it: this one has it cached
        db.session.execute(update(ApiKey).values(revoked_at=text("CURRENT_TIMESTAMP")))
        db.session.commit()
    assert client.get("/t/shop/api/webhooks", headers=headers).status_code == 200
    time.sleep(2.1)
    assert client.get("/t/shop/api/webhooks", headers=headers).status_code == 401
    other_id, other = new_key(app)
    assert client.get("/t/shop/api/webhooks", headers=other).status_code == 200
    with app.app_context():
        tenant = tenants.active_tenant("shop")
        with tenant_scope(db.session, tenant.id):
            apikeys.revoke(db.session.scalar(select(ApiKey).where(ApiKey.public_id == other_id)))
        db.session.commit()
    assert client.get("/t/shop/api/webhooks", headers=other).status_code == 401  # revoked here: at once


def test_a_sandbox_copy_lets_nothing_of_the_sandbox_through_once_live_elsewhere(committed_url: str,
                                                                                 tmp_path: Path) -> None:
    """A sandbox tenant is kept like a live one, but every decision that lets something of
    the sandbox through (test cards and CAs, kk_test_ keys, client secrets, the sandbox
    register and TSA) reads the mode afresh: going live on another server stops them at once."""
    from saas.delegation import services as delegation
    from saas.oidc import clients, login
    from saas.tenants.context import current_tenant
    from saas.tenants.models import Tenant

    application = make_app(committed_url, tmp_path, ROW_CACHE_SECONDS=60)
    with application.app_context():
        tenant = tenants.create_tenant(slug="trial", display_name="trial", kind="other")
        db.session.commit()
        with tenant_scope(db.session, tenant.id):
            _row, value = apikeys.create(tenant, name="system", scopes=["webhooks:read"], expires_at=None, by=None)
            client, secret = clients.register_client(tenant, name="RP", redirect_uris=["https://rp.example/cb"],
                                                     scopes=["openid"], auth_method="client_secret_basic")
        db.session.commit()
    headers = {"Authorization": f"Bearer {value}", "Accept-Language": "en"}
    web = application.test_client()
    assert web.get("/t/trial/api/webhooks", headers=headers).status_code == 200
    with application.app_context():
        seen = statements(application)
        assert tenants.active_tenant("trial").mode is TenantMode.SANDBOX
        assert not [sql for sql in seen if "FROM tenants" in sql]  # kept, like a live one

    with application.app_context():  # another server approves going live
        db.session.execute(update(Tenant).values(mode=TenantMode.LIVE))
        db.session.commit()

    refused = web.get("/t/trial/api/webhooks", headers=headers)
    assert refused.status_code == 401 and refused.get_json()["error"] == "wrong_mode_key"
    with application.test_request_context("/t/trial/token", method="POST"):
        application.preprocess_request()
        assert current_tenant().mode is TenantMode.SANDBOX  # the copy still says so
        assert tenants.mode_now(current_tenant()) is TenantMode.LIVE
        with tenant_scope(db.session, tenant.id):
            found = db.session.get(type(client), client.id)
            assert not found.check_client_secret(secret)
            assert login.trust_stores(current_tenant()).auth.mode.value == "live"
            assert delegation.commercial_register(current_tenant()) is None
    db.get_database(application).engine.dispose()


def test_a_tenant_suspended_here_is_refused_at_once(app: Flask) -> None:
    from saas.tenants.models import TenantStatus

    _id, headers = new_key(app)
    client = app.test_client()
    assert client.get("/t/shop/api/webhooks", headers=headers).status_code == 200
    with app.app_context():
        tenants.active_tenant("shop").status = TenantStatus.SUSPENDED
        db.session.commit()
    answer = client.get("/t/shop/api/webhooks", headers=headers)
    assert answer.status_code == 403 and answer.get_json()["error"] == "tenant_suspended"


def test_the_batched_request_log_writes_every_call(app: Flask) -> None:
    key_id, headers = new_key(app)
    client = app.test_client()
    statuses = [client.get(path, headers=headers).status_code
                for path in ("/t/shop/api/webhooks", "/t/shop/api/webhooks/whk_nope", "/t/shop/api/webhooks")]
    assert statuses == [200, 404, 200]

    def logged() -> list[Any]:
        with app.app_context(), all_tenants(db.session):
            return list(db.session.scalars(select(ApiRequest.status).order_by(ApiRequest.id)))

    deadline = time.monotonic() + 10
    while logged() != statuses:  # the log thread writes within BATCH_FLUSH_SECONDS
        assert time.monotonic() < deadline, logged()
        time.sleep(0.05)
    with app.app_context(), all_tenants(db.session):  # and the writer noted when the key was used
        assert db.session.scalar(select(ApiKey.last_used_at).where(ApiKey.public_id == key_id)) is not None


def test_login_counters_are_summed_in_memory_and_added_to_the_rows(app: Flask) -> None:
    from saas.oidc import stats
    from saas.oidc.models import LoginStat

    with app.app_context():
        tenant = tenants.active_tenant("shop")
        with tenant_scope(db.session, tenant.id):
            for outcome in ("success", "success", "revoked:keyCompromise", "success"):
                stats.count(tenant.id, 7, outcome)
        seen = statements(app)
        db.session.commit()
        assert not [sql for sql in seen if "login_stats" in sql]  # nothing in the login's transaction
        stats.COUNTS.flush(app)
        for _ in range(2):
            stats.count(tenant.id, 7, "success")
        stats.COUNTS.flush(app)  # added onto the row the first batch made
        with tenant_scope(db.session, tenant.id):
            assert dict(db.session.execute(select(LoginStat.outcome, LoginStat.count)).all()) == {
                "success": 5, "revoked:keyCompromise": 1}


def test_a_client_is_kept_per_process_and_a_change_here_shows_at_once(app: Flask) -> None:
    from saas.oidc import clients, server
    from saas.oidc.models import OIDCClient

    with app.app_context():
        tenant = tenants.active_tenant("shop")
        with tenant_scope(db.session, tenant.id):
            client, _ = clients.register_client(tenant, name="RP", redirect_uris=["https://rp.example/a"],
                                                scopes=["openid"], auth_method="private_key_jwt",
                                                jwks='{"keys": [{"kty": "EC", "crv": "P-256", '
                                                     '"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", '
                                                     '"y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}')
            public_id = client.public_id
        db.session.commit()

    def seen_uris() -> tuple[list[str], list[str]]:
        with app.test_request_context("/t/shop/token", method="POST"):
            app.preprocess_request()
            sql = statements(app)
            found = server._query_client(public_id)
            assert found is not None
            return json.loads(found.redirect_uris), [s for s in sql if "FROM oidc_clients" in s]

    assert seen_uris()[0] == ["https://rp.example/a"]
    assert seen_uris() == (["https://rp.example/a"], [])  # kept: no query
    with app.app_context():  # another server changes it: this one keeps its copy for the cache time
        with all_tenants(db.session):
            db.session.execute(update(OIDCClient).values(redirect_uris='["https://rp.example/b"]'))
        db.session.commit()
    assert seen_uris()[0] == ["https://rp.example/a"]
    with app.app_context():  # changed here: every copy of this process goes at once
        with tenant_scope(db.session, tenants.active_tenant("shop").id):
            found = db.session.scalar(select(OIDCClient))
            clients.update_client(found, name="RP", redirect_uris=["https://rp.example/c"], scopes=["openid"],
                                  jwks=found.jwks)
        db.session.commit()
    assert seen_uris()[0] == ["https://rp.example/c"]


def test_a_batch_whose_app_was_forgotten_while_it_was_written_is_dropped(app: Flask) -> None:
    def write(_connection: Any, _lines: list[Any]) -> None:
        kind.forget(app)  # the app's database is dropped while its batch is being written
        raise RuntimeError("the database is gone")

    kind = batches.Batched("forgotten lines", write)
    kind._pid = os.getpid()  # no writer thread: this test flushes by hand
    kind.add(app, {"line": 1})
    assert kind.flush() == 0  # no error, and nothing left to retry against a database that is gone
    assert kind.flush() == 0
