"""The provider end to end in-process: authorize → login page steps → code → tokens,
with every negative case the dialect names."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import func, select

from saas import clock, db
from saas.sandbox import jobs as sandbox_jobs
from saas.sandbox import services as sandbox
from saas.tenants import services as tenants
from tests.conftest import make_app
from tests.oidc_helpers import (
    REDIRECT_URI,
    RP,
    callback,
    card_steps,
    claims_of,
    csrf_of,
    issue_card,
    log_in,
    register,
    start,
)


@pytest.fixture
def app(committed_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(committed_url, tmp_path)
    with application.app_context():
        tenants.create_tenant(slug="bank", display_name="かけはし銀行", kind="bank")
        tenants.create_tenant(slug="clinic", display_name="かけはし医院", kind="hospital")
        db.session.commit()
    yield application
    db.get_database(application).engine.dispose()


@pytest.fixture
def card(app: Flask) -> Any:
    return issue_card(app, seed=7)


@pytest.fixture
def rp(app: Flask) -> RP:
    return register(app, "bank")


def tokens(app: Flask, rp: RP, card: Any, **params: str) -> dict[str, Any]:
    client = app.test_client()
    result = log_in(client, rp, card, **params)
    response = rp.exchange(client, result["code"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def verified_id_token(client: Any, rp: RP, id_token: str) -> dict[str, Any]:
    key_set = KeySet.import_key_set(client.get(f"/t/{rp.slug}/jwks.json").get_json())
    token = jwt.decode(id_token, key_set, algorithms=["RS256"])
    return token.claims


def test_discovery_publishes_the_endpoints_that_exist(app: Flask) -> None:
    client = app.test_client()
    document = client.get("/t/bank/.well-known/openid-configuration").get_json()
    assert document["issuer"] == "http://localhost/t/bank"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["token_endpoint_auth_methods_supported"] == ["private_key_jwt", "client_secret_basic"]
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                 "pushed_authorization_request_endpoint", "revocation_endpoint", "introspection_endpoint"):
        path = document[name].removeprefix("http://localhost")
        assert client.open(path, method="OPTIONS").status_code != 404, name
    assert client.get("/t/nobody/.well-known/openid-configuration").status_code == 404


def test_a_pages_own_security_headers_are_kept_and_none_is_sent_twice(app: Flask, rp: RP) -> None:
    client = app.test_client()
    discovery = client.get("/t/bank/.well-known/openid-configuration")
    assert discovery.headers.getlist("Cache-Control") == ["public, max-age=300"]  # the view's own
    assert discovery.headers["X-Frame-Options"] == "DENY"
    page = client.get(start(client, rp).headers["Location"])
    [policy] = page.headers.getlist("Content-Security-Policy")  # the login page's, reaching the agent
    assert "connect-src 'self' http://127.0.0.1:" in policy
    assert page.headers.getlist("Cache-Control") == ["no-store"]
    assert all(len(page.headers.getlist(name)) == 1 for name in (
        "X-Content-Type-Options", "Referrer-Policy", "Permissions-Policy", "Cross-Origin-Resource-Policy"))


def test_a_card_login_gives_an_id_token_an_access_token_and_userinfo(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    result = log_in(client, rp, card)
    assert result["state"] == rp.state and result["iss"] == rp.issuer  # RFC 9207
    body = rp.exchange(client, result["code"]).get_json()
    claims = verified_id_token(client, rp, body["id_token"])
    assert claims["iss"] == rp.issuer and claims["aud"] == rp.client_id and claims["nonce"] == rp.nonce
    assert claims["acr"] == "aal3" and set(claims["amr"]) >= {"hwk", "pin", "sc"}
    assert abs(claims["auth_time"] - time.time()) < 60 and claims["sid"]
    assert "name" not in claims  # openid only: no attribute
    access = claims_of(body["access_token"])
    assert access["sub"] == claims["sub"] and access["client_id"] == rp.client_id
    assert access["https://kakehashi.jp/claims/mode"] == "sandbox"
    info = client.get("/t/bank/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200 and info.get_json() == {"sub": claims["sub"]}
    assert body["refresh_token"] and body["token_type"] == "Bearer"


def test_the_four_attributes_need_the_signature_and_are_released_to_the_client(
        app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    result = log_in(client, rp, card, scope="openid name address birthdate gender")
    body = rp.exchange(client, result["code"]).get_json()
    claims = verified_id_token(client, rp, body["id_token"])
    person = card.person.attributes
    assert claims["name"] == person.name.replace("\u3000", " ")
    assert claims["address"]["formatted"] == person.address
    assert claims["birthdate"] == person.birthdate.isoformat() and claims["gender"] == person.gender.value
    raw = claims["https://kakehashi.jp/claims/jpki"]
    assert raw["name"] == person.name and raw["name_substitutes"] == list(person.name_substitutes)
    info = client.get("/t/bank/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).get_json()
    assert info["name"] == claims["name"] and info["address"] == claims["address"]


def test_attributes_are_not_released_without_the_signature_step(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    waiting = log_in(client, rp, card, release=False, scope="openid name")
    assert waiting["next"] == "sign" and waiting["purpose"] == "release"
    assert "氏名" in waiting["text"] and "テスト RP" in waiting["text"]


def test_a_scope_the_client_was_not_allowed_is_refused(app: Flask, card: Any) -> None:
    narrow = register(app, "bank", scopes="openid")
    response = start(app.test_client(), narrow, scope="openid name")
    assert callback(response.headers["Location"])["error"] == "invalid_scope"


def test_a_session_answers_the_next_request_and_max_age_forces_the_card(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    first = log_in(client, rp, card)
    first_claims = claims_of(rp.exchange(client, first["code"]).get_json()["id_token"])
    again = start(client, rp)
    assert again.headers["Location"].startswith(REDIRECT_URI)  # no card needed
    second = rp.exchange(client, callback(again.headers["Location"])["code"]).get_json()
    assert claims_of(second["id_token"])["auth_time"] == first_claims["auth_time"]
    with clock.frozen(clock.now()) as frozen:
        frozen.tick(timedelta(seconds=120))
        forced = start(client, rp, max_age="60")
        assert "/login/" in forced.headers["Location"]
        fresh = start(client, rp, max_age="600")
        assert fresh.headers["Location"].startswith(REDIRECT_URI)
    assert "/login/" in start(client, rp, prompt="login").headers["Location"]


def test_prompt_none_without_a_session_is_login_required(app: Flask, rp: RP) -> None:
    response = start(app.test_client(), rp, prompt="none")
    answer = callback(response.headers["Location"])
    assert answer["error"] == "login_required" and answer["state"] == rp.state and answer["iss"] == rp.issuer


def test_acr_values_are_reflected(app: Flask, rp: RP, card: Any) -> None:
    body = tokens(app, rp, card, acr_values="crl aal3")
    assert claims_of(body["id_token"])["acr"] == "crl"


@pytest.mark.parametrize("change, error", [
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"nonce": None}, "invalid_request"),
    ({"nonce": ""}, "invalid_request"),
    ({"scope": "name"}, "invalid_scope"),
    ({"scope": "name", "prompt": "none"}, "invalid_scope"),
    ({"state": None}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"prompt": "none login"}, "invalid_request"),
    ({"max_age": "soon"}, "invalid_request"),
    ({"max_age": "\u00b2"}, "invalid_request"),
])
def test_malformed_authorization_requests_go_back_with_an_error(app: Flask, rp: RP, change: dict[str, Any],
                                                                error: str) -> None:
    response = start(app.test_client(), rp, **change)
    assert response.status_code == 302
    assert callback(response.headers["Location"])["error"] == error


def test_a_wrong_redirect_uri_or_client_is_shown_not_redirected(app: Flask, rp: RP) -> None:
    client = app.test_client()
    for change in ({"redirect_uri": "https://rp.example/callback/"}, {"redirect_uri": "https://evil.example/cb"},
                   {"client_id": "cli_unknown"}):
        response = start(client, rp, **change)
        assert response.status_code == 400 and "Location" not in response.headers


def test_pkce_is_checked_at_the_token_endpoint(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    result = log_in(client, rp, card)
    wrong = rp.exchange(client, result["code"], verifier="x" * 50)
    assert wrong.status_code == 400 and wrong.get_json()["error"] == "invalid_grant"
    result = log_in(client, rp, card, prompt="login")
    missing = rp.post(client, "token", {"grant_type": "authorization_code", "code": result["code"],
                                        "redirect_uri": REDIRECT_URI})
    assert missing.status_code == 400 and missing.get_json()["error"] == "invalid_request"


def test_a_reused_code_is_refused_and_revokes_its_tokens(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    result = log_in(client, rp, card)
    first = rp.exchange(client, result["code"]).get_json()
    replay = rp.exchange(client, result["code"])
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    info = client.get("/t/bank/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"})
    assert info.status_code == 401
    refresh = rp.post(client, "token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert refresh.status_code == 400


def test_authorize_and_exchange_on_cached_rows_begin_no_transaction(committed_url: str, tmp_path: Path) -> None:
    """With the tenant and client cached (as in production), the authorization request's
    nonce check and insert, the login page's read and challenge, then the code's claim and the new grant with its token
    (PostgreSQL: one statement), are each their own transaction: no BEGIN or COMMIT round
    trips; a request's standing statements share one connection. The claim stands on its
    own: a replay still finds the code spent and revokes what it granted."""
    from sqlalchemy import event

    app = make_app(committed_url, tmp_path, ROW_CACHE_SECONDS=60)
    try:
        with app.app_context():
            tenants.create_tenant(slug="bank", display_name="かけはし銀行", kind="bank")
            db.session.commit()
        rp, card = register(app, "bank"), issue_card(app, seed=8)
        client = app.test_client()
        warm = rp.exchange(client, log_in(client, rp, card)["code"])  # the signing keys, read once a while
        assert warm.status_code == 200, warm.get_json()
        engine = db.get_database(app).engine
        begun: list[Any] = []

        def began(connection: Any) -> None:
            if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                begun.append(connection)

        checkouts: list[Any] = []

        def checked_out(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            checkouts.append(dbapi_connection)

        client = app.test_client()  # a new browser: no login session to answer from
        event.listen(engine, "begin", began)
        event.listen(engine, "checkout", checked_out)
        try:
            authorized = start(client, rp)
        finally:
            event.remove(engine, "begin", began)
            event.remove(engine, "checkout", checked_out)
        assert authorized.status_code == 302 and "/login/" in authorized.headers["Location"]
        assert begun == []  # the nonce's check and the new request, each on its own (any database)
        assert len(checkouts) == 1  # both on one connection, kept for the request
        event.listen(engine, "begin", began)
        try:
            page = client.get(urlsplit(authorized.headers["Location"]).path)
        finally:
            event.remove(engine, "begin", began)
        assert page.status_code == 200 and 'data-challenge="' in page.get_data(as_text=True)
        assert begun == []  # the request read, its challenge set: each on its own
        result = card_steps(client, authorized.headers["Location"], card)
        checkouts.clear()
        event.listen(engine, "begin", began)
        event.listen(engine, "checkout", checked_out)
        try:
            response = rp.exchange(client, result["code"])
        finally:
            event.remove(engine, "begin", began)
            event.remove(engine, "checkout", checked_out)
        assert response.status_code == 200, response.get_json()
        if engine.dialect.name == "postgresql":
            assert begun == []
            assert len(checkouts) == 1  # the claim and the grant with its token: one connection
        first = response.get_json()
        info = client.get("/t/bank/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"})
        assert info.status_code == 200 and info.get_json()["sub"] == claims_of(first["id_token"])["sub"]
        replay = rp.exchange(client, result["code"])
        assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
        info = client.get("/t/bank/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"})
        assert info.status_code == 401
    finally:
        db.get_database(app).engine.dispose()


def test_purge_forgets_expired_rows_and_keeps_live_ones(app: Flask, rp: RP, card: Any) -> None:
    from saas.db import all_tenants
    from saas.oidc.models import AuthorizationCode, AuthorizationRequest, Grant, Token
    from saas.oidc.purge import purge

    client = app.test_client()
    first = tokens(app, rp, card)

    def counts() -> dict[str, int]:
        with app.app_context(), all_tenants(db.session):
            return {model.__name__: db.session.scalar(select(func.count()).select_from(model)) or 0
                    for model in (AuthorizationCode, AuthorizationRequest, Grant, Token)}

    before = counts()
    assert all(before.values())
    with app.app_context():
        assert set(purge().values()) == {0}  # nothing has expired yet
        db.session.commit()
    assert counts() == before
    with app.app_context(), clock.frozen(clock.now() + timedelta(hours=2)):
        removed = purge()
        db.session.commit()
    # The family may still be refreshed (12 h), and a replay of its code must still revoke it.
    assert removed["authorization_codes"] == 0 and removed["grants"] == 0
    assert counts()["AuthorizationCode"] == before["AuthorizationCode"] and counts()["Grant"] == before["Grant"]
    refreshed = rp.post(client, "token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 200
    with app.app_context(), clock.frozen(clock.now() + timedelta(days=2)):
        removed = purge()
        db.session.commit()
    assert removed["grants"] == before["Grant"] and counts()["Token"] == 0  # tokens went with their grant
    assert removed["authorization_codes"] == before["AuthorizationCode"]


def test_purge_runs_from_the_command_line(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["oidc", "purge"])
    assert result.exit_code == 0, result.output
    assert "authorization_codes 0" in result.output and "used_assertions 0" in result.output


def test_the_redirect_uri_must_match_at_the_token_endpoint(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    result = log_in(client, rp, card)
    response = rp.post(client, "token", {"grant_type": "authorization_code", "code": result["code"],
                                         "redirect_uri": "https://rp.example/other", "code_verifier": rp.verifier})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


def test_a_replayed_or_expired_client_assertion_is_refused(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    result = log_in(client, rp, card)
    assert rp.exchange(client, result["code"], jti="once").status_code == 200
    result = log_in(client, rp, card, prompt="login")
    replayed = rp.exchange(client, result["code"], jti="once")
    assert replayed.status_code == 400 and replayed.get_json()["error"] == "invalid_client"
    expired = rp.exchange(client, result["code"], issued=int(time.time()) - 3600)
    assert expired.status_code == 400 and expired.get_json()["error"] == "invalid_client"
    too_long = rp.exchange(client, result["code"], lifetime=86400)
    assert too_long.status_code == 400 and too_long.get_json()["error"] == "invalid_client"
    elsewhere = rp.exchange(client, result["code"], audience="https://other.example/token")
    assert elsewhere.status_code == 400
    assert rp.exchange(client, result["code"]).status_code == 200  # the code survived the failures


def test_a_token_of_another_tenant_is_rejected(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    body = tokens(app, rp, card)
    other = register(app, "clinic")
    assert client.get("/t/clinic/userinfo",
                      headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 401
    cross = other.post(client, "token", {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert cross.status_code == 400
    # the bank's client does not exist at the clinic
    wrong_place = client.post("/t/clinic/token", data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"],
        **rp.auth(audience="http://localhost/t/clinic/token")[0]})
    assert wrong_place.status_code in (400, 401) and wrong_place.get_json()["error"] == "invalid_client"
    introspected = other.post(client, "introspect", {"token": body["access_token"]},
                              audience="http://localhost/t/clinic/introspect")
    assert introspected.get_json() == {"active": False}


def test_the_token_endpoint_explains_an_unknown_client_and_an_unsupported_grant(app: Flask, rp: RP) -> None:
    client = app.test_client()
    unknown = client.post("/t/bank/token", data={"grant_type": "authorization_code", "code": "x",
                                                 "client_id": "cli_nobody"})
    body = unknown.get_json()
    assert unknown.status_code in (400, 401) and body["error"] == "invalid_client"
    assert "private_key_jwt" in body["error_description"] and "[" not in body["error_description"]
    password = client.post("/t/bank/token", data={"grant_type": "password", "username": "a", "password": "b"})
    body = password.get_json()
    assert password.status_code == 400 and body["error"] == "unsupported_grant_type"
    assert "authorization_code" in body["error_description"] and "refresh_token" in body["error_description"]
    assert "password" not in body["error_description"]


def test_refresh_tokens_rotate_and_a_reused_one_revokes_the_family(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    first = tokens(app, rp, card)
    second = rp.post(client, "token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    rotated = second.get_json()
    assert rotated["refresh_token"] != first["refresh_token"]
    reuse = rp.post(client, "token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert reuse.status_code == 400 and reuse.get_json()["error"] == "invalid_grant"
    after = rp.post(client, "token", {"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]})
    assert after.status_code == 400  # the thief's reuse ended the family
    info = client.get("/t/bank/userinfo", headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert info.status_code == 401


def test_revocation_and_introspection_honour_each_other(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    body = tokens(app, rp, card)
    active = rp.post(client, "introspect", {"token": body["access_token"]},
                     audience=f"{rp.issuer}/introspect").get_json()
    assert active["active"] is True and active["client_id"] == rp.client_id and active["acr"] == "aal3"
    assert rp.post(client, "revoke", {"token": body["refresh_token"], "token_type_hint": "refresh_token"},
                   audience=f"{rp.issuer}/revoke").status_code == 200
    for value in (body["access_token"], body["refresh_token"]):
        assert rp.post(client, "introspect", {"token": value}, audience=f"{rp.issuer}/introspect"
                       ).get_json() == {"active": False}
    assert rp.post(client, "token", {"grant_type": "refresh_token",
                                     "refresh_token": body["refresh_token"]}).status_code == 400


def test_client_secret_basic_works_for_a_sandbox_client(app: Flask, card: Any) -> None:
    basic = register(app, "bank", basic=True)
    client = app.test_client()
    result = log_in(client, basic, card)
    assert basic.exchange(client, result["code"]).status_code == 200
    basic.secret = "wrong"
    result = log_in(client, basic, card)
    assert basic.exchange(client, result["code"]).status_code == 401


def test_pushed_authorization_requests(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    pushed = rp.post(client, "par", rp.authorize_params(), audience=f"{rp.issuer}/par")
    assert pushed.status_code == 201, pushed.get_json()
    request_uri = pushed.get_json()["request_uri"]
    response = client.get(f"/t/bank/authorize?client_id={rp.client_id}&request_uri={request_uri}")
    assert "/login/" in response.headers["Location"]
    result = card_steps(client, response.headers["Location"], card)
    assert result["state"] == rp.state and rp.exchange(client, result["code"]).status_code == 200
    again = client.get(f"/t/bank/authorize?client_id={rp.client_id}&request_uri={request_uri}")
    assert again.status_code == 400  # single use
    bad = rp.post(client, "par", rp.authorize_params(code_challenge_method="plain"), audience=f"{rp.issuer}/par")
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_request"


def test_the_login_page_belongs_to_the_browser_that_started_it(app: Flask, rp: RP, card: Any) -> None:
    response = start(app.test_client(), rp)
    stranger = app.test_client()
    assert stranger.get(response.headers["Location"].removeprefix("http://localhost")).status_code == 404


def test_a_revoked_card_is_refused_with_its_reason(app: Flask, rp: RP, card: Any) -> None:
    with app.app_context():
        sandbox.report_lost(card.auth.certificate.serial_number)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
    result = log_in(app.test_client(), rp, card)
    assert result["status"] == 400 and result["error"] == "revoked:keyCompromise"
    assert "紛失" in result["message"]  # the reason in plain words (Japanese by default)


def test_logins_and_their_failures_are_counted_for_the_dashboard(app: Flask, rp: RP, card: Any) -> None:
    from saas.db import all_tenants
    from saas.oidc import stats
    from saas.oidc.models import LoginStat

    tokens(app, rp, card)
    tokens(app, rp, card)
    with app.app_context():
        sandbox.report_lost(card.auth.certificate.serial_number)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
    assert log_in(app.test_client(), rp, card)["status"] == 400
    with app.app_context(), all_tenants(db.session):
        counted = dict(db.session.execute(select(LoginStat.outcome, LoginStat.count)).all())
    assert counted == {"success": 2, "revoked:keyCompromise": 1}
    with app.app_context(), tenant_scope_of(app, "bank"):
        assert stats.per_day()[-1][1:] == (2, 1)
        assert stats.per_client()[0][1:] == (2, 1)
        from flask_babel import force_locale

        with app.test_request_context(), force_locale("en"):
            assert [(stats.label(code), n) for code, n in stats.failures()] == [("Certificate revoked", 1)]


def tenant_scope_of(app: Flask, slug: str) -> Any:
    from saas.db import tenant_scope

    return tenant_scope(db.session, tenants.active_tenant(slug).id)


def test_a_renewed_card_logs_into_the_same_sub(app: Flask, rp: RP, card: Any) -> None:
    first = claims_of(tokens(app, rp, card)["id_token"])["sub"]
    with app.app_context():
        renewed = sandbox.renew(card.auth.certificate.serial_number)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
    assert claims_of(tokens(app, rp, renewed)["id_token"])["sub"] == first


# -- logout ------------------------------------------------------------------------------

class Receiver:
    """A relying party's back-channel logout endpoint on a loopback port."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs

        received = self.received = []
        self.arrived = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers["Content-Length"])
                received.append(parse_qs(self.rfile.read(length).decode())["logout_token"][0])
                self.send_response(200)
                self.end_headers()
                outer.arrived.set()

            def log_message(self, *args: Any) -> None:
                pass

        outer = self
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/backchannel"

    def close(self) -> None:
        self.server.shutdown()


