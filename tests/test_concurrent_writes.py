"""Requests that change the same data at the same moment: each is either done whole or
answered 503 ``database_busy`` with Retry-After (the embedded SQLite set-up writes one
transaction at a time, and one that read before another committed cannot write after it);
never a 500, never half done. On PostgreSQL every one succeeds."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select

from saas import db
from saas.db import tenant_scope
from saas.events import services
from saas.tenants import accounts, apikeys, audit
from saas.tenants.models import Tenant
from tests.conftest import backend, make_app


def test_concurrent_changes_are_done_whole_or_refused_as_busy(committed_url: str, tmp_path: Path) -> None:
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
        before = db.session.get(Tenant, tenant.id).audit_seq
    answers: list[tuple[int, str | None, str | None]] = []

    def change(n: int) -> None:
        client = app.test_client()
        for i in range(10):
            response = client.patch(f"/t/org-a/api/webhooks/{endpoint_id}", json={"description": f"t{n}-{i}"},
                                    headers={"Authorization": f"Bearer {secret}"})
            answers.append((response.status_code, (response.get_json() or {}).get("error"),
                            response.headers.get("Retry-After")))

    threads = [threading.Thread(target=change, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [answer for answer in answers if answer[0] == 200]
    assert set(answers) - {(200, None, None)} <= {(503, "database_busy", "1")}
    if backend() == "postgresql":
        assert len(done) == 30
    with app.app_context():
        tenant = db.session.scalar(select(Tenant).where(Tenant.slug == "org-a"))
        assert audit.verify(tenant) == []
        assert tenant.audit_seq - before == len(done)  # each change audited once; a refused one left nothing
        db.get_database(app).engine.dispose()
