"""Console accounts: sign-up of an organisation, address verification, password and TOTP
sign-in with rate limits and lockout, memberships and invitations.

Passwords are hashed with Argon2id (argon2-cffi) and must pass zxcvbn's strength estimate
(common, breached-list and guessable passwords fail it). A second factor is TOTP (RFC 6238,
pyotp), each code accepted once. Every message about an account goes through the mail
outbox in the same transaction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

import pyotp
from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, func, or_, select, update
from zxcvbn import zxcvbn

from saas import clock, db, ratelimit, urls
from saas.db import tenant_scope
from saas.errors import NotFound, ServiceError
from saas.mail import services as mail
from saas.sealing import seal, unseal
from saas.tenants import services as tenants
from saas.tenants.models import (
    ConsoleUser,
    EmailToken,
    Invitation,
    Membership,
    Role,
    Tenant,
)

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200
MIN_STRENGTH = 3  # zxcvbn: 0 (too guessable) … 4 (very unguessable)
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
VERIFY_LIFETIME = timedelta(days=2)
INVITATION_LIFETIME = timedelta(days=7)
LOGIN_LIMIT_PER_IP = (30, 600)  # attempts per 10 minutes
LOGIN_LIMIT_PER_ACCOUNT = (10, 600)
TOTP_ISSUER = "Kakehashi"


class AccountError(ServiceError):
    status = 422


class SignInError(ServiceError):
    """Deliberately vague about which of address and password was wrong."""

    status = 401
    code = "invalid_credentials"


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def normalise_email(value: str) -> str:
    email = (value or "").strip().lower()
    if not EMAIL.match(email) or len(email) > 254:
        raise AccountError(_l("Enter an email address such as name@example.jp."), code="invalid_email",
                           field="email")
    return email


# -- passwords --------------------------------------------------------------------------------

def _hasher() -> PasswordHasher:
    profile = getattr(profiles, current_app.config["ARGON2_PROFILE"], profiles.RFC_9106_LOW_MEMORY)
    return PasswordHasher.from_parameters(profile)


def check_password(password: str, *, hints: list[str]) -> str:
    """The password if it is long and unguessable enough; else an error that says why."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(_l("Use at least %(count)d characters.", count=MIN_PASSWORD_LENGTH),
                           code="weak_password", field="password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(_l("Use at most %(count)d characters.", count=MAX_PASSWORD_LENGTH),
                           code="weak_password", field="password")
    estimate = zxcvbn(password[:100], user_inputs=[h for h in hints if h])
    if estimate["score"] < MIN_STRENGTH:
        raise AccountError(_l("This password is too easy to guess (it is common, was leaked, or follows a "
                              "pattern). Try a longer phrase of unrelated words."),
                           code="weak_password", field="password")
    return password


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def password_matches(user: ConsoleUser, password: str) -> bool:
    if not user.password_hash:
        return False
    try:
        _hasher().verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if _hasher().check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return True


# -- sign-up and verification ---------------------------------------------------------------------

def sign_up(*, organisation: str, slug: str, kind: str, corporate_number: str | None, name: str,
            email: str, password: str) -> tuple[Tenant, ConsoleUser]:
    """A new organisation in sandbox mode, its owner, and the mail that verifies the address."""
    email = normalise_email(email)
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise AccountError(_l("Enter your name (at most 200 characters)."), code="invalid_name", field="name")
    check_password(password, hints=[email, name, organisation, slug])
    if db.session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == email)) is not None:
        raise AccountError(_l("An account with this address exists already: sign in, and create the "
                              "organisation from there."), code="email_taken", status=409, field="email")
    tenant = tenants.create_tenant(slug=slug, display_name=organisation, kind=kind,
                                   corporate_number=corporate_number)
    user = ConsoleUser(email=email, name=name, password_hash=hash_password(password), failed_logins=0,
                       is_operator=False, created_at=clock.now())
    db.session.add(user)
    db.session.flush()
    with tenant_scope(db.session, tenant.id):
        db.session.add(Membership(tenant_id=tenant.id, user_id=user.id, role=Role.OWNER, created_at=clock.now()))
        from saas.tenants import audit

        audit.record(tenant, "organisation.created", actor=user, target=tenant.public_id,
                     details={"slug": tenant.slug, "mode": tenant.mode.value})
    send_verification(user)
    return tenant, user


