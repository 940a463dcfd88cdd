"""Relying parties of a tenant's OpenID Provider: registration and their credentials.

Redirect URIs are compared exactly at authorization time, so they are validated strictly
here: https (http only on loopback, for development), no fragment, no wildcard.
``private_key_jwt`` clients give a JWKS or an https ``jwks_uri``; ``client_secret_basic``
is for sandbox tenants only, and the secret is shown once and kept only as a scrypt hash.
The URLs the service itself calls (``jwks_uri``, ``backchannel_logout_uri``) follow the
webhook rules: a public address unless private networks are allowed, and are called as
webhooks are posted (addresses checked and pinned, no redirect, no proxy).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import pycurl
from authlib.oauth2.rfc6749.errors import InvalidClientError
from flask import current_app
from flask_babel import lazy_gettext as _l
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from saas import clock, db
from saas.errors import ServiceError
from saas.events import relay
from saas.events import services as events
from saas.oidc.models import ClientAuthMethod, OIDCClient
from saas.tenants.models import Tenant, TenantMode

SCOPES = ("openid", "name", "address", "birthdate", "gender", "sign")
MAX_REDIRECT_URIS = 20
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class ClientError(ServiceError):
    status = 422


def validate_redirect_uri(uri: str) -> str:
    parts = urlsplit(uri)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not (parts.scheme == "https" or loopback) or not parts.hostname:
        raise ClientError(_l("A redirect URI must be https (http only on this computer's loopback)."),
                          code="invalid_redirect_uri", field="redirect_uris")
    if parts.fragment or "#" in uri or "*" in uri or parts.username or parts.password:
        raise ClientError(_l("A redirect URI has no fragment, wildcard or user name."),
                          code="invalid_redirect_uri", field="redirect_uris")
    return uri


def register_client(tenant: Tenant, *, name: str, redirect_uris: list[str], scopes: list[str],
                    auth_method: str, jwks: str | None = None, jwks_uri: str | None = None,
                    post_logout_redirect_uris: list[str] | None = None,
                    backchannel_logout_uri: str | None = None) -> tuple[OIDCClient, str | None]:
    """Register a client; returns it and, for client_secret_basic, its secret (shown once)."""
    values = _validated(name=name, redirect_uris=redirect_uris, scopes=scopes,
                        post_logout_redirect_uris=post_logout_redirect_uris,
                        backchannel_logout_uri=backchannel_logout_uri)
    try:
        method = ClientAuthMethod(auth_method)
    except ValueError:
        raise ClientError(_l("Unknown client authentication method."), code="invalid_auth_method",
                          field="auth_method") from None
    secret = secret_hash = None
    if method is ClientAuthMethod.CLIENT_SECRET_BASIC:
        if tenant.mode is not TenantMode.SANDBOX:
            raise ClientError(_l("Live clients authenticate with private_key_jwt."),
                              code="invalid_auth_method", field="auth_method")
        secret = secrets.token_urlsafe(32)
        secret_hash = hash_secret(secret)
        jwks = jwks_uri = None
    else:
        jwks = _validated_jwks(jwks, jwks_uri)
        jwks_uri = jwks_uri or None
    client = OIDCClient(tenant_id=tenant.id, auth_method=method, jwks=jwks, jwks_uri=jwks_uri,
                        secret_hash=secret_hash, created_at=clock.now(), **values)
    db.session.add(client)
    db.session.flush()
    return client, secret


def update_client(client: OIDCClient, *, name: str, redirect_uris: list[str], scopes: list[str],
                  jwks: str | None = None, jwks_uri: str | None = None,
                  post_logout_redirect_uris: list[str] | None = None,
                  backchannel_logout_uri: str | None = None) -> OIDCClient:
    """Change what a client may do; its id, authentication method and secret stay."""
    values = _validated(name=name, redirect_uris=redirect_uris, scopes=scopes,
                        post_logout_redirect_uris=post_logout_redirect_uris,
                        backchannel_logout_uri=backchannel_logout_uri)
    if client.auth_method is ClientAuthMethod.PRIVATE_KEY_JWT:
        client.jwks, client.jwks_uri = _validated_jwks(jwks, jwks_uri), jwks_uri or None
        _FETCHED.pop(jwks_uri or "", None)
    for key, value in values.items():
        setattr(client, key, value)
    db.session.flush()
    return client


def _validated(*, name: str, redirect_uris: list[str], scopes: list[str],
               post_logout_redirect_uris: list[str] | None, backchannel_logout_uri: str | None) -> dict[str, Any]:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ClientError(_l("The name must be 1–200 characters."), code="invalid_name", field="name")
    redirect_uris = [u.strip() for u in redirect_uris if u.strip()]
    if not redirect_uris or len(redirect_uris) > MAX_REDIRECT_URIS:
        raise ClientError(_l("Give 1–20 redirect URIs."), code="invalid_redirect_uri", field="redirect_uris")
    uris = [validate_redirect_uri(u) for u in redirect_uris]
    logout_uris = [validate_redirect_uri(u.strip()) for u in post_logout_redirect_uris or [] if u.strip()]
    if len(logout_uris) > MAX_REDIRECT_URIS:
        raise ClientError(_l("Give 1–20 redirect URIs."), code="invalid_redirect_uri",
                          field="post_logout_redirect_uris")
    if backchannel_logout_uri and backchannel_logout_uri.strip():
        backchannel_logout_uri = _called_url(backchannel_logout_uri, code="invalid_backchannel_logout_uri",
                                             field="backchannel_logout_uri")
    else:
        backchannel_logout_uri = None
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or "openid" not in scopes:
        raise ClientError(_l("Scopes are openid plus any of name, address, birthdate, gender, sign."),
                          code="invalid_scope", field="scopes")
    return {"name": name, "redirect_uris": json.dumps(uris, ensure_ascii=False),
            "scopes": json.dumps(sorted(set(scopes))),
            "post_logout_redirect_uris": json.dumps(logout_uris, ensure_ascii=False),
            "backchannel_logout_uri": backchannel_logout_uri}


def _validated_jwks(jwks: str | None, jwks_uri: str | None) -> str | None:
    if bool(jwks) == bool(jwks_uri):
        raise ClientError(_l("private_key_jwt needs a JWKS or a jwks_uri (one of them)."),
                          code="invalid_jwks", field="jwks")
    if jwks_uri:
        if urlsplit(jwks_uri).scheme != "https":
            raise ClientError(_l("The jwks_uri must be https."), code="invalid_jwks", field="jwks_uri")
        _called_url(jwks_uri, code="invalid_jwks", field="jwks_uri")
        return None
    try:
        key_set = KeySet.import_key_set(json.loads(jwks or ""))
    except (ValueError, JoseError, TypeError, KeyError):
        raise ClientError(_l("The JWKS is not a valid JSON Web Key Set."), code="invalid_jwks",
                          field="jwks") from None
    if any(key.is_private for key in key_set.keys):
        raise ClientError(_l("The JWKS holds a private key: give only the public keys."),
                          code="invalid_jwks", field="jwks")
    return json.dumps(key_set.as_dict(private=False), sort_keys=True)


def _called_url(url: str, *, code: str, field: str) -> str:
    """A URL the service will call, by the webhook rules (no private address unless allowed)."""
    try:
        return events.validate_url(url)
    except events.WebhookError as error:
        raise ClientError(error.message, code=code, field=field) from None


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def secret_matches(client: OIDCClient, secret: str) -> bool:
    if client.secret_hash is None:
        return False
    _, salt, digest = client.secret_hash.split("$")
    candidate = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), **_SCRYPT)
    return hmac.compare_digest(candidate, base64.b64decode(digest))


def rotate_secret(client: OIDCClient) -> str:
    if client.auth_method is not ClientAuthMethod.CLIENT_SECRET_BASIC:
        raise ClientError(_l("This client has no secret: it uses private_key_jwt."),
                          code="invalid_auth_method", field="auth_method")
    secret = secrets.token_urlsafe(32)
    client.secret_hash = hash_secret(secret)
    db.session.flush()
    return secret


JWKS_URI_TTL = 300  # seconds a fetched jwks_uri key set is used before it is fetched again
JWKS_URI_TIMEOUT = 5  # seconds
JWKS_URI_MAX_BYTES = 64 * 1024
_FETCHED: dict[str, tuple[float, KeySet]] = {}
_PARSED: dict[str, KeySet] = {}  # a registered JWKS (public keys only) → its parsed key set


def public_keys(client: OIDCClient) -> KeySet:
    """The client's key set for private_key_jwt: registered, or fetched from its jwks_uri."""
    if client.jwks:
        parsed = _PARSED.get(client.jwks)
        if parsed is None:
            if len(_PARSED) >= 1000:
                _PARSED.clear()
            parsed = _PARSED[client.jwks] = KeySet.import_key_set(json.loads(client.jwks))
        return parsed
    if not client.jwks_uri:
        raise ClientError(_l("This client has no keys."), code="invalid_client")
    now = time.monotonic()
    cached = _FETCHED.get(client.jwks_uri)
    if cached is None or now - cached[0] > JWKS_URI_TTL:
        try:
            key_set = KeySet.import_key_set(json.loads(fetch_key_set(client.jwks_uri)))
        except (OSError, ValueError, JoseError, TypeError, KeyError):
            raise InvalidClientError(description="The client's jwks_uri could not be fetched or does not hold "
                                                 "a JSON Web Key Set.") from None
        cached = _FETCHED[client.jwks_uri] = (now, KeySet([k for k in key_set.keys if not k.is_private]))
    return cached[1]


