"""The console: sign-up with address verification, sign-in with lockout and TOTP, roles,
invitations, webhook pages, recent authentication, the hash-chained audit log, and
isolation between organisations (another organisation's console or object is a 404)."""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
import pytest
from sqlalchemy import func, select, update

from saas import clock, db
from saas.db import all_tenants, tenant_scope
from saas.events.models import Delivery, Event, WebhookEndpoint
from saas.mail.models import OutgoingMail
from saas.tenants import audit
from saas.tenants.models import AuditEntry, ConsoleUser, Tenant

PASSWORD = "kakehashi bridges rivers at dawn"
ORG = {"organisation": "かけはし信用金庫", "slug": "kk-shinkin", "kind": "bank", "corporate_number": "",
       "name": "山田 花子", "email": "hanako@shinkin.example"}


@pytest.fixture
def client(client: Any) -> Any:
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"  # the messages below are the English ones
    return client


@pytest.fixture
def other_client(app: Any, client: Any) -> Any:
    other = app.test_client()
    other.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return other


def csrf(client: Any, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def post(client: Any, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
    token = csrf(client, kwargs.pop("form_page", path))
    return client.post(path, data={**data, "csrf_token": token}, **kwargs)


def last_link(recipient: str) -> str:
    body = db.session.scalars(select(OutgoingMail.body).where(OutgoingMail.recipient == recipient)
                              .order_by(OutgoingMail.id.desc())).first()
    assert body, f"no mail to {recipient}"
    return re.search(r"https?://\S+", body).group(0)  # type: ignore[union-attr]


def scalar(statement: Any) -> Any:
    """A platform-level read for the test's assertions."""
    with all_tenants(db.session):
        return db.session.scalar(statement)


def sign_up(client: Any, **changes: str) -> Any:
    return post(client, "/console/signup", {**ORG, "password": PASSWORD, **changes})


def verified_owner(client: Any, **changes: str) -> str:
    """Sign an organisation up, confirm the address, sign in; its slug."""
    values = {**ORG, **changes}
    assert sign_up(client, **changes).status_code == 302
    path = last_link(values["email"]).split("localhost", 1)[1]
    assert client.get(path).status_code == 302
    assert log_in(client, values["email"]).status_code == 302
    return values["slug"]


def log_in(client: Any, email: str, password: str = PASSWORD) -> Any:
    return post(client, "/console/login", {"email": email, "password": password})


def test_sign_up_verify_and_sign_in_reaches_the_new_sandbox_organisation(client: Any) -> None:
    response = sign_up(client)
    assert response.status_code == 302 and "/console/signup/sent" in response.headers["Location"]
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == "kk-shinkin"))
    assert tenant is not None and tenant.mode.value == "sandbox"
    refused = log_in(client, ORG["email"])  # not confirmed yet: a new link goes out
    assert refused.status_code == 403 and "Confirm your email address" in refused.get_data(as_text=True)
    link = last_link(ORG["email"])
    assert client.get(link.split("localhost", 1)[1]).status_code == 302
    assert client.get(link.split("localhost", 1)[1]).status_code == 400  # used
    response = log_in(client, ORG["email"])
    assert response.status_code == 302
    home = client.get("/console/", follow_redirects=True)
    page = home.get_data(as_text=True)
    assert home.status_code == 200 and "かけはし信用金庫" in page and "Sandbox" in page
    with all_tenants(db.session):
        assert db.session.scalar(select(AuditEntry.action).where(AuditEntry.tenant_id == tenant.id)) == \
            "organisation.created"


@pytest.mark.parametrize(("changes", "field", "text"), [
    ({"password": "password123"}, "password", "too easy to guess"),
    ({"password": "short"}, "password", "at least 10"),
    ({"email": "not-an-address"}, "email", "Enter an email address"),
    ({"corporate_number": "1234567890123"}, "corporate_number", "check digit"),
    ({"slug": "Bad Slug!"}, "slug", "identifier"),
    ({"slug": "console"}, "slug", "reserved"),
])
def test_bad_sign_up_input_is_refused_next_to_its_field_and_nothing_is_created(
        client: Any, changes: dict[str, str], field: str, text: str) -> None:
    response = sign_up(client, **changes)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="f-{field}-error"' in page and text in page
    assert f'aria-describedby="f-{field}-hint f-{field}-error"' in page or \
        f'aria-describedby=" f-{field}-error"' in page or f'aria-describedby="f-{field}-error"' in page
    assert db.session.scalar(select(ConsoleUser.id)) is None


def test_wrong_passwords_lock_the_account_for_a_while(client: Any) -> None:
    verified_owner(client)
    client.post("/console/logout", data={"csrf_token": csrf(client, "/console/login")})
    for _ in range(5):
        assert log_in(client, ORG["email"], "wrong password here").status_code == 401
    locked = log_in(client, ORG["email"])  # even the right password
    assert locked.status_code == 423 and "locked" in locked.get_data(as_text=True)
    with clock.frozen(clock.now() + __import__("datetime").timedelta(minutes=16)):
        assert log_in(client, ORG["email"]).status_code == 302


def test_an_unknown_address_and_a_wrong_password_answer_alike(client: Any) -> None:
    verified_owner(client)
    client.post("/console/logout", data={"csrf_token": csrf(client, "/console/login")})
    unknown = log_in(client, "nobody@example.jp").get_data(as_text=True)
    wrong = log_in(client, ORG["email"], "not the password at all").get_data(as_text=True)
    message = "The email address or password is wrong."
    assert message in unknown and message in wrong


