"""Console sign-in with the My Number Card, through the service's own OpenID Provider.

The platform keeps a tenant of its own (``CONSOLE_OIDC_TENANT``, made by ``kakehashi
console-card setup``) with one client, the console. A console user links their card once
(signed in, with recent authentication); afterwards the card alone signs them in: it is two
factors already (the card, and the PIN typed into the bridge agent). The console redeems its
codes in-process with the provider's own checks (single use, exact redirect URI, PKCE S256).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import urlencode

from flask import current_app, session
from flask_babel import lazy_gettext as _l
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import select

from saas import db, urls
from saas.db import tenant_scope
from saas.errors import ServiceError
from saas.oidc import clients
from saas.oidc.models import OIDCClient
from saas.oidc.server import redeem_first_party_code
from saas.tenants import services as tenants
from saas.tenants.models import ConsoleUser, Tenant

CLIENT_NAME = "Kakehashi console"
SESSION_KEY = "console_card"


class CardLoginError(ServiceError):
    status = 400
    code = "card_login_failed"


def callback_url() -> str:
    return urls.external("console.card_callback")


def _tenant() -> Tenant | None:
    return tenants.find_by_slug(current_app.config["CONSOLE_OIDC_TENANT"])


def _client(tenant: Tenant) -> OIDCClient | None:
    with tenant_scope(db.session, tenant.id):
        return db.session.scalar(select(OIDCClient).where(OIDCClient.name == CLIENT_NAME))


def available() -> bool:
    tenant = _tenant()
    return tenant is not None and _client(tenant) is not None


def setup(service_url: str) -> tuple[Tenant, str]:
    """The platform's tenant and the console's client (idempotent); (tenant, client_id)."""
    tenant = _tenant()
    if tenant is None:
        tenant = tenants.create_tenant(slug=current_app.config["CONSOLE_OIDC_TENANT"],
                                       display_name="架け橋コンソール (Kakehashi console)", kind="other")
    redirect = f"{service_url.rstrip('/')}/console/card/callback"
    with tenant_scope(db.session, tenant.id):
        client = db.session.scalar(select(OIDCClient).where(OIDCClient.name == CLIENT_NAME))
        if client is None:
            # Codes are redeemed in-process, never at the token endpoint: the registered key
            # is a public key whose private half was thrown away.
            key = ECKey.generate_key("P-256", {"use": "sig"})
            jwks = json.dumps(KeySet([ECKey.import_key(key.as_dict(private=False))]).as_dict())
            client, _ = clients.register_client(tenant, name=CLIENT_NAME, redirect_uris=[redirect], scopes=["openid"],
                                                auth_method="private_key_jwt", jwks=jwks)
        elif redirect not in json.loads(client.redirect_uris):
            client.redirect_uris = json.dumps([*json.loads(client.redirect_uris), redirect])
        db.session.flush()
        return tenant, client.public_id


def begin(purpose: str) -> str:
    """Where to send the browser: the platform provider's authorize endpoint."""
    tenant = _tenant()
    client = _client(tenant) if tenant else None
    if tenant is None or client is None:
        raise CardLoginError(_l("Sign-in with the My Number Card is not set up on this service."),
                             code="card_login_unavailable", status=404)
    verifier, state, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    session[SESSION_KEY] = {"state": state, "verifier": verifier, "purpose": purpose}
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({"response_type": "code", "client_id": client.public_id, "redirect_uri": callback_url(),
                       "scope": "openid", "state": state, "nonce": nonce, "code_challenge": challenge,
                       "code_challenge_method": "S256", "prompt": "login"})
    return f"/t/{tenant.slug}/authorize?{query}"


def complete(args: dict[str, str]) -> tuple[str, str]:
    """(purpose, the card's sub) from the provider's redirect back."""
    pending = session.pop(SESSION_KEY, None)
    if not pending or not secrets.compare_digest(str(args.get("state", "")), pending["state"]):
        raise CardLoginError(_l("This sign-in did not start here, or it was already finished. Start again."))
    if args.get("error"):
        raise CardLoginError(args.get("error_description") or args["error"], code=args["error"])
    tenant = _tenant()
    assert tenant is not None
    with tenant_scope(db.session, tenant.id):
        client = db.session.scalar(select(OIDCClient).where(OIDCClient.name == CLIENT_NAME))
        sub = redeem_first_party_code(client, str(args.get("code", "")), verifier=pending["verifier"],
                                      redirect_uri=callback_url()) if client else None
    if sub is None:
        raise CardLoginError(_l("The sign-in could not be completed. Start again."))
    return pending["purpose"], sub


def user_of(sub: str) -> ConsoleUser | None:
    return db.session.scalar(select(ConsoleUser).where(ConsoleUser.card_sub == sub))


def link(user: ConsoleUser, sub: str) -> None:
    other = user_of(sub)
    if other is not None and other.id != user.id:
        raise CardLoginError(_l("This card is linked to another console account already."), code="card_in_use",
                             status=409)
    user.card_sub = sub
    db.session.flush()
