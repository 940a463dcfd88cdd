"""The console: sign-up and sign-in (``/console/…``) and each organisation's pages
(``/t/<slug>/console/…``). Plain HTML forms that work without JavaScript; htmx refreshes
parts where it helps. A non-member asking for an organisation's console gets a 404.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import func, select

from saas import db, ratelimit, spreadsheet
from saas.errors import ServiceError
from saas.events import services as events
from saas.events.models import Delivery, DeliveryAttempt, DeliveryStatus, Event
from saas.tenants import accounts, audit
from saas.tenants.context import current_tenant
from saas.tenants.models import AuditEntry, ConsoleUser, Role, TenantKind

console = Blueprint("console", __name__, url_prefix="/console")
tenant_console = Blueprint("tenant_console", __name__, url_prefix="/t/<tenant_slug>/console")

F = TypeVar("F", bound=Callable[..., Any])
SESSION_IDLE_SECONDS = 30 * 60  # and at most PERMANENT_SESSION_LIFETIME after signing in
RECENT_AUTH_SECONDS = 10 * 60
# Sent by a part of a page that refreshes itself (hx-trigger="every …"): not the user's activity.
POLL_HEADER = "Kakehashi-Poll"
# Who may change what; an auditor reads everything and changes nothing.
CAN_DEVELOP = (Role.OWNER, Role.ADMIN, Role.DEVELOPER)
CAN_ADMINISTER = (Role.OWNER, Role.ADMIN)


# -- the signed-in user ---------------------------------------------------------------------------

def signed_in_user() -> ConsoleUser | None:
    if "console_user" in g:
        return g.console_user
    user = None
    now, lifetime = time.time(), current_app.permanent_session_lifetime.total_seconds()
    public_id = session.get("console_user")
    if (public_id and now - session.get("console_seen", 0) <= SESSION_IDLE_SECONDS
            and now - session.get("console_started", 0) <= lifetime):
        user = db.session.scalar(select(ConsoleUser).where(ConsoleUser.public_id == public_id))
        if user is not None and session.get("console_epoch", 0) != (user.session_epoch or 0):
            user = None  # signed out, or the password changed, since this session began
    if user is None:
        session.pop("console_user", None)
    elif request.headers.get(POLL_HEADER) != "1":
        session["console_seen"] = int(now)
    g.console_user = user
    return user


def start_session(user: ConsoleUser) -> None:
    session.clear()  # a new session id: no fixation
    session.permanent = True
    now = int(time.time())
    session.update(console_user=user.public_id, console_started=now, console_seen=now, console_auth_at=now,
                   console_epoch=user.session_epoch or 0)
    accounts.record_login(user)


def _safe_next(target: str | None, default: str) -> str:
    parts = urlsplit(target or "")
    if (not target or parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//")
            or "\\" in target):  # browsers read "/\\host" as "//host"
        return default
    return target


def _to_login() -> Response:
    target = url_for("console.login", next=request.full_path.rstrip("?"))
    if request.headers.get("HX-Request"):
        # A part of a page asked (a refresh, a filter): the whole page goes to sign-in, not
        # the sign-in form into that part.
        return Response(status=204, headers={"HX-Redirect": target})
    return redirect(target)


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if signed_in_user() is None:
            return _to_login()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def auth_is_stale() -> bool:
    """The password was last confirmed longer ago than sensitive actions allow."""
    return time.time() - session.get("console_auth_at", 0) > RECENT_AUTH_SECONDS


def recent_auth_required(view: F) -> F:
    """Sensitive actions ask for the password again after ten minutes."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if auth_is_stale():
            back = request.referrer if request.method == "POST" else request.full_path.rstrip("?")
            return redirect(url_for("console.reauthenticate", next=_safe_next(back, url_for("console.home"))))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@tenant_console.before_request
def _member_only() -> Any:
    user = signed_in_user()
    if user is None:
        return _to_login()
    role = accounts.role_in(user)
    if role is None:
        abort(404)  # another organisation's console does not exist for this user
    g.role = role
    return None


def require_role(*roles: Role) -> None:
    if g.role not in roles:
        raise ServiceError(_("Your role (%(role)s) may look but not change this.", role=_role_name(g.role)),
                           code="forbidden_role", status=403)


@tenant_console.app_context_processor
def _console_context() -> dict[str, Any]:
    return {"role_name": _role_name, "CAN_DEVELOP": CAN_DEVELOP, "CAN_ADMINISTER": CAN_ADMINISTER}


def _role_name(role: Role | None) -> str:
    return {Role.OWNER: _("Owner"), Role.ADMIN: _("Administrator"), Role.DEVELOPER: _("Developer"),
            Role.AUDITOR: _("Auditor (read-only)")}.get(role, "") if role else ""