def test_two_step_sign_in_with_totp_and_a_code_is_accepted_once(client: Any) -> None:
    verified_owner(client)
    started = post(client, "/console/account/security", {"action": "start"})
    secret = re.search(r'<code class="secret"[^>]*>([A-Z2-7]+)</code>', started.get_data(as_text=True)).group(1)
    totp = pyotp.TOTP(secret)
    wrong = post(client, "/console/account/security", {"action": "confirm", "code": "000000"})
    assert wrong.status_code == 422 and secret in wrong.get_data(as_text=True)  # shown again
    assert post(client, "/console/account/security", {"action": "confirm", "code": totp.now()}).status_code == 302
    client.post("/console/logout", data={"csrf_token": csrf(client, "/console/login")})
    first = log_in(client, ORG["email"])
    assert "/console/login/code" in first.headers["Location"]
    assert client.get("/console/").status_code == 302  # not signed in until the code
    with clock.frozen(clock.now() + __import__("datetime").timedelta(seconds=30)):
        code = totp.at(clock.now())
        assert post(client, "/console/login/code", {"code": code}).status_code == 302
        client.post("/console/logout", data={"csrf_token": csrf(client, "/console/login")})
        log_in(client, ORG["email"])
        replay = post(client, "/console/login/code", {"code": code})
    assert replay.status_code == 401  # the same code twice


def test_signing_out_ends_every_copy_of_the_session(client: Any, app: Any) -> None:
    slug = verified_owner(client)
    copied = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    assert client.post("/console/logout", data={"csrf_token": csrf(client, "/console/login")}).status_code == 302
    replayed = app.test_client()
    replayed.set_cookie(app.config["SESSION_COOKIE_NAME"], copied)
    response = replayed.get(f"/t/{slug}/console/webhooks")
    assert response.status_code == 302 and response.headers["Location"].startswith("/console/login")


def test_a_page_refreshing_itself_does_not_keep_the_session_alive(client: Any) -> None:
    from saas.tenants.console import POLL_HEADER, SESSION_IDLE_SECONDS

    slug = verified_owner(client)
    add_webhook(client, slug)
    endpoint = scalar(select(WebhookEndpoint))
    page = f"/t/{slug}/console/webhooks/{endpoint.public_id}"
    assert POLL_HEADER in client.get(page).get_data(as_text=True)  # the delivery log says it polls
    idle_since = int(time.time()) - SESSION_IDLE_SECONDS + 60
    with client.session_transaction() as session:
        session["console_seen"] = idle_since
    polled = client.get(page, headers={"HX-Request": "true", POLL_HEADER: "1"})
    assert polled.status_code == 200
    with client.session_transaction() as session:
        assert session["console_seen"] == idle_since  # no activity of the user's
        session["console_seen"] = idle_since - 120
    ended = client.get(page, headers={"HX-Request": "true", POLL_HEADER: "1"})
    # The whole page goes to sign-in, not the sign-in form into the delivery log.
    assert ended.status_code == 204 and ended.headers["HX-Redirect"].startswith("/console/login")


def test_a_session_ends_eight_hours_after_sign_in_however_busy(client: Any, app: Any) -> None:
    slug = verified_owner(client)
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    with client.session_transaction() as session:
        session["console_started"] = int(time.time()) - lifetime + 60
    assert client.get(f"/t/{slug}/console/").status_code == 200
    with client.session_transaction() as session:
        session["console_started"] = int(time.time()) - lifetime - 1
    response = client.get(f"/t/{slug}/console/")  # the user was active a moment ago
    assert response.status_code == 302 and response.headers["Location"].startswith("/console/login")


def add_webhook(client: Any, slug: str, url: str = "https://hooks.example/kakehashi") -> Any:
    path = f"/t/{slug}/console/webhooks/new"
    return post(client, path, {"url": url, "description": "CRM", "event_types": ["*"]})


def test_a_webhook_is_added_with_its_secret_shown_once_and_pinged(client: Any) -> None:
    slug = verified_owner(client)
    created = add_webhook(client, slug)
    page = created.get_data(as_text=True)
    assert created.status_code == 200 and "shown only this once" in page
    assert re.search(r"whsec_[A-Za-z0-9_-]{20,}", page)
    endpoint = scalar(select(WebhookEndpoint))
    assert endpoint is not None
    detail = client.get(f"/t/{slug}/console/webhooks/{endpoint.public_id}").get_data(as_text=True)
    assert "whsec_" not in detail  # never again
    pinged = post(client, f"/t/{slug}/console/webhooks/{endpoint.public_id}/ping", {},
                  form_page=f"/t/{slug}/console/webhooks/{endpoint.public_id}")
    assert pinged.status_code == 302
    with all_tenants(db.session):
        assert db.session.scalar(select(Event.type)) == "webhook.ping"
        assert db.session.scalar(select(Delivery.endpoint_id)) == endpoint.id
    detail = client.get(f"/t/{slug}/console/webhooks/{endpoint.public_id}").get_data(as_text=True)
    assert "webhook.ping" in detail
    with all_tenants(db.session):
        actions = list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))
    assert actions[-2:] == ["webhook.created", "webhook.pinged"]


def test_a_bad_webhook_url_is_refused_next_to_the_field(client: Any) -> None:
    slug = verified_owner(client)
    response = add_webhook(client, slug, "ftp://hooks.example/x")
    assert response.status_code == 422 and 'id="f-url-error"' in response.get_data(as_text=True)
    assert scalar(select(WebhookEndpoint.id)) is None


def test_sensitive_actions_ask_for_the_password_again(client: Any) -> None:
    slug = verified_owner(client)
    add_webhook(client, slug)
    endpoint = scalar(select(WebhookEndpoint))
    assert endpoint is not None
    with client.session_transaction() as session:
        session["console_auth_at"] = int(time.time()) - 3600
    detail = f"/t/{slug}/console/webhooks/{endpoint.public_id}"
    response = post(client, f"{detail}/rotate", {}, form_page=detail, headers={"Referer": f"http://localhost{detail}"})
    assert response.status_code == 302 and "/console/reauthenticate" in response.headers["Location"]
    again = post(client, "/console/reauthenticate", {"password": PASSWORD, "next": detail},
                 form_page="/console/reauthenticate")
    assert again.status_code == 302 and again.headers["Location"].endswith(detail)
    rotated = post(client, f"{detail}/rotate", {}, form_page=detail)
    assert rotated.status_code == 200 and "whsec_" in rotated.get_data(as_text=True)