def _link(endpoint: str, **values: Any) -> str:
    return urls.external(endpoint, **values)


def send_verification(user: ConsoleUser) -> None:
    token = secrets.token_urlsafe(32)
    db.session.add(EmailToken(user_id=user.id, purpose="verify", token_hash=token_hash(token),
                              expires_at=clock.now() + VERIFY_LIFETIME))
    link = _link("console.verify_email", token=token)
    mail.send(user.email, _("Confirm your email address for Kakehashi"),
              _("Hello %(name)s,\n\nopen this link to confirm your address and finish setting up your "
                "Kakehashi account (it works for two days):\n\n%(link)s\n\nIf you did not sign up, ignore "
                "this message.\n", name=user.name, link=link))


def verify_email(token: str) -> ConsoleUser:
    row = db.session.scalar(select(EmailToken).where(EmailToken.token_hash == token_hash(token),
                                                     EmailToken.purpose == "verify"))
    if row is None or row.used_at is not None or row.expires_at <= clock.now():
        raise AccountError(_l("This confirmation link is used or expired. Sign in to get a new one."),
                           code="invalid_token", status=400)
    user = db.session.get(ConsoleUser, row.user_id)
    assert user is not None
    row.used_at = clock.now()
    user.email_verified_at = user.email_verified_at or clock.now()
    db.session.flush()
    return user


# -- signing in ---------------------------------------------------------------------------------

def client_address() -> str:
    return request.remote_addr or "unknown"


def _limit_attempts(email: str) -> None:
    """Password attempts, at sign-in and re-authentication alike, per address and per account."""
    if not ratelimit.allow(f"login:ip:{client_address()}", limit=LOGIN_LIMIT_PER_IP[0],
                           window=LOGIN_LIMIT_PER_IP[1]) \
            or not ratelimit.allow(f"login:account:{token_hash(email)}", limit=LOGIN_LIMIT_PER_ACCOUNT[0],
                                   window=LOGIN_LIMIT_PER_ACCOUNT[1]):
        raise SignInError(_l("Too many sign-in attempts. Wait a few minutes and try again."),
                          code="rate_limited", status=429)