def form_errors(error: ServiceError) -> dict[str, str]:
    return {error.field or "form": str(error.message)}


# -- sign-up, verification, sign-in ---------------------------------------------------------------------

@console.route("/signup", methods=["GET", "POST"])
def signup() -> Any:
    values: dict[str, str] = {"kind": "bank"}
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        values = {k: request.form.get(k, "") for k in
                  ("organisation", "slug", "kind", "corporate_number", "name", "email")}
        try:
            if not ratelimit.allow(f"signup:{request.remote_addr}", limit=10, window=3600):
                raise ServiceError(_("Too many sign-ups from your network. Try again in an hour."),
                                   code="rate_limited", status=429)
            accounts.sign_up(password=request.form.get("password", ""), **values)
        except ServiceError as error:
            db.session.rollback()
            errors, status = form_errors(error), error.status
        else:
            return redirect(url_for("console.signed_up", email=values["email"].strip().lower()))
    return render_template("console/signup.html", values=values, errors=errors, kinds=list(TenantKind)), \
        status if errors else 200


@console.get("/signup/sent")
def signed_up() -> str:
    return render_template("console/signed_up.html", email=request.args.get("email", ""))


@console.get("/verify/<token>")
def verify_email(token: str) -> Any:
    try:
        accounts.verify_email(token)
    except ServiceError as error:
        return render_template("console/message.html", title=_("Link not valid"), message=str(error.message)), 400
    flash(_("Your address is confirmed. Sign in to continue."))
    return redirect(url_for("console.login"))


@console.route("/login", methods=["GET", "POST"])
def login() -> Any:
    target = _safe_next(request.values.get("next"), url_for("console.home"))
    errors: dict[str, str] = {}
    email = ""
    if request.method == "POST":
        email = request.form.get("email", "")
        try:
            user = accounts.authenticate(email, request.form.get("password", ""))
        except ServiceError as error:
            db.session.rollback()
            return render_template("console/login.html", errors={"form": str(error.message)}, email=email,
                                   next=target, card=False), error.status
        if user.totp_enabled_at is not None:
            session.clear()
            session["console_pending"] = user.public_id
            session["console_pending_at"] = int(time.time())
            return redirect(url_for("console.login_code", next=target))
        start_session(user)
        return redirect(target)
    from saas.tenants import cardlogin

    return render_template("console/login.html", errors=errors, email=email, next=target,
                           card=cardlogin.available())


@console.route("/login/code", methods=["GET", "POST"])
def login_code() -> Any:
    target = _safe_next(request.values.get("next"), url_for("console.home"))
    pending = session.get("console_pending")
    if not pending or time.time() - session.get("console_pending_at", 0) > 300:
        session.pop("console_pending", None)
        return redirect(url_for("console.login", next=target))
    user = db.session.scalar(select(ConsoleUser).where(ConsoleUser.public_id == pending))
    if user is None:
        return redirect(url_for("console.login"))
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            ok = accounts.check_totp(user, request.form.get("code", ""))
        except ServiceError as error:
            db.session.rollback()
            return render_template("console/login_code.html", errors={"code": str(error.message)}, next=target), \
                error.status
        if ok:
            start_session(user)
            return redirect(target)
        errors = {"code": _("That code is not right. Type the 6 digits your app shows now.")}
    return render_template("console/login_code.html", errors=errors, next=target), 401 if errors else 200


@console.route("/reauthenticate", methods=["GET", "POST"])
@login_required
def reauthenticate() -> Any:
    target = _safe_next(request.values.get("next"), url_for("console.home"))
    user = signed_in_user()
    assert user is not None
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            accounts.reauthenticate(user, request.form.get("password", ""), request.form.get("code", ""))
        except ServiceError as error:
            db.session.rollback()
            return render_template("console/reauthenticate.html", errors={"form": str(error.message)},
                                   next=target, user=user), error.status
        session["console_auth_at"] = int(time.time())
        return redirect(target)
    return render_template("console/reauthenticate.html", errors=errors, next=target, user=user)


@console.get("/card/start")
def card_start() -> Any:
    """Sign in (or, signed in, link the card) through the platform's own provider."""
    from saas.tenants import cardlogin

    purpose = "link" if request.args.get("purpose") == "link" else "login"
    if purpose == "link":
        if signed_in_user() is None:
            return redirect(url_for("console.login"))
        if auth_is_stale():
            return redirect(url_for("console.reauthenticate", next=url_for("console.security")))
    try:
        return redirect(cardlogin.begin(purpose))
    except ServiceError as error:
        return render_template("console/message.html", title=_("Sign-in with the card"),
                               message=str(error.message)), error.status