def test_changing_webhooks_clients_and_keys_asks_for_the_password_again(client: Any) -> None:
    from saas.oidc.models import OIDCClient
    from saas.tenants.models import ApiKey

    slug = verified_owner(client)
    base = f"/t/{slug}/console"
    add_webhook(client, slug)
    form = {"name": "c", "redirect_uris": "https://members.example/cb", "auth_method": "client_secret_basic"}
    post(client, f"{base}/clients/new", form)
    make_key(client, slug, ["webhooks:read"])
    endpoint, found, key = scalar(select(WebhookEndpoint)), scalar(select(OIDCClient)), scalar(select(ApiKey))
    token = csrf(client, f"{base}/api-keys")
    with client.session_transaction() as session:
        session["console_auth_at"] = int(time.time()) - 3600

    def asks(response: Any) -> bool:
        return response.status_code == 302 and "/console/reauthenticate" in response.headers["Location"]

    assert asks(client.get(f"{base}/webhooks/new"))  # before the form is filled in
    assert asks(client.post(f"{base}/webhooks/new", data={"url": "https://attacker.example/h",
                                                          "event_types": ["*"], "csrf_token": token}))
    assert asks(client.post(f"{base}/webhooks/{endpoint.public_id}/enabled", data={"enabled": "0",
                                                                                   "csrf_token": token}))
    assert asks(client.get(f"{base}/clients/new"))
    assert asks(client.post(f"{base}/clients/new", data={**form, "csrf_token": token}))
    assert asks(client.post(f"{base}/clients/{found.public_id}",
                            data={**form, "redirect_uris": "https://attacker.example/cb", "csrf_token": token}))
    assert asks(client.post(f"{base}/api-keys/{key.public_id}/revoke", data={"csrf_token": token}))
    assert client.get(f"{base}/clients/{found.public_id}").status_code == 200  # reading asks nothing
    db.session.expire_all()
    assert scalar(select(func.count()).select_from(WebhookEndpoint)) == 1
    assert scalar(select(WebhookEndpoint.enabled)) is True
    assert scalar(select(func.count()).select_from(OIDCClient)) == 1
    assert scalar(select(OIDCClient.redirect_uris)) == '["https://members.example/cb"]'
    assert scalar(select(ApiKey.revoked_at)) is None


def test_wrong_passwords_at_reauthentication_count_towards_the_lockout(client: Any) -> None:
    # A stolen session must not become a way to guess the password without limit.
    verified_owner(client)
    for _ in range(5):
        wrong = post(client, "/console/reauthenticate", {"password": "not the password at all"},
                     form_page="/console/reauthenticate")
        assert wrong.status_code == 401 and "That did not match" in wrong.get_data(as_text=True)
    locked = post(client, "/console/reauthenticate", {"password": PASSWORD}, form_page="/console/reauthenticate")
    assert locked.status_code == 423 and "locked" in locked.get_data(as_text=True)
    user = scalar(select(ConsoleUser).where(ConsoleUser.email == ORG["email"]))
    assert user.locked_until is not None
    assert log_in(client, ORG["email"]).status_code == 423  # the same lock as the sign-in page's


def test_an_invited_auditor_reads_but_cannot_change(client: Any, other_client: Any) -> None:
    slug = verified_owner(client)
    invited = post(client, f"/t/{slug}/console/members", {"email": "taro@shinkin.example", "role": "auditor"})
    assert invited.status_code == 302
    link = last_link("taro@shinkin.example").split("localhost", 1)[1]
    other = other_client
    joined = post(other, link, {"name": "鈴木 太郎", "password": "another long phrase for taro"})
    assert joined.status_code == 302 and f"/t/{slug}/console/" in joined.headers["Location"]
    assert other.get(f"/t/{slug}/console/webhooks").status_code == 200
    refused = add_webhook(other, slug)
    assert refused.status_code == 403 and "may look but not change" in refused.get_data(as_text=True)
    assert "Add an endpoint" not in other.get(f"/t/{slug}/console/webhooks").get_data(as_text=True)
    members = other.get(f"/t/{slug}/console/members").get_data(as_text=True)
    assert "鈴木 太郎" in members and "山田 花子" in members
    assert other.get(link).status_code == 404  # used


def invitation_path(email: str) -> str:
    return last_link(email).split("localhost", 1)[1]


def test_a_withdrawn_invitation_no_longer_works(client: Any, other_client: Any) -> None:
    slug = verified_owner(client)
    members = f"/t/{slug}/console/members"
    post(client, members, {"email": "bob@shinkin.example", "role": "developer"})
    link = invitation_path("bob@shinkin.example")
    page = client.get(members).get_data(as_text=True)
    assert "Invitations waiting for an answer" in page and "bob@shinkin.example" in page
    withdraw = re.search(r'action="([^"]+/withdraw)"', page).group(1)  # type: ignore[union-attr]
    verified_owner(other_client, organisation="よその病院", slug="yoso-clinic", kind="hospital", email="a@yoso.example")
    theirs = withdraw.replace(f"/t/{slug}/", "/t/yoso-clinic/")
    assert post(other_client, theirs, {}, form_page="/t/yoso-clinic/console/members").status_code == 404
    assert other_client.get(link).status_code == 200  # still open
    assert post(client, withdraw, {}, form_page=members).status_code == 302
    assert other_client.get(link).status_code == 404
    assert "Invitations waiting for an answer" not in client.get(members).get_data(as_text=True)
    assert post(client, withdraw, {}, form_page=members).status_code == 404  # once
    with all_tenants(db.session):
        entry = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert entry.action == "member.invitation_revoked" and "bob@shinkin.example" in entry.details


