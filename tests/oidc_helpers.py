"""A relying party for tests: registers clients, walks the code flow through the login
page's steps with a sandbox card (the agent's part done in-process), and calls the
token endpoint with private_key_jwt or client_secret_basic."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Flask
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from saas import db
from saas.db import tenant_scope
from saas.oidc import clients
from saas.tenants import services as tenants
from tests.test_jpki_webeid import sign_token

REDIRECT_URI = "https://rp.example/callback"
ORIGIN = "http://localhost"


@dataclass
class RP:
    """One registered client and what it needs to talk to the provider."""

    slug: str
    client_id: str
    key: ECKey | None = None
    secret: str | None = None
    verifier: str = ""
    nonce: str = ""
    state: str = ""
    used_jtis: list[str] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"http://localhost/t/{self.slug}"

    def authorize_params(self, scope: str = "openid", **extra: str) -> dict[str, str]:
        self.verifier = secrets.token_urlsafe(48)
        self.nonce, self.state = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(self.verifier.encode()).digest()).rstrip(b"=").decode()
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT_URI,
                  "scope": scope, "state": self.state, "nonce": self.nonce, "code_challenge": challenge,
                  "code_challenge_method": "S256"}
        params.update(extra)
        return {key: value for key, value in params.items() if value is not None}

    def assertion(self, *, jti: str | None = None, lifetime: int = 60, audience: str | None = None,
                  issued: int | None = None) -> str:
        assert self.key is not None
        now = issued if issued is not None else int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience or f"{self.issuer}/token",
                  "jti": jti or secrets.token_urlsafe(12), "iat": now, "exp": now + lifetime}
        return jwt.encode({"alg": "ES256", "kid": self.key.kid}, claims, self.key)

    def auth(self, **assertion: Any) -> tuple[dict[str, str], dict[str, str]]:
        """(form fields, headers) that authenticate this client."""
        if self.secret is not None:
            basic = base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()
            return {}, {"Authorization": f"Basic {basic}"}
        return {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": self.assertion(**assertion)}, {}

    def post(self, client: Any, path: str, form: dict[str, str], **assertion: Any) -> Any:
        fields, headers = self.auth(**assertion)
        return client.post(f"/t/{self.slug}/{path}", data={**form, **fields}, headers=headers)

    def exchange(self, client: Any, code: str, *, verifier: str | None = None, **assertion: Any) -> Any:
        return self.post(client, "token", {"grant_type": "authorization_code", "code": code,
                                           "redirect_uri": REDIRECT_URI,
                                           "code_verifier": verifier if verifier is not None else self.verifier},
                         **assertion)


def issue_card(app: Flask, seed: int) -> Any:
    """A sandbox card, with the sandbox CA's revocation data refreshed so it verifies."""
    from saas.sandbox import jobs as sandbox_jobs
    from saas.sandbox import services as sandbox

    with app.app_context():
        issued = sandbox.issue_card(seed=seed)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
    return issued


def api_key(app: Flask, slug: str, *scopes: str) -> dict[str, str]:
    """Headers carrying a new API key of the tenant ``slug`` with ``scopes`` (English answers)."""
    from saas.tenants import apikeys

    with app.app_context():
        tenant = tenants.active_tenant(slug)
        with tenant_scope(db.session, tenant.id):
            _row, value = apikeys.create(tenant, name=f"{slug} system", scopes=list(scopes), expires_at=None, by=None)
        db.session.commit()
    return {"Authorization": f"Bearer {value}", "Accept-Language": "en"}


def register(app: Flask, slug: str, *, scopes: str = "openid name address birthdate gender",
             basic: bool = False, redirect_uris: list[str] | None = None, **extra: Any) -> RP:
    with app.app_context():
        tenant = tenants.active_tenant(slug)
        with tenant_scope(db.session, tenant.id):
            if basic:
                client, secret = clients.register_client(
                    tenant, name="テスト RP", redirect_uris=redirect_uris or [REDIRECT_URI],
                    scopes=scopes.split(), auth_method="client_secret_basic", **extra)
                rp = RP(slug, client.public_id, secret=secret)
            else:
                key = ECKey.generate_key("P-256", {"use": "sig"})
                key = ECKey.import_key(key.as_dict(private=True) | {"kid": key.thumbprint()})
                public = KeySet([ECKey.import_key(key.as_dict(private=False))]).as_dict()
                client, _ = clients.register_client(
                    tenant, name="テスト RP", redirect_uris=redirect_uris or [REDIRECT_URI],
                    scopes=scopes.split(), auth_method="private_key_jwt", jwks=json.dumps(public), **extra)
                rp = RP(slug, client.public_id, key=key)
            db.session.commit()
    return rp


def csrf_of(page: str) -> str:
    match = re.search(r'data-csrf="([^"]+)"', page)
    assert match, "the login page carries a CSRF token"
    return match.group(1)


def start(client: Any, rp: RP, **params: str) -> Any:
    """GET /authorize; returns the response (a redirect to the login page or to the RP)."""
    return client.get(f"/t/{rp.slug}/authorize?" + urlencode(rp.authorize_params(**params)))


def agent_token(card: Any, challenge: str, origin: str = ORIGIN) -> dict[str, Any]:
    return sign_token(card, origin, challenge)


def agent_signature(card: Any, digest_b64: str) -> dict[str, str]:
    """What the agent answers to a sign operation: PKCS#1 v1.5 over the given digest."""
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    digest = base64.b64decode(digest_b64)
    signature = card.signature.key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    return {"signature": base64.b64encode(signature).decode(), "algorithm": "RS256",
            "certificate": base64.b64encode(card.signature.certificate.public_bytes(Encoding.DER)).decode()}


def log_in(client: Any, rp: RP, card: Any, *, release: bool = True, **params: str) -> dict[str, Any]:
    """The whole browser side; returns the parameters the RP's redirect URI received."""
    response = start(client, rp, **params)
    location = response.headers["Location"]
    if location.startswith(REDIRECT_URI):
        return callback(location)
    return card_steps(client, location, card, release=release)


def card_steps(client: Any, login_url: str, card: Any, *, release: bool = True,
               fresh_challenge: bool = False) -> dict[str, Any]:
    path = urlsplit(login_url).path
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)
    html = page.get_data(as_text=True)
    headers = {"X-CSRFToken": csrf_of(html), "Accept": "application/json"}
    challenge = re.search(r'data-challenge="([^"]*)"', html).group(1)  # type: ignore[union-attr]
    if fresh_challenge:  # what the page does on a retry
        challenge = client.post(f"{path}/challenge", json={}, headers=headers).get_json()["challenge"]
    answer = client.post(f"{path}/card", json={"token": agent_token(card, challenge)}, headers=headers)
    body = answer.get_json()
    if answer.status_code != 200:
        return {"status": answer.status_code, **body}
    while body.get("next") == "sign":
        if not release:
            return body
        answer = client.post(f"{path}/release", json=agent_signature(card, body["digest"]), headers=headers)
        body = answer.get_json()
        if answer.status_code != 200:
            return {"status": answer.status_code, **body}
    if not body["redirect"].startswith(REDIRECT_URI):
        return body  # not a relying party's redirect (the device flow's "done" page)
    return callback(body["redirect"])


def callback(location: str) -> dict[str, Any]:
    assert location.startswith(REDIRECT_URI), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