@console.get("/card/callback")
def card_callback() -> Any:
    from saas.tenants import cardlogin

    try:
        purpose, sub = cardlogin.complete(request.args.to_dict())
        if purpose == "link":
            user = signed_in_user()
            if user is None:
                raise cardlogin.CardLoginError(_("Sign in first, then link the card."))
            cardlogin.link(user, sub)
            flash(_("Your My Number Card is linked: you can sign in with it from now on."))
            return redirect(url_for("console.security"))
        user = cardlogin.user_of(sub)
        if user is None:
            raise cardlogin.CardLoginError(_("This card is not linked to a console account. Sign in with your "
                                             "password, then link the card under Your sign-in security."),
                                           code="card_not_linked", status=403)
    except ServiceError as error:
        db.session.rollback()
        return render_template("console/message.html", title=_("Sign-in with the card"),
                               message=str(error.message)), error.status
    start_session(user)
    return redirect(url_for("console.home"))


@console.post("/card/unlink")
@login_required
@recent_auth_required
def card_unlink() -> Response:
    user = signed_in_user()
    assert user is not None
    user.card_sub = None
    flash(_("The card is no longer linked to your account."))
    return redirect(url_for("console.security"))


@console.route("/password/forgot", methods=["GET", "POST"])
def forgot_password() -> Any:
    if request.method == "POST":
        accounts.send_reset(request.form.get("email", ""))
        return render_template("console/message.html", title=_("Check your mail"),
                               message=_("If an account uses this address, a link to choose a new password is on "
                                         "its way. It works for an hour."))
    return render_template("console/forgot.html", errors={})


@console.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> Any:
    errors: dict[str, str] = {}
    try:
        user = accounts.reset_user(token)
    except ServiceError as error:
        return render_template("console/message.html", title=_("Link not valid"), message=str(error.message)), 400
    if request.method == "POST":
        try:
            accounts.reset_password(token, request.form.get("password", ""))
        except ServiceError as error:
            db.session.rollback()
            errors = form_errors(error)
        else:
            flash(_("Your password is changed, and every other session of your account has ended. Sign in."))
            return redirect(url_for("console.login"))
    return render_template("console/reset.html", user=user, errors=errors), 422 if errors else 200


@console.post("/logout")
def logout() -> Response:
    user = signed_in_user()
    if user is not None:
        accounts.end_sessions(user)  # a copy of the cookie must not stay signed in
    session.clear()
    return redirect(url_for("console.login"))


@console.get("/")
@login_required
def home() -> Any:
    user = signed_in_user()
    assert user is not None
    organisations = accounts.memberships(user)
    if len(organisations) == 1 and not request.args.get("all"):
        return redirect(url_for("tenant_console.dashboard", tenant_slug=organisations[0][0].slug))
    return render_template("console/home.html", organisations=organisations, user=user)


@console.route("/invitations/<token>", methods=["GET", "POST"])
def accept_invitation(token: str) -> Any:
    try:
        invitation, tenant = accounts.pending_invitation(token)
    except ServiceError as error:
        return render_template("console/message.html", title=_("Invitation not valid"),
                               message=str(error.message)), 404
    user = signed_in_user()
    errors: dict[str, str] = {}
    account_exists = False
    if request.method == "POST":
        try:
            if user is not None:
                accepted = accounts.accept(token, user)
            else:
                accepted, user = accounts.join_as_new(token, name=request.form.get("name", ""),
                                                      password=request.form.get("password", ""))
                start_session(user)
        except ServiceError as error:
            db.session.rollback()
            if error.code == "email_taken":  # the invitation's address has an account: no field of this form
                errors, account_exists = {"form": str(error.message)}, True
            elif error.field:
                errors = form_errors(error)
            else:
                return render_template("console/message.html", title=_("Invitation not valid"),
                                       message=str(error.message)), error.status
        else:
            return redirect(url_for("tenant_console.dashboard", tenant_slug=accepted.slug))
    return render_template("console/invitation.html", invitation=invitation, tenant=tenant, user=user,
                           token=token, errors=errors, account_exists=account_exists), 422 if errors else 200


@console.route("/account/security", methods=["GET", "POST"])
@login_required
@recent_auth_required
def security() -> Any:
    user = signed_in_user()
    assert user is not None
    errors: dict[str, str] = {}
    setup: tuple[str, str] | None = None
    if request.method == "POST":
        action = request.form.get("action")
        if action == "start":
            setup = accounts.start_totp(user)
        elif action == "confirm":
            try:
                accounts.enable_totp(user, request.form.get("code", ""))
            except ServiceError as error:
                errors = form_errors(error)
                setup = accounts.pending_totp(user)
            else:
                flash(_("Two-step sign-in is on."))
                return redirect(url_for("console.security"))
        elif action == "disable":
            accounts.disable_totp(user)
            flash(_("Two-step sign-in is off."))
            return redirect(url_for("console.security"))
    from saas.tenants import cardlogin

    return render_template("console/security.html", user=user, setup=setup, errors=errors,
                           card=cardlogin.available()), 422 if errors else 200