def test_inviting_an_address_again_leaves_only_the_newest_link_working(client: Any, other_client: Any) -> None:
    slug = verified_owner(client)
    post(client, f"/t/{slug}/console/members", {"email": "bob@shinkin.example", "role": "admin"})
    first = invitation_path("bob@shinkin.example")
    post(client, f"/t/{slug}/console/members", {"email": "bob@shinkin.example", "role": "auditor"})
    second = invitation_path("bob@shinkin.example")
    assert other_client.get(first).status_code == 404  # an admin's link, replaced by an auditor's
    assert other_client.get(second).status_code == 200


def test_removing_a_member_withdraws_the_invitations_they_still_hold(client: Any, other_client: Any) -> None:
    import hashlib
    from datetime import timedelta

    from saas.tenants.models import Invitation, Role

    slug = verified_owner(client)
    members = f"/t/{slug}/console/members"
    post(client, members, {"email": "bob@shinkin.example", "role": "admin"})
    post(other_client, invitation_path("bob@shinkin.example"),
         {"name": "Bob", "password": "another long phrase for bob"})
    tenant = scalar(select(Tenant).where(Tenant.slug == slug))
    with tenant_scope(db.session, tenant.id):  # an invitation of his from before he joined, never used
        db.session.add(Invitation(tenant_id=tenant.id, email="bob@shinkin.example", role=Role.ADMIN,
                                  token_hash=hashlib.sha256(b"left-over").hexdigest(), created_at=clock.now(),
                                  expires_at=clock.now() + timedelta(days=7)))
    db.session.commit()
    bob = scalar(select(ConsoleUser.public_id).where(ConsoleUser.email == "bob@shinkin.example"))
    assert post(client, f"{members}/{bob}", {"role": "remove"}, form_page=members).status_code == 302
    assert post(other_client, "/console/invitations/left-over", {}).status_code == 404  # no way back in
    assert other_client.get(f"/t/{slug}/console/").status_code == 404


def test_an_invited_person_with_an_account_is_asked_to_sign_in(client: Any, other_client: Any) -> None:
    slug = verified_owner(client)
    verified_owner(other_client, organisation="よその病院", slug="yoso-clinic", kind="hospital", email="a@yoso.example")
    other_client.post("/console/logout", data={"csrf_token": csrf(other_client, "/console/login")})
    post(client, f"/t/{slug}/console/members", {"email": "a@yoso.example", "role": "developer"})
    link = invitation_path("a@yoso.example")
    response = post(other_client, link, {"name": "A", "password": "another long phrase for a"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and 'role="alert"' in page and "sign in to accept" in page
    assert f'href="/console/login?next={link}"' in page and 'name="password"' not in page
    assert "as Developer." in page  # the role's name, not its value


def test_another_organisations_console_and_objects_are_not_found(client: Any, other_client: Any) -> None:
    slug = verified_owner(client)
    add_webhook(client, slug)
    endpoint = scalar(select(WebhookEndpoint))
    assert endpoint is not None
    other = other_client
    verified_owner(other, organisation="よその病院", slug="yoso-clinic", kind="hospital", email="a@yoso.example")
    assert other.get(f"/t/{slug}/console/").status_code == 404
    assert other.get(f"/t/{slug}/console/webhooks/{endpoint.public_id}").status_code == 404
    assert other.get(f"/t/yoso-clinic/console/webhooks/{endpoint.public_id}").status_code == 404
    ping = post(other, f"/t/yoso-clinic/console/webhooks/{endpoint.public_id}/ping", {},
                form_page="/t/yoso-clinic/console/webhooks")
    assert ping.status_code == 404
    assert client.get("/t/yoso-clinic/console/audit").status_code == 404
    assert client.get(f"/t/{slug}/console/audit").status_code == 200


def test_the_console_needs_a_signed_in_user(client: Any, other_client: Any) -> None:
    slug = verified_owner(client)
    response = other_client.get(f"/t/{slug}/console/webhooks")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/console/login?next=/t/{slug}/console/webhooks"
    assert other_client.get("/t/no-such-org/console/webhooks").status_code == 404
    assert other_client.get("/console/").headers["Location"].startswith("/console/login")


def test_the_audit_chain_detects_an_edited_or_deleted_entry(client: Any) -> None:
    slug = verified_owner(client)
    add_webhook(client, slug)
    add_webhook(client, slug, "https://hooks.example/second")
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
    assert tenant is not None
    assert audit.verify(tenant) == []
    with tenant_scope(db.session, tenant.id):
        db.session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(actor="someone else"))
    assert [b.seq for b in audit.verify(tenant)] == [2]
    with tenant_scope(db.session, tenant.id):
        db.session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(
            actor=db.session.scalar(select(AuditEntry.actor).where(AuditEntry.seq == 1))))
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.seq == 2))
        db.session.delete(entry)
        db.session.flush()
    problems = audit.verify(tenant)
    assert problems and problems[0].seq == 3 and "missing" in problems[0].problem


def test_details_edited_into_something_not_json_break_the_chain_and_the_check_goes_on(
        client: Any, other_client: Any, app: Any) -> None:
    slug = verified_owner(client)
    add_webhook(client, slug)
    verified_owner(other_client, organisation="よその病院", slug="yoso-clinic", kind="hospital", email="a@yoso.example")
    tenant = scalar(select(Tenant).where(Tenant.slug == slug))
    with tenant_scope(db.session, tenant.id):
        db.session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(details="not json"))
    assert [(b.seq, b.problem) for b in audit.verify(tenant)] == [(2, "was changed after it was written")]
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1 and f"{slug}: entry 2 was changed" in result.output
    assert "yoso-clinic: intact" in result.output


