"""Requests that change state at the same moment all succeed: on SQLite (the embedded
set-up) a deferred transaction that read before another connection committed could not
write afterwards ("database is locked"), so requests that change state take the write
lock as they begin."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select

from saas import db
from saas.db import tenant_scope
from saas.events import services
from saas.tenants import accounts, apikeys, audit
from saas.tenants.models import Tenant
from tests.conftest import make_app


def test_concurrent_changes_through_the_api_all_succeed_and_keep_the_audit_chain(
        committed_url: str, tmp_path: Path) -> None:
    app = make_app(committed_url, tmp_path)
    with app.test_request_context():
        tenant, _user = accounts.sign_up(organisation="Org", slug="org-a", kind="bank", corporate_number="",
                                         name="A B", email="a@org.example", password="kakehashi bridges rivers at dawn")
        db.session.commit()
        with tenant_scope(db.session, tenant.id):
            endpoint, _ = services.create_endpoint(tenant, url="https://hooks.example/x", event_types=["*"])
            _key, secret = apikeys.create(tenant, name="k", scopes=["webhooks:write"], expires_at=None, by=None)
            endpoint_id = endpoint.public_id
            db.session.commit()
    codes: list[int] = []

    def change(n: int) -> None:
        client = app.test_client()
        for i in range(10):
            codes.append(client.patch(f"/t/org-a/api/webhooks/{endpoint_id}", json={"description": f"t{n}-{i}"},
                                      headers={"Authorization": f"Bearer {secret}"}).status_code)

    threads = [threading.Thread(target=change, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 30
    with app.app_context():
        tenant = db.session.scalar(select(Tenant).where(Tenant.slug == "org-a"))
        assert audit.verify(tenant) == []
        db.get_database(app).engine.dispose()