# -- an organisation's console ------------------------------------------------------------------------

@tenant_console.get("/")
def dashboard() -> str:
    from saas.oidc import stats

    stats.COUNTS.flush(current_app._get_current_object())  # type: ignore[attr-defined]  # this process's logins, now
    counts = dict(db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    recent = list(db.session.scalars(select(Event).order_by(Event.id.desc()).limit(10)))
    changes = list(db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(5)))
    clients = stats.per_client()
    from saas.delegation import services as delegation
    from saas.delegation.console import status_labels
    from saas.idlink import services as idlink

    powers, fetches = delegation.counts()
    labels = status_labels()
    return render_template("console/dashboard.html", tenant=current_tenant(), counts=counts, recent=recent,
                           changes=changes, powers=[(labels.get(status, status), n) for status, n in powers.items()],
                           power_fetches=fetches, links=idlink.counts(),
                           DeliveryStatus=DeliveryStatus, per_day=stats.per_day(),
                           per_client=[(name, ok) for name, ok, _failed in clients],
                           failures=_merged((stats.label(code), n) for code, n in stats.failures()))


def _merged(rows: Any) -> list[tuple[str, int]]:
    totals: dict[str, int] = {}
    for name, count in rows:
        totals[name] = totals.get(name, 0) + count
    return sorted(totals.items(), key=lambda item: -item[1])


@tenant_console.get("/webhooks")
def webhooks() -> str:
    endpoints = events.list_endpoints()
    return render_template("console/webhooks.html", tenant=current_tenant(), endpoints=endpoints,
                           relying_parties=events.relying_party_names(endpoints), types=events.EVENT_TYPES, json=json)


@tenant_console.route("/webhooks/new", methods=["GET", "POST"])
def new_webhook() -> Any:
    require_role(*CAN_DEVELOP)
    if auth_is_stale():  # asked before the form is filled in, not after
        return redirect(url_for("console.reauthenticate", next=url_for("tenant_console.new_webhook")))
    values: dict[str, Any] = {"url": "", "description": "", "event_types": [events.ALL_TYPES]}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = {"url": request.form.get("url", ""), "description": request.form.get("description", ""),
                  "event_types": request.form.getlist("event_types")}
        try:
            endpoint, secret = events.create_endpoint(current_tenant(), **values)
            audit.record(current_tenant(), "webhook.created", actor=signed_in_user(), target=endpoint.public_id,
                         details={"url": endpoint.url, "event_types": json.loads(endpoint.event_types)})
        except ServiceError as error:
            db.session.rollback()
            errors = form_errors(error)
        else:
            return render_template("console/webhook_secret.html", tenant=current_tenant(), endpoint=endpoint,
                                   secret=secret, created=True)
    return render_template("console/webhook_form.html", tenant=current_tenant(), values=values, errors=errors,
                           types=events.EVENT_TYPES), 422 if errors else 200


@tenant_console.get("/webhooks/<endpoint_id>")
def webhook(endpoint_id: str) -> str:
    endpoint = events.get_endpoint(endpoint_id)
    page = max(1, request.args.get("page", 1, type=int))
    per_page = 25
    rows = db.session.execute(
        select(Delivery, Event).join(Event, (Event.id == Delivery.event_id) & (Event.tenant_id == Delivery.tenant_id))
        .where(Delivery.endpoint_id == endpoint.id).order_by(Delivery.id.desc())
        .offset((page - 1) * per_page).limit(per_page + 1)).all()
    attempts: dict[int, list[DeliveryAttempt]] = {}
    for attempt in db.session.scalars(select(DeliveryAttempt).where(
            DeliveryAttempt.delivery_id.in_([row[0].id for row in rows])).order_by(DeliveryAttempt.id)):
        attempts.setdefault(attempt.delivery_id, []).append(attempt)
    template = "console/_deliveries.html" if request.headers.get("HX-Request") else "console/webhook.html"
    return render_template(template, tenant=current_tenant(), endpoint=endpoint, rows=rows[:per_page],
                           attempts=attempts, page=page, has_more=len(rows) > per_page, types=events.EVENT_TYPES,
                           json=json, DeliveryStatus=DeliveryStatus)


@tenant_console.post("/webhooks/<endpoint_id>/ping")
def ping_webhook(endpoint_id: str) -> Response:
    require_role(*CAN_DEVELOP)
    endpoint = events.get_endpoint(endpoint_id)
    events.ping(current_tenant(), endpoint)
    audit.record(current_tenant(), "webhook.pinged", actor=signed_in_user(), target=endpoint.public_id)
    flash(_("A test event is on its way. Its delivery appears below."))
    return redirect(url_for("tenant_console.webhook", endpoint_id=endpoint.public_id))