def test_the_audit_chain_detects_its_newest_entries_removed(client: Any) -> None:
    from sqlalchemy import delete

    slug = verified_owner(client)
    add_webhook(client, slug)
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
    assert audit.verify(tenant) == [] and tenant.audit_seq == 2
    with tenant_scope(db.session, tenant.id):
        db.session.execute(delete(AuditEntry).where(AuditEntry.seq == 2))  # a clean cut at the end
    [problem] = audit.verify(tenant)
    assert "newest entries were removed" in problem.problem


def test_the_csv_download_follows_the_audit_filter(client: Any) -> None:
    slug = verified_owner(client)
    add_webhook(client, slug)
    rows = client.get(f"/t/{slug}/console/audit?action=webhook.created", headers={"HX-Request": "true"})
    assert f'href="/t/{slug}/console/audit.csv?action=webhook.created"' in rows.get_data(as_text=True)


def test_the_development_mail_viewer_shows_the_outbox(client: Any) -> None:
    sign_up(client)
    page = client.get("/console/dev/mail").get_data(as_text=True)
    assert ORG["email"] in page and "/console/verify/" in page


def client_jwks() -> str:
    import json

    from joserfc.jwk import ECKey, KeySet

    return json.dumps(KeySet([ECKey.import_key(ECKey.generate_key("P-256").as_dict(private=False))]).as_dict())


def test_sign_in_clients_are_added_edited_and_checked(client: Any) -> None:
    from saas.oidc.models import OIDCClient

    slug = verified_owner(client)
    form = {"name": "会員サイト", "redirect_uris": "https://members.example/callback\n",
            "scopes": ["name", "birthdate"], "auth_method": "private_key_jwt", "jwks": client_jwks()}
    created = post(client, f"/t/{slug}/console/clients/new", form)
    client_id = re.search(r'id="client-id">(cli_[a-z0-9]+)<', created.get_data(as_text=True)).group(1)
    found = scalar(select(OIDCClient).where(OIDCClient.public_id == client_id))
    assert found is not None and found.scopes == '["birthdate", "name", "openid"]'
    path = f"/t/{slug}/console/clients/{client_id}"
    bad = post(client, path, {**form, "redirect_uris": "https://members.example/cb#frag"})
    assert bad.status_code == 422 and 'id="f-redirect_uris-error"' in bad.get_data(as_text=True)
    saved = post(client, path, {**form, "redirect_uris": "https://members.example/cb2", "scopes": ["address"]})
    assert saved.status_code == 302
    found = scalar(select(OIDCClient).where(OIDCClient.public_id == client_id))
    assert found.redirect_uris == '["https://members.example/cb2"]' and "address" in found.scopes
    with all_tenants(db.session):
        actions = list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))
    assert actions[-2:] == ["oidc_client.created", "oidc_client.updated"]


def test_a_sandbox_secret_client_sees_its_secret_once(client: Any) -> None:
    from saas.oidc.models import OIDCClient

    slug = verified_owner(client)
    created = post(client, f"/t/{slug}/console/clients/new", {
        "name": "Sandbox app", "redirect_uris": "http://127.0.0.1:8000/cb", "auth_method": "client_secret_basic"})
    page = created.get_data(as_text=True)
    secret = re.search(r'id="secret">([^<]+)<', page).group(1)
    found = scalar(select(OIDCClient))
    assert found.secret_hash and secret not in found.secret_hash
    assert secret not in client.get(f"/t/{slug}/console/clients/{found.public_id}").get_data(as_text=True)


def test_rotating_a_signing_key_keeps_the_old_one_published(client: Any) -> None:
    from saas.oidc.models import KeyStatus, SigningKey

    slug = verified_owner(client)
    client.get(f"/t/{slug}/console/clients")  # the keys are made on first use
    rotated = post(client, f"/t/{slug}/console/signing-keys/ES256/rotate", {}, form_page=f"/t/{slug}/console/clients")
    assert rotated.status_code == 302
    with all_tenants(db.session):
        states = sorted(k.status.value for k in db.session.scalars(select(SigningKey).where(SigningKey.alg == "ES256")))
    assert states == [KeyStatus.ACTIVE.value, KeyStatus.RETIRING.value]
    assert len(client.get(f"/t/{slug}/jwks.json").get_json()["keys"]) == 3


def test_another_organisations_client_is_not_found(client: Any, other_client: Any) -> None:
    slug = verified_owner(client)
    created = post(client, f"/t/{slug}/console/clients/new", {
        "name": "Sandbox app", "redirect_uris": "http://127.0.0.1:8000/cb", "auth_method": "client_secret_basic"})
    client_id = re.search(r'id="client-id">(cli_[a-z0-9]+)<', created.get_data(as_text=True)).group(1)
    verified_owner(other_client, organisation="よその病院", slug="yoso-clinic", kind="hospital", email="a@yoso.example")
    assert other_client.get(f"/t/yoso-clinic/console/clients/{client_id}").status_code == 404
    assert other_client.get(f"/t/{slug}/console/clients/{client_id}").status_code == 404


def make_key(client: Any, slug: str, scopes: list[str], name: str = "CRM") -> str:
    page = post(client, f"/t/{slug}/console/api-keys", {"name": name, "scopes": scopes}).get_data(as_text=True)
    return re.search(r'id="api-key">(kk_test_[A-Za-z0-9_-]+)<', page).group(1)  # type: ignore[union-attr]