def _refuse_if_locked(user: ConsoleUser, now: datetime) -> None:
    if user.locked_until is not None and user.locked_until > now:
        raise SignInError(_l("This account is locked after too many wrong passwords. Try again after "
                             "%(minutes)d minutes, or reset the password.",
                             minutes=max(1, int((user.locked_until - now).total_seconds() // 60) + 1)),
                          code="account_locked", status=423)


def _count_failure(user: ConsoleUser, now: datetime) -> None:
    user.failed_logins += 1
    if user.failed_logins >= MAX_FAILED_LOGINS:
        user.failed_logins, user.locked_until = 0, now + LOCKOUT
    db.session.commit()  # the failure counts even though the request fails


def authenticate(email: str, password: str) -> ConsoleUser:
    """The user these credentials belong to, or SignInError; counts failures, locks out."""
    key = (email or "").strip().lower()
    _limit_attempts(key)
    user = db.session.scalar(select(ConsoleUser).where(ConsoleUser.email == key))
    now = clock.now()
    if user is None:
        _hasher().hash(password or "x")  # the same time whether or not the account exists
        raise SignInError(_l("The email address or password is wrong."))
    _refuse_if_locked(user, now)
    if not password_matches(user, password or ""):
        _count_failure(user, now)
        raise SignInError(_l("The email address or password is wrong."))
    if user.email_verified_at is None:
        send_verification(user)
        db.session.commit()
        raise SignInError(_l("Confirm your email address first: we have sent you a new link."),
                          code="email_not_verified", status=403)
    user.failed_logins, user.locked_until = 0, None
    return user


def reauthenticate(user: ConsoleUser, password: str, code: str) -> None:
    """The signed-in user proves it again (password, and the TOTP code when enabled) before a
    sensitive action: rate-limited and counted towards the lockout like a sign-in."""
    _limit_attempts(user.email)
    now = clock.now()
    _refuse_if_locked(user, now)
    if not password_matches(user, password or "") or (
            user.totp_enabled_at is not None and not check_totp(user, code)):
        _count_failure(user, now)
        raise SignInError(_l("That did not match. Try again."), code="reauthentication_failed")
    user.failed_logins = 0
    db.session.flush()


def record_login(user: ConsoleUser) -> None:
    user.last_login_at = clock.now()
    db.session.flush()


# -- TOTP -----------------------------------------------------------------------------------------

def _totp_context(user: ConsoleUser) -> str:
    return f"{user.public_id}:totp"


def start_totp(user: ConsoleUser) -> tuple[str, str]:
    """A new, not yet enabled TOTP secret: (secret, otpauth:// URI for the authenticator app)."""
    secret = pyotp.random_base32()
    user.totp_secret, user.totp_enabled_at, user.totp_last_step = seal(secret.encode(), _totp_context(user)), None, None
    db.session.flush()
    return secret, pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)


def pending_totp(user: ConsoleUser) -> tuple[str, str] | None:
    """The secret being set up (not enabled yet), to show again after a mistyped code."""
    if user.totp_secret is None or user.totp_enabled_at is not None:
        return None
    secret = unseal(user.totp_secret, _totp_context(user)).decode()
    return secret, pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)


def check_totp(user: ConsoleUser, code: str) -> bool:
    """True for a current code not used before (one step of drift either way)."""
    if user.totp_secret is None:
        return False
    code = re.sub(r"\s", "", code or "")
    if not re.fullmatch(r"\d{6}", code):
        return False
    if not ratelimit.allow(f"totp:{user.public_id}", limit=10, window=600):
        raise SignInError(_l("Too many codes tried. Wait a few minutes and try again."), code="rate_limited",
                          status=429)
    totp = pyotp.TOTP(unseal(user.totp_secret, _totp_context(user)).decode())
    now = clock.now()
    for drift in (0, -1, 1):
        moment = now + timedelta(seconds=30 * drift)
        step = totp.timecode(moment)
        if secrets.compare_digest(totp.at(moment), code):
            # Each code once, even when two requests bring it at the same moment: the step
            # moves forward only where it is still behind.
            taken = db.session.execute(
                update(ConsoleUser).where(ConsoleUser.id == user.id, or_(ConsoleUser.totp_last_step.is_(None),
                                                                         ConsoleUser.totp_last_step < step))
                .values(totp_last_step=step).execution_options(synchronize_session=False)).rowcount
            if not taken:
                return False  # replayed
            db.session.refresh(user, ["totp_last_step"])
            return True
    return False


def enable_totp(user: ConsoleUser, code: str) -> None:
    if not check_totp(user, code):
        raise AccountError(_l("That code is not right. Type the 6 digits your app shows now."),
                           code="invalid_code", field="code")
    user.totp_enabled_at = clock.now()
    db.session.flush()


def disable_totp(user: ConsoleUser) -> None:
    user.totp_secret = user.totp_enabled_at = user.totp_last_step = None
    db.session.flush()


# -- memberships ---------------------------------------------------------------------------------

def memberships(user: ConsoleUser) -> list[tuple[Tenant, Role]]:
    """The organisations a user belongs to, with the role in each (platform-level query)."""
    from saas.db import all_tenants

    with all_tenants(db.session):
        rows = db.session.execute(select(Tenant, Membership.role).join(Membership, Membership.tenant_id == Tenant.id)
                                  .where(Membership.user_id == user.id).order_by(Tenant.display_name)).all()
    return [(tenant, role) for tenant, role in rows]


def role_in(user: ConsoleUser) -> Role | None:
    """The user's role in the session's tenant, or None."""
    return db.session.scalar(select(Membership.role).where(Membership.user_id == user.id))


def members() -> list[tuple[ConsoleUser, Role]]:
    rows = db.session.execute(select(ConsoleUser, Membership.role).join(Membership, Membership.user_id == ConsoleUser.id)
                              .order_by(ConsoleUser.email)).all()
    return [(user, role) for user, role in rows]


def owners_left(excluding: ConsoleUser) -> int:
    return db.session.scalar(select(func.count()).select_from(Membership).where(
        Membership.role == Role.OWNER, Membership.user_id != excluding.id)) or 0


def invite(tenant: Tenant, *, email: str, role: str, by: ConsoleUser) -> Invitation:
    email = normalise_email(email)
    try:
        chosen = Role(role)
    except ValueError:
        raise AccountError(_l("Choose a role."), code="invalid_role", field="role") from None
    existing = db.session.scalar(select(Membership.id).join(ConsoleUser, ConsoleUser.id == Membership.user_id)
                                 .where(ConsoleUser.email == email))
    if existing is not None:
        raise AccountError(_l("This person is already a member."), code="already_member", status=409, field="email")
    _withdraw(tenant, _pending_for(email), by=by, reason="invited_again")  # only the newest link works
    token = secrets.token_urlsafe(32)
    now = clock.now()
    invitation = Invitation(tenant_id=tenant.id, email=email, role=chosen, token_hash=token_hash(token),
                            invited_by=by.id, created_at=now, expires_at=now + INVITATION_LIFETIME)
    db.session.add(invitation)
    db.session.flush()
    link = _link("console.accept_invitation", token=token)
    subject = _("%(organisation)s invites you to Kakehashi", organisation=tenant.display_name)
    mail.send(email, subject, _("%(inviter)s invites you to join %(organisation)s on Kakehashi as %(role)s.\n\n"
                                "Accept within seven days:\n\n%(link)s\n",
                                inviter=by.name, organisation=tenant.display_name, role=chosen.value, link=link))
    return invitation


def pending_invitations() -> list[Invitation]:
    """The session's tenant's invitations still waiting for an answer, newest first."""
    return list(db.session.scalars(_pending().order_by(Invitation.id.desc())))


def withdraw_invitation(tenant: Tenant, invitation_id: str, *, by: ConsoleUser) -> Invitation:
    invitation = db.session.scalar(_pending().where(Invitation.public_id == invitation_id))
    if invitation is None:
        raise NotFound(_l("This invitation is used, withdrawn or expired."), code="invitation_not_found")
    _withdraw(tenant, [invitation], by=by, reason="withdrawn")
    return invitation


def _pending() -> Select[tuple[Invitation]]:
    return select(Invitation).where(Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None),
                                    Invitation.expires_at > clock.now())