@tenant_console.post("/webhooks/<endpoint_id>/enabled")
@recent_auth_required
def toggle_webhook(endpoint_id: str) -> Response:
    require_role(*CAN_DEVELOP)
    endpoint = events.get_endpoint(endpoint_id)
    enabled = request.form.get("enabled") == "1"
    events.update_endpoint(endpoint, enabled=enabled)
    audit.record(current_tenant(), "webhook.enabled" if enabled else "webhook.disabled", actor=signed_in_user(),
                 target=endpoint.public_id)
    return redirect(url_for("tenant_console.webhook", endpoint_id=endpoint.public_id))


@tenant_console.post("/webhooks/<endpoint_id>/rotate")
@recent_auth_required
def rotate_webhook_secret(endpoint_id: str) -> str:
    require_role(*CAN_DEVELOP)
    endpoint = events.get_endpoint(endpoint_id)
    secret = events.rotate_secret(current_tenant(), endpoint)
    audit.record(current_tenant(), "webhook.secret_rotated", actor=signed_in_user(), target=endpoint.public_id)
    return render_template("console/webhook_secret.html", tenant=current_tenant(), endpoint=endpoint, secret=secret,
                           created=False)


@tenant_console.post("/webhooks/<endpoint_id>/delete")
@recent_auth_required
def delete_webhook(endpoint_id: str) -> Response:
    require_role(*CAN_DEVELOP)
    endpoint = events.get_endpoint(endpoint_id)
    audit.record(current_tenant(), "webhook.deleted", actor=signed_in_user(), target=endpoint.public_id,
                 details={"url": endpoint.url})
    events.delete_endpoint(endpoint)
    flash(_("The endpoint is deleted."))
    return redirect(url_for("tenant_console.webhooks"))


@tenant_console.post("/webhooks/<endpoint_id>/deliveries/<int:delivery_id>/redeliver")
def redeliver(endpoint_id: str, delivery_id: int) -> Response:
    require_role(*CAN_DEVELOP)
    endpoint = events.get_endpoint(endpoint_id)
    delivery = db.session.scalar(select(Delivery).where(Delivery.id == delivery_id,
                                                        Delivery.endpoint_id == endpoint.id))
    if delivery is None:
        abort(404)
    events.redeliver(delivery)
    audit.record(current_tenant(), "webhook.redelivered", actor=signed_in_user(), target=endpoint.public_id,
                 details={"delivery": delivery.id})
    flash(_("The delivery is sent again."))
    return redirect(url_for("tenant_console.webhook", endpoint_id=endpoint.public_id))


@tenant_console.route("/members", methods=["GET", "POST"])
def members() -> Any:
    errors: dict[str, str] = {}
    values = {"email": "", "role": Role.DEVELOPER.value}
    if request.method == "POST":
        require_role(*CAN_ADMINISTER)
        if auth_is_stale():
            return redirect(url_for("console.reauthenticate", next=url_for("tenant_console.members")))
        values = {"email": request.form.get("email", ""), "role": request.form.get("role", "")}
        if values["role"] == Role.OWNER.value and g.role is not Role.OWNER:
            errors = {"role": _("Only an owner can invite an owner.")}
        else:
            try:
                invitation = accounts.invite(current_tenant(), email=values["email"], role=values["role"],
                                             by=signed_in_user())  # type: ignore[arg-type]
                audit.record(current_tenant(), "member.invited", actor=signed_in_user(), target=invitation.public_id,
                             details={"email": invitation.email, "role": invitation.role.value})
            except ServiceError as error:
                db.session.rollback()
                errors = form_errors(error)
            else:
                flash(_("The invitation is sent to %(email)s.", email=invitation.email))
                return redirect(url_for("tenant_console.members"))
    return render_template("console/members.html", tenant=current_tenant(), members=accounts.members(),
                           invitations=accounts.pending_invitations(), roles=list(Role), values=values,
                           errors=errors), 422 if errors else 200


@tenant_console.post("/invitations/<invitation_id>/withdraw")
def withdraw_invitation(invitation_id: str) -> Response:
    require_role(*CAN_ADMINISTER)
    if auth_is_stale():
        return redirect(url_for("console.reauthenticate", next=url_for("tenant_console.members")))
    actor = signed_in_user()
    assert actor is not None
    invitation = accounts.withdraw_invitation(current_tenant(), invitation_id, by=actor)
    flash(_("The invitation to %(email)s is withdrawn: its link no longer works.", email=invitation.email))
    return redirect(url_for("tenant_console.members"))