def fetch_key_set(uri: str) -> bytes:
    """GET a jwks_uri as webhooks are posted: the host's addresses checked (a non-public
    one refused unless WEBHOOK_ALLOW_PRIVATE_NETWORKS) and libcurl pinned to them, no
    redirect followed, no proxy. OSError when there is no 200 answer."""
    host, port = relay.host_and_port(uri)
    target = relay.vet(host, port, bool(current_app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"]))
    if isinstance(target, relay.Outcome):
        raise OSError(target.error)
    resolve, _addresses = target
    body = bytearray()

    def take(chunk: bytes) -> int:
        body.extend(chunk)
        return len(chunk) if len(body) <= JWKS_URI_MAX_BYTES else 0  # 0: stop reading

    handle = pycurl.Curl()
    try:
        handle.setopt(pycurl.URL, uri)
        handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTPS)
        handle.setopt(pycurl.PROXY, "")  # never a proxy from the environment
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.TIMEOUT_MS, JWKS_URI_TIMEOUT * 1000)
        handle.setopt(pycurl.RESOLVE, [resolve])
        handle.setopt(pycurl.WRITEFUNCTION, take)
        handle.setopt(*relay.trust_store())
        handle.perform()
        status = handle.getinfo(pycurl.RESPONSE_CODE)
    except pycurl.error as error:
        raise OSError(f"{uri}: {error.args[-1]}") from None
    finally:
        handle.close()
    if status != 200:
        raise OSError(f"{uri} answered {status}")
    return bytes(body)