def _pending_for(email: str) -> list[Invitation]:
    return list(db.session.scalars(_pending().where(Invitation.email == email)))


def _withdraw(tenant: Tenant, invitations: list[Invitation], *, by: ConsoleUser, reason: str) -> None:
    from saas.tenants import audit

    for invitation in invitations:
        invitation.revoked_at = clock.now()
        audit.record(tenant, "member.invitation_revoked", actor=by, target=invitation.public_id,
                     details={"email": invitation.email, "role": invitation.role.value, "reason": reason})
    db.session.flush()


def pending_invitation(token: str) -> tuple[Invitation, Tenant]:
    from saas.db import all_tenants

    with all_tenants(db.session):
        invitation = db.session.scalar(select(Invitation).where(Invitation.token_hash == token_hash(token)))
        if (invitation is None or invitation.accepted_at is not None or invitation.revoked_at is not None
                or invitation.expires_at <= clock.now()):
            raise NotFound(_l("This invitation is used, withdrawn or expired. Ask for a new one."),
                           code="invitation_not_found")
        tenant = db.session.get(Tenant, invitation.tenant_id)
        assert tenant is not None
        return invitation, tenant


def join_as_new(token: str, *, name: str, password: str) -> tuple[Tenant, ConsoleUser]:
    """An invited person without an account makes one; the link they opened proves the address."""
    invitation, _tenant = pending_invitation(token)
    if db.session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == invitation.email)) is not None:
        raise AccountError(_l("An account with this address exists already: sign in to accept."),
                           code="email_taken", status=409, field="email")
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise AccountError(_l("Enter your name (at most 200 characters)."), code="invalid_name", field="name")
    check_password(password, hints=[invitation.email, name])
    user = ConsoleUser(email=invitation.email, name=name, password_hash=hash_password(password), failed_logins=0,
                       is_operator=False, created_at=clock.now(), email_verified_at=clock.now())
    db.session.add(user)
    db.session.flush()
    return accept(token, user), user


def accept(token: str, user: ConsoleUser) -> Tenant:
    """The signed-in user joins the inviting organisation (the invitation was sent to them)."""
    invitation, tenant = pending_invitation(token)
    if invitation.email != user.email:
        raise AccountError(_l("This invitation was sent to another address. Sign in with %(email)s.",
                              email=invitation.email), code="invitation_for_someone_else", status=403)
    with tenant_scope(db.session, tenant.id):
        invitation = db.session.get(Invitation, invitation.id)
        assert invitation is not None
        invitation.accepted_at = clock.now()
        if role_in(user) is None:
            db.session.add(Membership(tenant_id=tenant.id, user_id=user.id, role=invitation.role,
                                      created_at=clock.now()))
        from saas.tenants import audit

        audit.record(tenant, "member.joined", actor=user, target=user.public_id,
                     details={"role": invitation.role.value})
    return tenant



