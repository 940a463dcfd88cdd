"""The short per-process caches of tenants and API keys, and the batched API request log."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select, text, update

from saas import db
from saas.db import all_tenants, tenant_scope
from saas.tenants import apikeys
from saas.tenants import services as tenants
from saas.tenants.models import ApiKey, ApiRequest, TenantMode
from tests.conftest import make_app


@pytest.fixture
def app(committed_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(committed_url, tmp_path, ROW_CACHE_SECONDS=2, API_LOG_FLUSH_SECONDS=0.2)
    with application.app_context():
        tenants.create_tenant(slug="shop", display_name="shop", kind="other", mode=TenantMode.LIVE)
        db.session.commit()
    yield application
    apikeys.REQUEST_LOG.forget(application)  # its database is dropped next
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


def test_a_sandbox_tenant_is_read_afresh_every_time(committed_url: str, tmp_path: Path) -> None:
    application = make_app(committed_url, tmp_path, ROW_CACHE_SECONDS=60)
    with application.app_context():
        tenants.create_tenant(slug="trial", display_name="trial", kind="other")
        db.session.commit()
        tenants.active_tenant("trial")
        seen = statements(application)
        tenants.active_tenant("trial")  # going live must reach every server at once: no copy
        assert [sql for sql in seen if "FROM tenants" in sql]
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
    while logged() != statuses:  # the log thread writes within API_LOG_FLUSH_SECONDS
        assert time.monotonic() < deadline, logged()
        time.sleep(0.05)