@tenant_console.post("/members/<user_id>")
def change_member(user_id: str) -> Any:
    """Change a member's role, or remove them (``role=remove``)."""
    require_role(*CAN_ADMINISTER)
    if auth_is_stale():
        return redirect(url_for("console.reauthenticate", next=url_for("tenant_console.members")))
    member = db.session.scalar(select(ConsoleUser).where(ConsoleUser.public_id == user_id))
    if member is None or accounts.role_in(member) is None:
        abort(404)
    role = request.form.get("role", "")
    actor = signed_in_user()
    assert actor is not None
    try:
        if role == "remove":
            accounts.remove(current_tenant(), member, by=actor, by_role=g.role)
            audit.record(current_tenant(), "member.removed", actor=actor, target=member.public_id,
                         details={"email": member.email})
            flash(_("%(name)s is no longer a member.", name=member.name))
        else:
            accounts.change_role(current_tenant(), member, role, by=actor, by_role=g.role)
            audit.record(current_tenant(), "member.role_changed", actor=actor, target=member.public_id,
                         details={"email": member.email, "role": role})
            flash(_("%(name)s is now %(role)s.", name=member.name, role=_role_name(Role(role))))
    except ServiceError as error:
        db.session.rollback()
        flash(str(error.message))
        return redirect(url_for("tenant_console.members"))
    if member.id == actor.id and role == "remove":
        return redirect(url_for("console.home", all=1))
    return redirect(url_for("tenant_console.members"))


@tenant_console.get("/audit")
def audit_log() -> str:
    """Newest first, 50 a page, paged by sequence number (fast at any depth of a long log)."""
    per_page = 50
    before = request.args.get("before", type=int)
    action = request.args.get("action", "").strip()
    query = select(AuditEntry).order_by(AuditEntry.seq.desc())
    if action in audit.ACTIONS:
        query = query.where(AuditEntry.action == action)
    if before:
        query = query.where(AuditEntry.seq < before)
    entries = list(db.session.scalars(query.limit(per_page + 1)))
    template = "console/_audit_rows.html" if request.headers.get("HX-Request") else "console/audit.html"
    return render_template(template, tenant=current_tenant(), entries=entries[:per_page], before=before,
                           next_before=entries[per_page - 1].seq if len(entries) > per_page else None,
                           actions=audit.ACTIONS, action=action, json=json)


# -- development mail viewer ----------------------------------------------------------------------------

@console.get("/dev/mail")
def dev_mail() -> str:
    if current_app.config["KAKEHASHI_ENV"] == "production":
        abort(404)
    from saas.mail import services as mail

    return render_template("console/dev_mail.html", messages=mail.recent())


# -- OpenID Connect clients and signing keys ------------------------------------------------------------

def _client_values() -> dict[str, Any]:
    def lines(name: str) -> list[str]:
        return [line.strip() for line in request.form.get(name, "").splitlines() if line.strip()]

    return {"name": request.form.get("name", ""), "redirect_uris": lines("redirect_uris"),
            "scopes": ["openid", *[s for s in request.form.getlist("scopes") if s != "openid"]],
            "jwks": request.form.get("jwks", "").strip() or None,
            "jwks_uri": request.form.get("jwks_uri", "").strip() or None,
            "post_logout_redirect_uris": lines("post_logout_redirect_uris"),
            "backchannel_logout_uri": request.form.get("backchannel_logout_uri", "").strip() or None}


def _get_client(client_id: str) -> Any:
    from saas.oidc.models import OIDCClient

    client = db.session.scalar(select(OIDCClient).where(OIDCClient.public_id == client_id))
    if client is None:
        abort(404)
    return client


@tenant_console.get("/clients")
def clients() -> str:
    from saas.oidc import keys
    from saas.oidc.models import OIDCClient, SigningKey

    keys.ensure_keys(current_tenant())
    return render_template("console/clients.html", tenant=current_tenant(), json=json,
                           clients=list(db.session.scalars(select(OIDCClient).order_by(OIDCClient.id))),
                           signing_keys=list(db.session.scalars(select(SigningKey).order_by(SigningKey.id.desc()))))


@tenant_console.route("/clients/new", methods=["GET", "POST"])
def new_client() -> Any:
    from saas.oidc import clients as oidc_clients

    require_role(*CAN_DEVELOP)
    if auth_is_stale():
        return redirect(url_for("console.reauthenticate", next=url_for("tenant_console.new_client")))
    errors: dict[str, str] = {}
    values: dict[str, Any] = {"auth_method": "private_key_jwt", "scopes": ["openid"], "redirect_uris": []}
    if request.method == "POST":
        values = {**_client_values(), "auth_method": request.form.get("auth_method", "")}
        try:
            client, secret = oidc_clients.register_client(current_tenant(), **values)
            audit.record(current_tenant(), "oidc_client.created", actor=signed_in_user(), target=client.public_id,
                         details={"name": client.name, "redirect_uris": json.loads(client.redirect_uris),
                                  "scopes": json.loads(client.scopes), "auth_method": client.auth_method.value})
        except ServiceError as error:
            db.session.rollback()
            errors = form_errors(error)
        else:
            return render_template("console/client_created.html", tenant=current_tenant(), client=client,
                                   secret=secret)
    return render_template("console/client_form.html", tenant=current_tenant(), values=values, errors=errors,
                           client=None, all_scopes=_scope_names()), 422 if errors else 200