def test_the_webhooks_api_works_with_a_scoped_key_and_logs_every_call(client: Any, other_client: Any) -> None:
    from saas.tenants.models import ApiKey, ApiRequest

    slug = verified_owner(client)
    key = make_key(client, slug, ["webhooks:read", "webhooks:write"])
    assert key.startswith("kk_test_")
    stored = scalar(select(ApiKey))
    assert stored.key_hash != key and key not in stored.hint
    auth = {"Authorization": f"Bearer {key}", "Accept-Language": "en"}
    api = f"/t/{slug}/api/webhooks"
    created = client.post(api, json={"url": "https://hooks.example/a", "event_types": ["oidc.session.ended"]},
                          headers=auth)
    assert created.status_code == 201 and created.get_json()["secret"].startswith("whsec_")
    endpoint_id = created.get_json()["id"]
    assert client.get(api, headers=auth).get_json()["data"][0]["id"] == endpoint_id
    assert "secret" not in client.get(f"{api}/{endpoint_id}", headers=auth).get_json()
    bad = client.post(api, json={"url": "ftp://hooks.example/x", "event_types": ["*"]},
                      headers=auth)
    assert bad.status_code == 422 and bad.get_json()["error"] == "invalid_url" and bad.get_json()["field"] == "url"
    patched = client.patch(f"{api}/{endpoint_id}", json={"enabled": False}, headers=auth)
    assert patched.status_code == 200 and patched.get_json()["enabled"] is False
    assert client.post(f"{api}/{endpoint_id}/ping", headers=auth).status_code == 202
    [delivery] = client.get(f"{api}/{endpoint_id}/deliveries", headers=auth).get_json()["data"]
    assert delivery["type"] == "webhook.ping" and delivery["status"] == "pending"
    assert client.delete(f"{api}/{endpoint_id}", headers=auth).status_code == 204
    assert client.get(f"{api}/{endpoint_id}", headers=auth).status_code == 404
    with all_tenants(db.session):
        logged = list(db.session.scalars(select(ApiRequest.status).order_by(ApiRequest.id)))
        actors = list(db.session.scalars(select(AuditEntry.actor).where(AuditEntry.action == "webhook.created")))
    assert logged == [201, 200, 200, 422, 200, 202, 200, 204, 404]  # refused calls too
    assert actors[0].startswith(stored.public_id)
    page = client.get(f"/t/{slug}/console/api-keys/{stored.public_id}").get_data(as_text=True)
    assert f"POST {api}" in page


def test_a_keys_last_use_is_kept_to_the_minute(client: Any) -> None:
    from datetime import timedelta

    from saas.tenants.models import ApiKey

    slug = verified_owner(client)
    auth = {"Authorization": f"Bearer {make_key(client, slug, ['webhooks:read'])}"}
    api = f"/t/{slug}/api/webhooks"

    def last_used() -> Any:
        db.session.expire_all()
        return scalar(select(ApiKey.last_used_at))

    assert last_used() is None
    start = clock.now()
    with clock.frozen(start):
        client.get(api, headers=auth)
    assert last_used() == start
    with clock.frozen(start + timedelta(seconds=30)):
        client.get(api, headers=auth)
    assert last_used() == start  # no write for every call
    with clock.frozen(start + timedelta(seconds=61)):
        client.get(api, headers=auth)
    assert last_used() == start + timedelta(seconds=61)


