"""Security headers, CSRF, languages, errors, request ids and logging of every response."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from saas import ROOT
from saas.logs import JsonFormatter
from tests.conftest import make_app


def csrf_token(client: Any) -> str:
    html = client.get("/").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_pages_carry_strict_security_headers(client: Any) -> None:
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "HX-Request" in response.headers["Vary"]
    assert "Strict-Transport-Security" not in response.headers  # development


def test_production_sends_hsts(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("production refuses SQLite; this runs in the PostgreSQL pass")
    app = make_app(database_url, tmp_path, KAKEHASHI_ENV="production", REDIS_URL="redis://127.0.0.1:6379/0",
                   KEY_ENCRYPTION_KEY="a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
                   MAIL_SMTP_URL="smtp+starttls://mail.example:587", PUBLIC_URL="https://kakehashi.example")
    response = app.test_client().get("/healthz", base_url="https://kakehashi.example")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=63072000")


def test_forms_work_over_https_in_production(database_url: str, tmp_path: Path) -> None:
    # Flask-WTF checks the Referer over HTTPS; the Referrer-Policy must let our own pages send it.
    if database_url.startswith("sqlite"):
        pytest.skip("production refuses SQLite; this runs in the PostgreSQL pass")
    app = make_app(database_url, tmp_path, KAKEHASHI_ENV="production", REDIS_URL="redis://127.0.0.1:6379/0",
                   KEY_ENCRYPTION_KEY="a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
                   MAIL_SMTP_URL="smtp+starttls://mail.example:587", PUBLIC_URL="https://kakehashi.example")
    client = app.test_client()
    page = client.get("/", base_url="https://kakehashi.example")
    assert page.headers["Referrer-Policy"] == "same-origin"
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    response = client.post("/lang", base_url="https://kakehashi.example",
                           data={"lang": "en", "csrf_token": token},
                           headers={"Referer": "https://kakehashi.example/"})
    assert response.status_code == 303


def test_no_page_has_inline_script_and_htmx_is_served_locally(client: Any) -> None:
    for path in ("/", "/docs/api", "/no-such-page"):
        html = client.get(path).get_data(as_text=True)
        scripts = re.findall(r"<script\b([^>]*)>", html)
        assert scripts and all('src="/static/' in attrs for attrs in scripts), path
        assert "<style" not in html and " style=" not in html, path
    htmx = client.get("/static/htmx.min.js")
    assert htmx.status_code == 200 and b"htmx" in htmx.data[:200]
    assert 'version:"2.' in htmx.get_data(as_text=True)


def test_forms_without_a_csrf_token_are_refused(client: Any) -> None:
    response = client.post("/lang", data={"lang": "en"}, headers={"Accept-Language": "en"})
    assert response.status_code == 400
    assert "csrf_failed" in response.get_data(as_text=True)


def test_htmx_requests_pass_csrf_in_a_header(client: Any) -> None:
    token = csrf_token(client)
    response = client.post("/lang", data={"lang": "en"},
                           headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert response.status_code == 303


def test_language_switch_sticks_and_beats_accept_language(client: Any) -> None:
    assert "マイナンバーカード" in client.get("/", headers={"Accept-Language": "ja"}).get_data(as_text=True)
    english = client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"}).get_data(as_text=True)
    assert "Trust built on the My Number Card" in english and 'lang="en"' in english
    token = csrf_token(client)
    response = client.post("/lang", data={"lang": "ja", "next": "/docs/api", "csrf_token": token},
                           headers={"Accept-Language": "en"})
    assert response.status_code == 303 and response.headers["Location"] == "/docs/api"
    page = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert 'lang="ja"' in page and "マイナンバーカードで築く信頼" in page


def test_no_accept_language_means_japanese(client: Any) -> None:
    assert 'lang="ja"' in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil", "javascript:alert(1)"])
def test_language_switch_never_redirects_off_site(client: Any, target: str) -> None:
    token = csrf_token(client)
    response = client.post("/lang", data={"lang": "en", "next": target, "csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_unknown_language_is_a_clear_error(client: Any) -> None:
    token = csrf_token(client)
    response = client.post("/lang", data={"lang": "fr", "csrf_token": token},
                           headers={"Accept": "application/json", "Accept-Language": "en"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_language", "message": "Unknown language.",
                                   "field": "lang"}


def test_errors_are_json_for_api_clients_and_pages_for_browsers(client: Any) -> None:
    api = client.get("/api/v1/nothing", headers={"Accept-Language": "ja"})
    assert api.status_code == 404 and api.is_json
    assert api.get_json() == {"error": "not_found", "message": "ページが見つかりません。"}
    assert "ページが見つかりません" in api.get_data(as_text=True)  # readable, not \u-escaped
    page = client.get("/nothing", headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.mimetype == "text/html"
    wrong_method = client.post("/healthz", headers={"Accept": "application/json"})
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"]
    assert wrong_method.get_json()["error"] == "method_not_allowed"


def test_unexpected_errors_hide_the_trace_and_give_the_request_id(database_url: str, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(database_url, tmp_path)
    app.config["TESTING"] = False  # let the error handler, not the test client, see it

    @app.get("/api/boom")
    def boom() -> str:
        raise RuntimeError("secret detail")

    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/api/boom", headers={"X-Request-ID": "req-12345678"})
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"] == "internal_error" and "secret" not in json.dumps(body)
    assert response.headers["X-Request-ID"] == "req-12345678"
    logged = [r for r in caplog.records if r.name == "kakehashi.errors" and r.exc_info]
    assert logged and "secret detail" in str(logged[0].exc_info[1])


def test_request_ids_are_generated_or_taken_when_well_formed(client: Any) -> None:
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{24}", generated)
    assert client.get("/healthz", headers={"X-Request-ID": "abc.DEF-123_456"}).headers["X-Request-ID"] == "abc.DEF-123_456"
    hostile = client.get("/healthz", headers={"X-Request-ID": "x\" injected"}).headers["X-Request-ID"]
    assert hostile != "x\" injected"


def test_access_log_is_json_with_request_id_and_without_query(client: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kakehashi.access"):
        client.get("/healthz?code=SECRET-CODE", headers={"X-Request-ID": "trace-0001"})
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "kakehashi.access"]
    entry = next(e for e in lines if e.get("request_id") == "trace-0001")
    assert entry["path"] == "/healthz" and entry["status"] == 200 and entry["level"] == "info"
    assert entry["duration_ms"] >= 0
    assert "SECRET-CODE" not in json.dumps(lines)


def test_healthz_and_readyz(client: Any) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready" and ready["checks"]["database"]["ok"] is True
    assert ready["checks"]["schema"]["ok"] is True
    assert "redis" not in ready["checks"]


def test_readyz_is_unavailable_until_the_database_is_migrated(tmp_path: Path) -> None:
    from alembic import command

    from saas.cli import alembic_config, migrate_database

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate_database(url)
    command.downgrade(alembic_config(url), "-1")  # one release behind the code
    app = make_app(url, tmp_path)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["schema"]["ok"] is False and body["checks"]["database"]["ok"] is True
    migrate_database(url)
    assert app.test_client().get("/readyz").status_code == 200


def test_readyz_reports_redis_down(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path, REDIS_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable" and body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_readyz_with_the_real_redis(database_url: str, tmp_path: Path, redis_url: str) -> None:
    app = make_app(database_url, tmp_path, REDIS_URL=redis_url)
    body = app.test_client().get("/readyz").get_json()
    assert body["status"] == "ready" and body["checks"]["redis"]["ok"] is True


def test_landing_page_says_what_the_service_is_in_both_languages(client: Any) -> None:
    ja = client.get("/", headers={"Accept-Language": "ja"}).get_data(as_text=True)
    en = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    for text in ("電子委任状", "公的個人認証サービス", "ID連携"):
        assert text in ja
    for text in ("Electronic power of attorney", "public personal authentication (JPKI)", "ID linking"):
        assert text in en


def test_static_files_ship_with_the_package() -> None:
    assert (ROOT / "saas" / "static" / "htmx.min.js").stat().st_size > 40_000


def test_the_bridge_agent_learns_its_origins_from_the_service(database_url: str, tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path, BRIDGE_ORIGINS="https://login.hospital.example, ")
    body = app.test_client().get("/bridge/origins", base_url="https://kakehashi.example").get_json()
    assert body == {"origins": ["https://kakehashi.example", "https://login.hospital.example"]}


def test_a_request_commits_what_it_changed_and_no_empty_transaction(committed_url: str, tmp_path: Path) -> None:
    """The request's end commits a transaction it began and changes it made outside one (an
    object changed after a commit of its own), and runs no unit of work when there is
    nothing (a tenant from the row cache, statements in autocommit)."""
    from sqlalchemy import event, select
    from sqlalchemy.orm import Session

    from saas import db
    from saas.tenants import services as tenants
    from saas.tenants.models import Tenant

    app = make_app(committed_url, tmp_path, ROW_CACHE_SECONDS=60)

    @app.get("/_test/rename/<name>")  # a GET: no CSRF token to fetch first
    def rename(name: str) -> str:
        tenant = db.session.scalar(select(Tenant).where(Tenant.slug == "bank"))
        db.session.commit()  # as a view that commits part of its work early
        tenant.display_name = name  # changed after that commit: dirty, in no transaction
        return "renamed"

    @app.get("/_test/tenant")
    def tenant_name() -> str:
        return tenants.active_tenant("bank").display_name  # from the row cache once warm

    commits: list[Session] = []

    def committed(session: Session) -> None:
        commits.append(session)

    try:
        with app.app_context():
            tenants.create_tenant(slug="bank", display_name="かけはし銀行", kind="bank")
            db.session.commit()
        client = app.test_client()
        assert client.get("/_test/tenant").get_data(as_text=True) == "かけはし銀行"
        event.listen(Session, "after_commit", committed)
        try:
            assert client.get("/_test/tenant").get_data(as_text=True) == "かけはし銀行"
            assert commits == []
            assert client.get("/_test/rename/架け橋銀行").status_code == 200
            assert len(commits) == 2  # the view's own, then the request's of the later change
        finally:
            event.remove(Session, "after_commit", committed)
        with app.app_context():
            assert db.session.scalar(select(Tenant.display_name).where(Tenant.slug == "bank")) == "架け橋銀行"
    finally:
        db.get_database(app).engine.dispose()