@tenant_console.route("/clients/<client_id>", methods=["GET", "POST"])
def client(client_id: str) -> Any:
    from saas.oidc import clients as oidc_clients

    found = _get_client(client_id)
    errors: dict[str, str] = {}
    values: dict[str, Any] = {
        "name": found.name, "redirect_uris": json.loads(found.redirect_uris), "scopes": json.loads(found.scopes),
        "jwks": found.jwks or "", "jwks_uri": found.jwks_uri or "", "auth_method": found.auth_method.value,
        "post_logout_redirect_uris": json.loads(found.post_logout_redirect_uris),
        "backchannel_logout_uri": found.backchannel_logout_uri or ""}
    if request.method == "POST":
        require_role(*CAN_DEVELOP)
        if auth_is_stale():
            return redirect(url_for("console.reauthenticate",
                                    next=url_for("tenant_console.client", client_id=found.public_id)))
        values = {**_client_values(), "auth_method": found.auth_method.value}
        try:
            oidc_clients.update_client(found, **{k: v for k, v in values.items() if k != "auth_method"})
            audit.record(current_tenant(), "oidc_client.updated", actor=signed_in_user(), target=found.public_id,
                         details={"redirect_uris": json.loads(found.redirect_uris),
                                  "scopes": json.loads(found.scopes)})
        except ServiceError as error:
            db.session.rollback()
            errors = form_errors(error)
        else:
            flash(_("The client is saved."))
            return redirect(url_for("tenant_console.client", client_id=found.public_id))
    return render_template("console/client_form.html", tenant=current_tenant(), values=values, errors=errors,
                           client=found, all_scopes=_scope_names()), 422 if errors else 200


@tenant_console.post("/clients/<client_id>/secret")
@recent_auth_required
def rotate_client_secret(client_id: str) -> Any:
    from saas.oidc import clients as oidc_clients

    require_role(*CAN_DEVELOP)
    found = _get_client(client_id)
    secret = oidc_clients.rotate_secret(found)
    audit.record(current_tenant(), "oidc_client.secret_rotated", actor=signed_in_user(), target=found.public_id)
    return render_template("console/client_created.html", tenant=current_tenant(), client=found, secret=secret,
                           rotated=True)


@tenant_console.post("/signing-keys/<alg>/rotate")
@recent_auth_required
def rotate_signing_key(alg: str) -> Response:
    from saas.oidc import keys

    require_role(*CAN_ADMINISTER)
    if alg not in keys.ALGORITHMS:
        abort(404)
    created = keys.rotate(current_tenant(), alg)
    audit.record(current_tenant(), "signing_key.rotated", actor=signed_in_user(), target=created.kid,
                 details={"alg": alg})
    flash(_("A new %(alg)s key signs from now on; the previous one stays published until its tokens expire.",
            alg=alg))
    return redirect(url_for("tenant_console.clients"))


def _scope_names() -> dict[str, str]:
    return {"name": _("Name (氏名)"), "address": _("Address (住所)"), "birthdate": _("Date of birth (生年月日)"),
            "gender": _("Gender (性別)"), "sign": _("Sign documents with the card (sign transactions)")}


# -- API keys --------------------------------------------------------------------------------------------

@tenant_console.route("/api-keys", methods=["GET", "POST"])
def api_keys() -> Any:
    from datetime import datetime
    from datetime import time as day_end
    from zoneinfo import ZoneInfo

    from saas import clock
    from saas.tenants import apikeys
    from saas.tenants.models import ApiKey

    errors: dict[str, str] = {}
    values: dict[str, Any] = {"name": "", "scopes": ["webhooks:read"], "expires": ""}
    if request.method == "POST":
        require_role(*CAN_DEVELOP)
        if auth_is_stale():
            return redirect(url_for("console.reauthenticate", next=url_for("tenant_console.api_keys")))
        values = {"name": request.form.get("name", ""), "scopes": request.form.getlist("scopes"),
                  "expires": request.form.get("expires", "").strip()}
        try:
            expires_at = None
            if values["expires"]:
                try:
                    expires_at = datetime.combine(datetime.fromisoformat(values["expires"]).date(), day_end.max,
                                                  tzinfo=ZoneInfo("Asia/Tokyo"))
                except ValueError:
                    raise apikeys.ApiKeyError(_("Give the date as YYYY-MM-DD."), code="invalid_expiry",
                                              field="expires") from None
            key, secret = apikeys.create(current_tenant(), name=values["name"], scopes=values["scopes"],
                                         expires_at=expires_at, by=signed_in_user())
            audit.record(current_tenant(), "api_key.created", actor=signed_in_user(), target=key.public_id,
                         details={"name": key.name, "scopes": json.loads(key.scopes),
                                  "expires_at": expires_at.isoformat() if expires_at else None})
        except ServiceError as error:
            db.session.rollback()
            errors = {("expires" if error.field == "expires_at" else error.field or "form"): str(error.message)}
        else:
            return render_template("console/api_key_created.html", tenant=current_tenant(), key=key, secret=secret)
    keys = list(db.session.scalars(select(ApiKey).order_by(ApiKey.id.desc())))
    return render_template("console/api_keys.html", tenant=current_tenant(), keys=keys, values=values,
                           errors=errors, scopes=apikeys.SCOPES, json=json, now=clock.now()), 422 if errors else 200