def test_api_keys_are_scoped_revocable_and_bound_to_their_organisation(client: Any, other_client: Any) -> None:
    from saas.tenants.models import ApiKey

    slug = verified_owner(client)
    reader = make_key(client, slug, ["webhooks:read"], "reader")
    api = f"/t/{slug}/api/webhooks"
    refused = client.post(api, json={"url": "https://hooks.example/a"}, headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403 and refused.get_json()["error"] == "insufficient_scope"
    assert client.get(api).status_code == 401
    assert client.get(api, headers={"Authorization": "Bearer kk_test_nonsense"}).get_json()["error"] == \
        "invalid_api_key"
    verified_owner(other_client, organisation="よその病院", slug="yoso-clinic", kind="hospital", email="a@yoso.example")
    theirs = make_key(other_client, "yoso-clinic", ["webhooks:read", "webhooks:write"])
    assert client.get(api, headers={"Authorization": f"Bearer {theirs}"}).status_code == 401  # not this org's key
    created = other_client.post("/t/yoso-clinic/api/webhooks", json={"url": "https://yoso.example/h"},
                                headers={"Authorization": f"Bearer {theirs}"}).get_json()
    assert client.get(f"{api}/{created['id']}", headers={"Authorization": f"Bearer {reader}"}).status_code == 404
    key_id = scalar(select(ApiKey.public_id).where(ApiKey.name == "reader"))
    assert post(client, f"/t/{slug}/console/api-keys/{key_id}/revoke", {},
                form_page=f"/t/{slug}/console/api-keys").status_code == 302
    assert client.get(api, headers={"Authorization": f"Bearer {reader}"}).status_code == 401
    assert other_client.get(f"/t/{slug}/console/api-keys/{key_id}").status_code == 404


def test_changing_an_endpoint_through_the_api_refuses_values_of_the_wrong_type(client: Any) -> None:
    slug = verified_owner(client)
    auth = {"Authorization": f"Bearer {make_key(client, slug, ['webhooks:read', 'webhooks:write'])}"}
    api = f"/t/{slug}/api/webhooks"
    created = client.post(api, json={"url": "https://hooks.example/a", "event_types": ["oidc.session.ended"]},
                          headers=auth).get_json()
    for body, code in (({"description": 5}, "invalid_description"), ({"url": 5}, "invalid_url"),
                       ({"url": ["https://hooks.example/b"]}, "invalid_url"),
                       ({"event_types": 5}, "invalid_event_types"),
                       ({"event_types": "*"}, "invalid_event_types")):  # not ["*"], one character at a time
        refused = client.patch(f"{api}/{created['id']}", json=body, headers=auth)
        answer = refused.get_json()
        assert refused.status_code == 422 and answer["error"] == code, body
        assert answer["field"] == next(iter(body)) and answer["message"]
    unchanged = client.get(f"{api}/{created['id']}", headers=auth).get_json()
    assert unchanged["url"] == "https://hooks.example/a" and unchanged["event_types"] == ["oidc.session.ended"]
    refused = client.post(api, json={"url": "https://hooks.example/b", "description": 5}, headers=auth)
    assert refused.status_code == 422 and refused.get_json()["error"] == "invalid_description"


def test_a_key_without_scopes_is_refused_next_to_the_choices(client: Any) -> None:
    slug = verified_owner(client)
    refused = post(client, f"/t/{slug}/console/api-keys", {"name": "CRM"})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422 and '<fieldset aria-describedby="f-scopes-error">' in page
    assert 'id="f-scopes-error"' in page


def test_an_expired_key_is_refused(client: Any) -> None:
    import datetime as dt

    slug = verified_owner(client)
    tomorrow = (clock.now() + dt.timedelta(days=1)).date().isoformat()
    page = post(client, f"/t/{slug}/console/api-keys", {"name": "short-lived", "scopes": ["webhooks:read"],
                                                        "expires": tomorrow}).get_data(as_text=True)
    key = re.search(r'id="api-key">(kk_test_[A-Za-z0-9_-]+)<', page).group(1)
    api = f"/t/{slug}/api/webhooks"
    assert client.get(api, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    with clock.frozen(clock.now() + dt.timedelta(days=3)):
        assert client.get(api, headers={"Authorization": f"Bearer {key}"}).status_code == 401
    past = post(client, f"/t/{slug}/console/api-keys", {"name": "x", "scopes": ["webhooks:read"],
                                                        "expires": "2020-01-01"})
    assert past.status_code == 422 and 'id="f-expires-error"' in past.get_data(as_text=True)


def test_the_audit_log_downloads_as_csv_and_the_command_verifies_the_chain(committed_url: str, tmp_path: Any) -> None:
    # Committed data: the CSV streams from a session of its own, after the request's has ended.
    from tests.conftest import make_app

    app = make_app(committed_url, tmp_path)
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    with app.app_context():
        check_csv_and_chain(app, client)
    db.get_database(app).engine.dispose()


def check_csv_and_chain(app: Any, client: Any) -> None:
    import csv
    import io

    slug = verified_owner(client)
    add_webhook(client, slug)
    response = client.get(f"/t/{slug}/console/audit.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert [r["action"] for r in rows] == ["organisation.created", "webhook.created", "audit.exported"]
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    only = list(csv.DictReader(io.StringIO(client.get(f"/t/{slug}/console/audit.csv?action=webhook.created")
                                           .get_data(as_text=True).lstrip("\ufeff"))))
    assert [r["action"] for r in only] == ["webhook.created"]
    runner = app.test_cli_runner()
    intact = runner.invoke(args=["audit", "verify", "--tenant", slug])
    assert intact.exit_code == 0 and f"{slug}: intact" in intact.output
    tenant = scalar(select(Tenant).where(Tenant.slug == slug))
    with tenant_scope(db.session, tenant.id):
        db.session.execute(update(AuditEntry).where(AuditEntry.seq == 1).values(ip="198.51.100.7"))
    db.session.commit()
    broken = runner.invoke(args=["audit", "verify", "--tenant", slug])
    assert broken.exit_code == 1 and "entry 1 was changed" in broken.output and "audit_chain_broken" in broken.output


def test_an_owner_asks_to_go_live_and_an_operator_rejects_then_approves(client: Any, other_client: Any,
                                                                       app: Any) -> None:
    slug = verified_owner(client)
    key = make_key(client, slug, ["webhooks:read"])
    short = post(client, f"/t/{slug}/console/live", {"use_case": "login"})
    assert short.status_code == 422 and 'id="f-use_case-error"' in short.get_data(as_text=True)
    use_case = "Members of our credit union log in to internet banking; about 40,000 people."
    assert post(client, f"/t/{slug}/console/live", {"use_case": use_case}).status_code == 302
    again = post(client, f"/t/{slug}/console/live", {"use_case": use_case})
    assert again.status_code == 422 and "waiting for review" in again.get_data(as_text=True)

    verified_owner(other_client, organisation="運営", slug="kk-ops", kind="other", email="ops@kakehashi.example")
    assert other_client.get("/console/operator").status_code == 404  # not an operator yet
    assert app.test_cli_runner().invoke(args=["operator", "grant", "ops@kakehashi.example"]).exit_code == 0
    page = other_client.get("/console/operator").get_data(as_text=True)
    assert use_case in page
    request_id = int(re.search(r'name="request" value="(\d+)"', page).group(1))
    no_reason = post(other_client, "/console/operator", {"request": request_id, "decision": "reject", "reason": ""})
    assert no_reason.status_code == 422 and "Say why" in no_reason.get_data(as_text=True)
    rejected = post(other_client, "/console/operator", {"request": request_id, "decision": "reject",
                                                        "reason": "Tell us which branch runs it."})
    assert rejected.status_code == 302
    assert "Tell us which branch runs it." in db.session.scalars(
        select(OutgoingMail.body).where(OutgoingMail.recipient == ORG["email"]).order_by(OutgoingMail.id.desc())).first()
    history = client.get(f"/t/{slug}/console/live").get_data(as_text=True)
    assert "Tell us which branch runs it." in history

    post(client, f"/t/{slug}/console/live", {"use_case": use_case + " Run by the Kyoto branch."})
    page = other_client.get("/console/operator").get_data(as_text=True)
    request_id = int(re.search(r'name="request" value="(\d+)"', page).group(1))
    assert post(other_client, "/console/operator", {"request": request_id, "decision": "approve",
                                                    "reason": ""}).status_code == 302
    tenant = scalar(select(Tenant).where(Tenant.slug == slug))
    assert tenant.mode.value == "live"
    with all_tenants(db.session):
        assert db.session.scalar(select(Event.type).where(Event.tenant_id == tenant.id)) == "tenant.mode_changed"
        actions = list(db.session.scalars(select(AuditEntry.action).where(AuditEntry.tenant_id == tenant.id)))
    assert actions[-1] == "live_mode.approved"
    refused = client.get(f"/t/{slug}/api/webhooks", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401 and refused.get_json()["error"] == "wrong_mode_key"
    page = post(client, f"/t/{slug}/console/api-keys", {"name": "live", "scopes": ["webhooks:read"]})
    live_key = re.search(r'id="api-key">(kk_live_[A-Za-z0-9_-]+)<', page.get_data(as_text=True)).group(1)
    assert client.get(f"/t/{slug}/api/webhooks", headers={"Authorization": f"Bearer {live_key}"}).status_code == 200


def test_the_dashboard_charts_logins_per_day_client_and_failure(client: Any) -> None:
    from saas.oidc import clients as oidc_clients
    from saas.oidc import stats

    slug = verified_owner(client)
    tenant = scalar(select(Tenant).where(Tenant.slug == slug))
    with tenant_scope(db.session, tenant.id):
        rp, _ = oidc_clients.register_client(tenant, name="会員サイト", redirect_uris=["https://m.example/cb"],
                                             scopes=["openid"], auth_method="client_secret_basic")
        for outcome in ("success", "success", "success", "expired", "revoked:keyCompromise"):
            stats.count(tenant.id, rp.id, outcome)
    page = client.get(f"/t/{slug}/console/").get_data(as_text=True)
    assert '<svg viewBox="0 0 640 200" role="img" aria-labelledby="logins-chart"' in page
    assert "会員サイト" in page and "Certificate expired" in page and "Certificate revoked" in page
    numbers = page.split("<summary>", 1)[1]
    assert "<td>3</td><td>2</td>" in numbers  # today: 3 logged in, 2 failed


def test_admins_change_roles_and_remove_members_but_an_organisation_keeps_an_owner(
        client: Any, other_client: Any) -> None:
    from saas.tenants.models import Membership

    slug = verified_owner(client)
    post(client, f"/t/{slug}/console/members", {"email": "taro@shinkin.example", "role": "developer"})
    link = last_link("taro@shinkin.example").split("localhost", 1)[1]
    post(other_client, link, {"name": "鈴木 太郎", "password": "another long phrase for taro"})
    owner_id = scalar(select(ConsoleUser.public_id).where(ConsoleUser.email == ORG["email"]))
    taro_id = scalar(select(ConsoleUser.public_id).where(ConsoleUser.email == "taro@shinkin.example"))
    members = f"/t/{slug}/console/members"
    last_owner = post(client, f"{members}/{owner_id}", {"role": "admin"}, form_page=members)
    assert last_owner.status_code == 302
    assert "needs at least one owner" in client.get(members).get_data(as_text=True)
    refused = post(other_client, f"{members}/{owner_id}", {"role": "remove"}, form_page=f"/t/{slug}/console/")
    assert refused.status_code == 403  # a developer administers nobody
    assert post(client, f"{members}/{taro_id}", {"role": "admin"}, form_page=members).status_code == 302
    as_admin = post(other_client, f"{members}/{owner_id}", {"role": "remove"}, form_page=members)
    assert as_admin.status_code == 302 and "Only an owner" in other_client.get(members).get_data(as_text=True)
    assert post(client, f"{members}/{taro_id}", {"role": "remove"}, form_page=members).status_code == 302
    assert other_client.get(f"/t/{slug}/console/").status_code == 404  # no longer a member
    with all_tenants(db.session):
        assert db.session.scalar(select(Membership.id).join(ConsoleUser, ConsoleUser.id == Membership.user_id)
                                 .where(ConsoleUser.email == "taro@shinkin.example")) is None
        actions = list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions[-2:] == ["member.role_changed", "member.removed"]


def test_a_forgotten_password_is_reset_by_mail_and_old_sessions_end(client: Any, other_client: Any) -> None:
    slug = verified_owner(client)  # a session that must end
    asked = post(other_client, "/console/password/forgot", {"email": ORG["email"]})
    unknown = post(other_client, "/console/password/forgot", {"email": "nobody@example.jp"})
    neutral = "If an account uses this address"
    assert neutral in asked.get_data(as_text=True) and neutral in unknown.get_data(as_text=True)  # no telling
    link = last_link(ORG["email"]).split("localhost", 1)[1]
    assert "/console/password/reset/" in link
    weak = post(other_client, link, {"password": "password1"})
    assert weak.status_code == 422 and 'id="f-password-error"' in weak.get_data(as_text=True)
    assert post(other_client, link, {"password": "a brand new phrase for hanako"}).status_code == 302
    assert post(other_client, link, {"password": "another brand new phrase"}, form_page="/console/login") \
        .status_code == 400  # used
    assert client.get(f"/t/{slug}/console/").status_code == 302  # the old session has ended
    assert log_in(other_client, ORG["email"]).status_code == 401  # the old password is gone
    assert log_in(other_client, ORG["email"], "a brand new phrase for hanako").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example/", "javascript:x"])
def test_sign_in_never_redirects_off_the_site(client: Any, target: str) -> None:
    verified_owner(client)
    client.post("/console/logout", data={"csrf_token": csrf(client, "/console/login")})
    response = post(client, "/console/login", {"email": ORG["email"], "password": PASSWORD, "next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/console/"


def test_a_csv_download_does_not_let_a_spreadsheet_run_typed_text(client: Any) -> None:
    from saas.spreadsheet import cell, lines

    assert cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert cell("@SUM(1)") == "'@SUM(1)" and cell("usr_1 (a@b.example)") == "usr_1 (a@b.example)"
    assert cell(None) == "" and cell(-3) == "-3"  # a number is no typed text
    assert "".join(lines(["a"], [["+1"]])) == "\ufeffa\r\n'+1\r\n"


def test_sign_ups_are_rate_limited_per_network(client: Any) -> None:
    for n in range(10):
        assert sign_up(client, slug=f"org-{n}", email=f"u{n}@example.jp").status_code == 302
    refused = sign_up(client, slug="org-x", email="ux@example.jp")
    assert refused.status_code == 429 and "Too many sign-ups" in refused.get_data(as_text=True)