def change_role(tenant: Tenant, member: ConsoleUser, role: str, *, by: ConsoleUser, by_role: Role) -> None:
    try:
        chosen = Role(role)
    except ValueError:
        raise AccountError(_l("Choose a role."), code="invalid_role", field="role") from None
    membership = db.session.scalar(select(Membership).where(Membership.user_id == member.id))
    if membership is None:
        raise NotFound(_l("This person is not a member."), code="member_not_found")
    _check_owner_rules(membership.role, chosen, member, by_role)
    membership.role = chosen
    db.session.flush()


def remove(tenant: Tenant, member: ConsoleUser, *, by: ConsoleUser, by_role: Role) -> None:
    membership = db.session.scalar(select(Membership).where(Membership.user_id == member.id))
    if membership is None:
        raise NotFound(_l("This person is not a member."), code="member_not_found")
    _check_owner_rules(membership.role, None, member, by_role)
    db.session.delete(membership)
    _withdraw(tenant, _pending_for(member.email), by=by, reason="member_removed")  # no way back in


def _check_owner_rules(current: Role, new: Role | None, member: ConsoleUser, by_role: Role) -> None:
    """Only an owner touches owners or makes one; an organisation always keeps an owner."""
    if (current is Role.OWNER or new is Role.OWNER) and by_role is not Role.OWNER:
        raise AccountError(_l("Only an owner can change or remove an owner."), code="owner_only", status=403)
    if current is Role.OWNER and new is not Role.OWNER and owners_left(member) == 0:
        raise AccountError(_l("The organisation needs at least one owner: make someone else owner first."),
                           code="last_owner", status=409)


RESET_LIFETIME = timedelta(hours=1)


def send_reset(email: str) -> None:
    """A password-reset link, if the address has an account (the caller says the same either way)."""
    try:
        address = normalise_email(email)
    except AccountError:
        return
    if not ratelimit.allow(f"reset:{token_hash(address)}", limit=5, window=3600):
        return
    user = db.session.scalar(select(ConsoleUser).where(ConsoleUser.email == address))
    if user is None:
        return
    token = secrets.token_urlsafe(32)
    db.session.add(EmailToken(user_id=user.id, purpose="reset", token_hash=token_hash(token),
                              expires_at=clock.now() + RESET_LIFETIME))
    mail.send(user.email, _("Reset your Kakehashi password"),
              _("Hello %(name)s,\n\nopen this link within an hour to choose a new password:\n\n%(link)s\n\n"
                "If you did not ask for it, ignore this message; your password stays as it is.\n",
                name=user.name, link=_link("console.reset_password", token=token)))


def reset_user(token: str) -> ConsoleUser:
    row = db.session.scalar(select(EmailToken).where(EmailToken.token_hash == token_hash(token),
                                                     EmailToken.purpose == "reset"))
    if row is None or row.used_at is not None or row.expires_at <= clock.now():
        raise AccountError(_l("This reset link is used or expired. Ask for a new one."), code="invalid_token",
                           status=400)
    user = db.session.get(ConsoleUser, row.user_id)
    assert user is not None
    return user


def reset_password(token: str, password: str) -> ConsoleUser:
    """A new password from a reset link; every existing session of the account ends."""
    user = reset_user(token)
    set_password(user, password)
    for row in db.session.scalars(select(EmailToken).where(EmailToken.user_id == user.id,
                                                           EmailToken.purpose == "reset",
                                                           EmailToken.used_at.is_(None))):
        row.used_at = clock.now()
    user.email_verified_at = user.email_verified_at or clock.now()  # the link proved the address
    db.session.flush()
    return user


def set_password(user: ConsoleUser, password: str) -> None:
    check_password(password, hints=[user.email, user.name])
    user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until = 0, None
    end_sessions(user)


def end_sessions(user: ConsoleUser) -> None:
    """Every session of the account ends, in every browser and every copy of its cookie: a
    session is valid only while it carries the account's current epoch."""
    user.session_epoch = (user.session_epoch or 0) + 1
    db.session.flush()