def test_logout_with_a_hint_ends_the_session_revokes_tokens_and_notifies_clients(app: Flask, card: Any) -> None:
    receiver = Receiver()
    try:
        rp = register(app, "bank", post_logout_redirect_uris=["https://rp.example/bye"],
                      backchannel_logout_uri=receiver.url)
        client = app.test_client()
        result = log_in(client, rp, card)
        body = rp.exchange(client, result["code"]).get_json()
        id_claims = claims_of(body["id_token"])
        response = client.get("/t/bank/logout?" + urlencode({
            "id_token_hint": body["id_token"], "post_logout_redirect_uri": "https://rp.example/bye",
            "state": "s1"}))
        assert response.status_code == 303 and response.headers["Location"] == "https://rp.example/bye?state=s1"
        assert "/login/" in start(client, rp).headers["Location"]  # the session is over
        refresh = rp.post(client, "token", {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
        assert refresh.status_code == 400
        assert receiver.arrived.wait(10), "no back-channel logout arrived"
        key_set = KeySet.import_key_set(client.get("/t/bank/jwks.json").get_json())
        notice = jwt.decode(receiver.received[0], key_set, algorithms=["RS256"])
        assert notice.header["typ"] == "logout+jwt"
        assert notice.claims["sid"] == id_claims["sid"] and notice.claims["sub"] == id_claims["sub"]
        assert notice.claims["aud"] == rp.client_id and "nonce" not in notice.claims
        assert "http://schemas.openid.net/event/backchannel-logout" in notice.claims["events"]
    finally:
        receiver.close()


def test_logout_without_a_hint_asks_the_person_and_ignores_unregistered_redirects(
        app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    log_in(client, rp, card)
    page = client.get("/t/bank/logout?post_logout_redirect_uri=https://evil.example/")
    assert page.status_code == 200 and 'name="confirm"' in page.get_data(as_text=True)
    assert start(client, rp).headers["Location"].startswith(REDIRECT_URI)  # still logged in
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    done = client.post("/t/bank/logout", data={"confirm": "yes", "csrf_token": token,
                                               "post_logout_redirect_uri": "https://evil.example/"})
    assert done.status_code == 200 and "Location" not in done.headers
    assert "/login/" in start(client, rp).headers["Location"]


# -- the device flow -----------------------------------------------------------------------

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def test_a_device_logs_in_while_the_person_approves_on_a_pc(app: Flask, rp: RP, card: Any) -> None:
    tv, pc = app.test_client(), app.test_client()
    started = rp.post(tv, "device_authorization", {"scope": "openid name"},
                      audience=f"{rp.issuer}/device_authorization")
    assert started.status_code == 200, started.get_json()
    codes = started.get_json()
    assert codes["verification_uri"] == f"{rp.issuer}/device" and codes["interval"] == 5
    poll = {"grant_type": DEVICE_GRANT, "device_code": codes["device_code"]}
    assert rp.post(tv, "token", poll).get_json()["error"] == "authorization_pending"
    assert rp.post(tv, "token", poll).get_json()["error"] == "slow_down"
    page = pc.get(codes["verification_uri_complete"].removeprefix("http://localhost"))
    assert codes["user_code"] in page.get_data(as_text=True)
    typed = codes["user_code"].lower().replace("-", " ")  # people type codes loosely
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    login = pc.post("/t/bank/device", data={"user_code": typed, "csrf_token": csrf})
    assert login.status_code == 303 and "/login/" in login.headers["Location"]
    done = card_steps(pc, login.headers["Location"], card)
    assert done["redirect"].endswith("/device/done")
    with clock.frozen(clock.now() + timedelta(seconds=6)):
        issued = rp.post(tv, "token", poll)
    assert issued.status_code == 200, issued.get_json()
    body = issued.get_json()
    claims = verified_id_token(tv, rp, body["id_token"])
    assert claims["name"] == card.person.attributes.name.replace("\u3000", " ")
    assert claims["acr"] == "aal3" and claims["sid"] and "nonce" not in claims
    again = rp.post(tv, "token", poll)
    assert again.status_code == 400  # one device code, one token response


def test_a_device_code_refused_or_mistyped(app: Flask, rp: RP, card: Any) -> None:
    tv, pc = app.test_client(), app.test_client()
    codes = rp.post(tv, "device_authorization", {"scope": "openid"},
                    audience=f"{rp.issuer}/device_authorization").get_json()
    page = pc.get("/t/bank/device")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    wrong = pc.post("/t/bank/device", data={"user_code": "BBBB-BBBB", "csrf_token": csrf})
    assert wrong.status_code == 400 and 'aria-invalid="true"' in wrong.get_data(as_text=True)
    login = pc.post("/t/bank/device", data={"user_code": codes["user_code"], "csrf_token": csrf})
    path = login.headers["Location"].removeprefix("http://localhost")
    headers = {"X-CSRFToken": csrf_of(pc.get(path).get_data(as_text=True)), "Accept": "application/json"}
    cancelled = pc.post(f"{path}/cancel", json={}, headers=headers).get_json()
    assert cancelled["redirect"].endswith("/device/done?denied=1")
    denied = rp.post(tv, "token", {"grant_type": DEVICE_GRANT, "device_code": codes["device_code"]})
    assert denied.get_json()["error"] == "access_denied"
    narrow = rp.post(tv, "device_authorization", {"scope": "openid sign_everything"},
                     audience=f"{rp.issuer}/device_authorization")
    assert narrow.get_json()["error"] == "invalid_scope"


# -- sign transactions ---------------------------------------------------------------------

def sign_token_for(client: Any, rp: RP) -> str:
    response = rp.post(client, "token", {"grant_type": "client_credentials", "scope": "sign"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def test_a_person_signs_a_registered_digest_and_the_client_fetches_the_signature(app: Flask, card: Any) -> None:
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    rp = register(app, "bank", scopes="openid sign")
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {sign_token_for(client, rp)}"}
    document = "診療情報の提供に同意します。\n2026年11月25日 かけはし医院".encode()
    digest = hashlib.sha256(document).digest()
    created = client.post("/t/bank/api/sign-transactions", headers=bearer, json={
        "digest": base64.b64encode(digest).decode(), "text": "診療情報の提供への同意書（かけはし医院）"})
    assert created.status_code == 201, created.get_json()
    transaction = created.get_json()
    assert transaction["status"] == "pending" and transaction["id"].startswith("stx_")
    result = log_in(client, rp, card, scope="openid sign", sign_transaction_id=transaction["id"])
    id_token = rp.exchange(client, result["code"]).get_json()["id_token"]
    fetched = client.get(f"/t/bank/api/sign-transactions/{transaction['id']}", headers=bearer).get_json()
    assert fetched["status"] == "signed" and fetched["sub"] == claims_of(id_token)["sub"]
    assert fetched["verification"]["valid"] is True
    certificate = x509.load_der_x509_certificate(base64.b64decode(fetched["certificate"]))
    certificate.public_key().verify(base64.b64decode(fetched["signature"]), digest, padding.PKCS1v15(),
                                    Prehashed(hashes.SHA256()))
    assert certificate.serial_number == card.signature.certificate.serial_number
    # signed once: the same transaction cannot be signed again
    again = start(client, rp, scope="openid sign", sign_transaction_id=transaction["id"])
    assert callback(again.headers["Location"])["error"] == "invalid_request"


def test_the_sign_api_refuses_what_it_should(app: Flask, card: Any) -> None:
    import base64

    rp = register(app, "bank", scopes="openid sign")
    other = register(app, "bank", scopes="openid sign")
    plain = register(app, "bank", scopes="openid")
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {sign_token_for(client, rp)}"}
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + b"\x11" * 32
    created = client.post("/t/bank/api/sign-transactions", headers=bearer,
                          json={"digest": base64.b64encode(digest_info).decode(), "text": "同意書"})
    assert created.status_code == 201 and base64.b64decode(created.get_json()["digest"]) == b"\x11" * 32
    stx = created.get_json()["id"]
    assert client.post("/t/bank/api/sign-transactions", json={"digest": "", "text": "x"}).status_code == 401
    for body, code in (({"digest": base64.b64encode(b"short").decode(), "text": "x"}, "invalid_digest"),
                       ({"digest": base64.b64encode(b"\x00" * 32).decode(), "text": "a\u202eb"}, "invalid_text"),
                       ({"digest": base64.b64encode(b"\x00" * 32).decode(), "text": ""}, "invalid_text")):
        refused = client.post("/t/bank/api/sign-transactions", headers=bearer, json=body)
        assert refused.status_code == 422 and refused.get_json()["error"] == code
    other_bearer = {"Authorization": f"Bearer {sign_token_for(client, other)}"}
    assert client.get(f"/t/bank/api/sign-transactions/{stx}", headers=other_bearer).status_code == 404
    assert plain.post(client, "token", {"grant_type": "client_credentials", "scope": "sign"}).status_code == 400
    assert rp.post(client, "token", {"grant_type": "client_credentials", "scope": "openid"}).status_code == 400
    user_token = tokens(app, rp, card)["access_token"]
    assert client.get(f"/t/bank/api/sign-transactions/{stx}",
                      headers={"Authorization": f"Bearer {user_token}"}).status_code == 403
    # the authorization request: sign and sign_transaction_id go together, and only the client's own
    for params in ({"scope": "openid sign"}, {"sign_transaction_id": stx},
                   {"scope": "openid sign", "sign_transaction_id": "stx_nothing"}):
        answer = callback(start(client, rp, **params).headers["Location"])
        assert answer["error"] == "invalid_request", params
    foreign = callback(start(client, other, scope="openid sign", sign_transaction_id=stx).headers["Location"])
    assert foreign["error"] == "invalid_request"


def test_a_failed_attempt_spends_the_challenge_and_a_retry_gets_another(app: Flask, rp: RP, card: Any) -> None:
    from tests.oidc_helpers import agent_token

    client = app.test_client()
    path = start(client, rp).headers["Location"].removeprefix("http://localhost")
    html = client.get(path).get_data(as_text=True)
    headers = {"X-CSRFToken": csrf_of(html), "Accept": "application/json"}
    challenge = re.search(r'data-challenge="([^"]+)"', html).group(1)
    wrong_origin = client.post(f"{path}/card", headers=headers,
                               json={"token": agent_token(card, challenge, "https://evil.example")})
    assert wrong_origin.status_code == 400 and wrong_origin.get_json()["error"] == "bad_signature"
    again = client.post(f"{path}/card", headers=headers, json={"token": agent_token(card, challenge)})
    assert again.status_code == 400 and again.get_json()["error"] == "no_challenge"
    fresh = client.post(f"{path}/challenge", json={}, headers=headers).get_json()["challenge"]
    assert fresh != challenge
    done = client.post(f"{path}/card", headers=headers, json={"token": agent_token(card, fresh)})
    assert done.status_code == 200 and done.get_json()["redirect"].startswith(REDIRECT_URI)


def test_control_characters_in_an_authorization_request_are_refused_not_a_500(app: Flask, rp: RP) -> None:
    client = app.test_client()
    for name in ("response_type", "redirect_uri", "state", "scope"):
        response = start(client, rp, **{name: "a\x00b"})
        assert response.status_code == 400 and "Location" not in response.headers, name
    pushed = rp.post(client, "par", rp.authorize_params(state="a\nb"), audience=f"{rp.issuer}/par")
    assert pushed.status_code == 400 and pushed.get_json()["error"] == "invalid_request"


def test_a_pushed_request_without_openid_is_refused(app: Flask, rp: RP) -> None:
    pushed = rp.post(app.test_client(), "par", rp.authorize_params(scope="name"), audience=f"{rp.issuer}/par")
    assert pushed.status_code == 400 and pushed.get_json()["error"] == "invalid_scope"


def test_a_malformed_max_age_with_a_session_goes_back_with_an_error_not_a_500(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    log_in(client, rp, card)
    response = start(client, rp, max_age="\u00b2")  # a digit to str.isdigit(), not to int()
    assert response.status_code == 302 and callback(response.headers["Location"])["error"] == "invalid_request"


def test_an_access_token_is_no_id_token_hint(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    body = rp.exchange(client, log_in(client, rp, card)["code"]).get_json()
    refused = start(client, rp, id_token_hint=body["access_token"])
    assert callback(refused.headers["Location"])["error"] == "invalid_request"
    assert "code" in callback(start(client, rp, id_token_hint=body["id_token"]).headers["Location"])


def test_two_refreshes_with_one_token_at_once_end_the_family(app: Flask, card: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from saas.oidc import server

    rp = register(app, "bank", basic=True)
    client = app.test_client()
    body = rp.exchange(client, log_in(client, rp, card)["code"]).get_json()
    form = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    read = server.RefreshGrant.authenticate_refresh_token
    meanwhile: list[Any] = []
    first_read = threading.Event()

    def read_then_wait(grant: Any, value: str) -> Any:
        found = read(grant, value)
        if not first_read.is_set():  # the other request runs between this one's read and its write
            first_read.set()
            db.session.commit()
            other = threading.Thread(target=lambda: meanwhile.append(rp.post(app.test_client(), "token", form)))
            other.start()
            other.join()
        return found

    monkeypatch.setattr(server.RefreshGrant, "authenticate_refresh_token", read_then_wait)
    first = rp.post(client, "token", form)
    monkeypatch.undo()
    assert sorted([first.status_code, meanwhile[0].status_code]) == [200, 400]
    winner = (first if first.status_code == 200 else meanwhile[0]).get_json()
    after = rp.post(client, "token", {"grant_type": "refresh_token", "refresh_token": winner["refresh_token"]})
    assert after.status_code == 400  # a refresh token used twice ends its family


def test_a_narrowed_refresh_narrows_userinfo_and_introspection(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    body = tokens(app, rp, card, scope="openid name")
    narrowed = rp.post(client, "token", {"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                         "scope": "openid"}).get_json()
    info = client.get("/t/bank/userinfo", headers={"Authorization": f"Bearer {narrowed['access_token']}"})
    assert info.status_code == 200 and "name" not in info.get_json()
    introspected = rp.post(client, "introspect", {"token": narrowed["access_token"]},
                           audience=f"{rp.issuer}/introspect").get_json()
    assert introspected["active"] is True and introspected["scope"] == "openid"
    refresh = rp.post(client, "introspect", {"token": narrowed["refresh_token"], "token_type_hint": "refresh_token"},
                      audience=f"{rp.issuer}/introspect").get_json()
    assert refresh["scope"] == "openid name"  # RFC 6749 §6: a refresh token keeps the grant's scope


def test_a_code_issued_before_logout_cannot_be_exchanged_after_it(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    body = rp.exchange(client, log_in(client, rp, card)["code"]).get_json()
    pending = callback(start(client, rp).headers["Location"])["code"]  # answered by the session
    verifier = rp.verifier
    client.get("/t/bank/logout?" + urlencode({"id_token_hint": body["id_token"]}))
    assert "/login/" in start(client, rp).headers["Location"]  # the session is over
    late = rp.exchange(client, pending, verifier=verifier)
    assert late.status_code == 400 and late.get_json()["error"] == "invalid_grant"


def test_a_code_replayed_after_its_lifetime_still_revokes_what_it_granted(app: Flask, rp: RP, card: Any) -> None:
    client = app.test_client()
    result = log_in(client, rp, card)
    first = rp.exchange(client, result["code"]).get_json()
    with clock.frozen(clock.now() + timedelta(seconds=90)):
        replay = rp.exchange(client, result["code"])
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant", replay.get_json()
    refresh = rp.post(client, "token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert refresh.status_code == 400 and refresh.get_json()["error"] == "invalid_grant"


def test_a_client_assertion_with_an_enormous_exp_is_refused_not_a_500(app: Flask, rp: RP) -> None:
    for lifetime in (10**12, 10**20):
        response = rp.exchange(app.test_client(), "x", lifetime=lifetime)
        assert response.get_json()["error"] == "invalid_client" and "one hour" in response.get_json()[
            "error_description"]


def registered_with(app: Flask, **keys: str) -> str:
    from saas.db import tenant_scope
    from saas.oidc import clients

    with app.app_context():
        tenant = tenants.active_tenant("bank")
        with tenant_scope(db.session, tenant.id):
            client, _ = clients.register_client(tenant, name="RP", redirect_uris=[REDIRECT_URI], scopes=["openid"],
                                                auth_method="private_key_jwt", **keys)
            public_id = client.public_id
        db.session.commit()
    return public_id


def test_an_unreachable_jwks_uri_is_an_invalid_client_not_a_500(app: Flask) -> None:
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", {"kid": "k1"})
    rp = RP("bank", registered_with(app, jwks_uri="https://127.0.0.1:1/jwks.json"), key=key)
    response = rp.exchange(app.test_client(), "x")
    assert response.status_code in (400, 401) and response.get_json()["error"] == "invalid_client"
    assert "jwks_uri" in response.get_json()["error_description"]


def test_a_ps256_client_assertion_is_accepted_as_discovery_says(app: Flask, rp: RP, card: Any) -> None:
    import secrets

    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048)
    client_id = registered_with(app, jwks=json.dumps(KeySet([RSAKey.import_key(key.as_dict(private=False))]).as_dict()))
    assert "PS256" in app.test_client().get("/t/bank/.well-known/openid-configuration").get_json()[
        "token_endpoint_auth_signing_alg_values_supported"]
    now = int(time.time())
    assertion = jwt.encode({"alg": "PS256"}, {"iss": client_id, "sub": client_id, "aud": f"{rp.issuer}/token",
                                              "jti": secrets.token_urlsafe(12), "iat": now, "exp": now + 60},
                           key, algorithms=["PS256"])
    response = app.test_client().post("/t/bank/token", data={
        "grant_type": "authorization_code", "code": "unknown", "redirect_uri": REDIRECT_URI, "code_verifier": "x" * 50,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})
    assert response.get_json()["error"] == "invalid_grant"  # authenticated: only the code is unknown


@pytest.mark.redis
def test_with_redis_a_replayed_client_assertion_is_refused_too(committed_url: str, tmp_path: Path,
                                                               redis_url: str) -> None:
    application = make_app(committed_url, tmp_path, REDIS_URL=redis_url)
    with application.app_context():
        tenants.create_tenant(slug="redis-bank", display_name="レディス銀行", kind="bank")
        db.session.commit()
        card = sandbox.issue_card(seed=8)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
    rp = register(application, "redis-bank")
    client = application.test_client()
    jti = f"redis-{time.time_ns()}"
    assert rp.exchange(client, log_in(client, rp, card)["code"], jti=jti).status_code == 200
    replayed = rp.exchange(client, log_in(client, rp, card, prompt="login")["code"], jti=jti)
    assert replayed.status_code == 400 and replayed.get_json()["error"] == "invalid_client"
    from redis import Redis

    from saas.oidc.models import UsedAssertion

    assert Redis.from_url(redis_url).keys("kakehashi:jti:*")  # kept in Redis, not in the database
    with application.app_context():
        assert db.session.scalar(select(func.count()).select_from(UsedAssertion)) == 0
    db.get_database(application).engine.dispose()
