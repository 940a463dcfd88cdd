"""Ending a session: RP-initiated logout and back-channel logout notices.

Logging out ends the browser's session at the tenant's provider, revokes what the
session granted (refresh tokens and their access tokens), and tells every client that
registered a ``backchannel_logout_uri`` with a signed logout token (OpenID Connect
Back-Channel Logout 1.0). The notices are jobs submitted when the logout commits.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import current_app
from joserfc import jwt
from sqlalchemy import select, update

from saas import clock, db, jobs
from saas.events import relay
from saas.events import services as events
from saas.oidc import keys
from saas.oidc.authorize import _hinted_claims, current_session
from saas.oidc.models import AuthorizationCode, Grant, LoginSession, OIDCClient
from saas.oidc.server import ID_TOKEN_ALG, issuer, revoke_grant, timestamp
from saas.tenants.context import current_tenant

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_LIFETIME = 600  # seconds: long enough for a queued notice to arrive
NOTICE_TIMEOUT = 5


@dataclass(frozen=True)
class LogoutRequest:
    client: OIDCClient | None
    post_logout_redirect_uri: str | None
    state: str | None
    hinted_sub: str | None


def parse(params: dict[str, str]) -> LogoutRequest:
    """The RP's logout request; a redirect URI is honoured only if registered exactly."""
    claims = _hinted_claims(params["id_token_hint"]) if params.get("id_token_hint") else None
    client_id = params.get("client_id") or (claims or {}).get("aud")
    client = None
    if isinstance(client_id, str) and client_id.startswith("cli_"):
        client = db.session.scalar(select(OIDCClient).where(OIDCClient.public_id == client_id))
    if claims is not None and client is not None and claims.get("aud") != client.public_id:
        client = None  # a hint for one client and a client_id of another: trust neither
    redirect = params.get("post_logout_redirect_uri")
    if redirect and (client is None or redirect not in json.loads(client.post_logout_redirect_uris)):
        redirect = None
    return LogoutRequest(client=client, post_logout_redirect_uri=redirect, state=params.get("state"),
                         hinted_sub=(claims or {}).get("sub"))


def needs_confirmation(request: LogoutRequest) -> bool:
    """Without a hint naming the session's person, a page could log people out at will:
    the person confirms."""
    session = current_session()
    return session is not None and request.hinted_sub != session.sub


def end_session() -> int:
    """End this browser's session; returns how many clients are notified."""
    session = current_session()
    if session is None:
        return 0
    return end(session)


def end(session: LoginSession) -> int:
    session.ended_at = now = clock.now()
    # A code the session issued and the client has not exchanged yet would outlive the
    # logout: spent now, its exchange is refused.
    db.session.execute(update(AuthorizationCode).where(AuthorizationCode.sid == session.sid,
                                                       AuthorizationCode.used_at.is_(None)).values(used_at=now))
    events.emit(current_tenant(), "oidc.session.ended", f"sub:{session.sub}",
                {"sub": session.sub, "sid": session.sid, "reason": "logout"})
    grants = list(db.session.scalars(select(Grant).where(Grant.sid == session.sid)))
    for grant in grants:
        revoke_grant(grant.id, "logout")
    notified = 0
    for client_id in sorted({grant.client_id for grant in grants}):
        client = db.session.get(OIDCClient, client_id)
        if client is None or not client.backchannel_logout_uri:
            continue
        token = logout_token(client, session)
        jobs.enqueue("webhooks", send_logout_token, client.backchannel_logout_uri, token)
        notified += 1
    db.session.flush()
    return notified


def logout_token(client: OIDCClient, session: LoginSession) -> str:
    now = timestamp(clock.now())
    kid, key = keys.signing_key(current_tenant(), ID_TOKEN_ALG)
    claims = {"iss": issuer(), "aud": client.public_id, "iat": now, "exp": now + LOGOUT_TOKEN_LIFETIME,
              "jti": secrets.token_urlsafe(16), "sub": session.sub, "sid": session.sid,
              "events": {LOGOUT_EVENT: {}}}
    return jwt.encode({"alg": ID_TOKEN_ALG, "typ": "logout+jwt", "kid": kid}, claims, key)


def send_logout_token(uri: str, token: str) -> dict[str, Any]:
    """POST the logout token (a job) as webhooks are posted (addresses checked and pinned,
    no redirect, no proxy); a failure raises, so the job is retried or recorded."""
    body = urlencode({"logout_token": token}).encode()
    # Not a webhook delivery: no delivery or tenant to record the attempt against.
    notice = relay.Outgoing(delivery_id=0, tenant_id=0, url=uri, body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cache-Control": "no-store",
        "User-Agent": relay.USER_AGENT})
    outcome = relay.post(notice, allow_private=bool(current_app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"]),
                         timeout=NOTICE_TIMEOUT)
    if not outcome.succeeded:
        raise RuntimeError(f"back-channel logout to {uri} failed: {outcome.error}")
    return {"status": outcome.status_code}


def redirect_after(request: LogoutRequest) -> str | None:
    if request.post_logout_redirect_uri is None:
        return None
    if not request.state:
        return request.post_logout_redirect_uri
    separator = "&" if "?" in request.post_logout_redirect_uri else "?"
    return request.post_logout_redirect_uri + separator + urlencode({"state": request.state})