@tenant_console.get("/api-keys/<key_id>")
def api_key(key_id: str) -> str:
    from saas.tenants.models import ApiKey, ApiRequest

    key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == key_id))
    if key is None:
        abort(404)
    from saas.tenants import apikeys

    apikeys.REQUEST_LOG.flush(current_app._get_current_object())  # type: ignore[attr-defined]  # this process's, now
    requests_ = list(db.session.scalars(select(ApiRequest).where(ApiRequest.key_id == key.id)
                                        .order_by(ApiRequest.id.desc()).limit(100)))
    return render_template("console/api_key.html", tenant=current_tenant(), key=key, requests=requests_, json=json)


@tenant_console.post("/api-keys/<key_id>/revoke")
@recent_auth_required
def revoke_api_key(key_id: str) -> Response:
    from saas.tenants import apikeys
    from saas.tenants.models import ApiKey

    require_role(*CAN_DEVELOP)
    key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == key_id))
    if key is None:
        abort(404)
    apikeys.revoke(key)
    audit.record(current_tenant(), "api_key.revoked", actor=signed_in_user(), target=key.public_id)
    flash(_("The key is revoked: calls made with it are refused from now on."))
    return redirect(url_for("tenant_console.api_keys"))


@tenant_console.get("/audit.csv")
def audit_csv() -> Response:
    """The whole log (or one action) as CSV, streamed in pages."""
    action = request.args.get("action", "").strip()
    tenant = current_tenant()

    listing = select(AuditEntry).order_by(AuditEntry.seq)
    if action:
        listing = listing.where(AuditEntry.action == action)
    rows = spreadsheet.tenant_pages(tenant.id, listing, key=AuditEntry.seq, row=lambda entry: (
        entry.seq, entry.at, entry.actor, entry.action, entry.target, entry.ip, entry.details, entry.prev_hash,
        entry.hash))
    audit.record(tenant, "audit.exported", actor=signed_in_user(), details={"action": action or None})
    return spreadsheet.download(f"audit-{tenant.slug}.csv", ["seq", "at", "actor", "action", "target", "ip",
                                                             "details", "prev_hash", "hash"], rows)


# -- going live, and the operator console --------------------------------------------------------------------

@tenant_console.route("/live", methods=["GET", "POST"])
def live_mode() -> Any:
    from saas.tenants import golive

    errors: dict[str, str] = {}
    use_case = ""
    if request.method == "POST":
        require_role(Role.OWNER)
        use_case = request.form.get("use_case", "")
        try:
            golive.request_live(current_tenant(), use_case=use_case, by=signed_in_user())  # type: ignore[arg-type]
        except ServiceError as error:
            db.session.rollback()
            errors = form_errors(error)
        else:
            flash(_("Your request is sent. The Kakehashi team reviews it and writes to the owners."))
            return redirect(url_for("tenant_console.live_mode"))
    return render_template("console/live.html", tenant=current_tenant(), pending=golive.pending(current_tenant()),
                           history=golive.history(), errors=errors, use_case=use_case), 422 if errors else 200


def operator_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = signed_in_user()
        if user is None:
            return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
        if not user.is_operator:
            abort(404)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@console.route("/operator", methods=["GET", "POST"])
@operator_required
@recent_auth_required
def operator() -> Any:
    from saas.tenants import golive

    errors: dict[int, str] = {}
    if request.method == "POST":
        request_id = request.form.get("request", type=int) or 0
        try:
            tenant = golive.decide(request_id, approve=request.form.get("decision") == "approve",
                                   reason=request.form.get("reason", ""), operator=signed_in_user())  # type: ignore[arg-type]
        except ServiceError as error:
            db.session.rollback()
            errors = {request_id: str(error.message)}
        else:
            flash(_("Decided: %(organisation)s.", organisation=tenant.display_name))
            return redirect(url_for("console.operator"))
    return render_template("console/operator.html", waiting=golive.waiting(), errors=errors), 422 if errors else 200
