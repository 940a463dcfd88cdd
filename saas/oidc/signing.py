"""Sign transactions, in the Digital Agency's dialect: patient consent, applications,
agreements signed with the card's signature key.

1. The client, with a client-credentials token of scope ``sign``, registers a SHA-256
   digest (raw or as a DigestInfo) and the text the person will read.
2. It sends the person through an authorization request with ``scope=openid sign`` and
   ``sign_transaction_id``; after the card login the agent shows the text and signs the
   digest with the signature key (signature password).
3. The client fetches the signature, the certificate and the verification result.
"""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from datetime import datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from saas import clock, db
from saas.errors import NotFound, ServiceError
from saas.jpki.signatures import VerifiedSignature
from saas.oidc.models import OIDCClient, SignStatus, SignTransaction
from saas.oidc.server import CLIENT_AUTH_METHODS, bearer
from saas.tenants.context import current_tenant

LIFETIME = timedelta(hours=24)  # to sign, and then to fetch the result
MAX_TEXT = 2000
# DER prefix of a DigestInfo with SHA-256 (RFC 8017 §9.2 note 1).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


class SignError(ServiceError):
    status = 422


class Unauthorized(ServiceError):
    status = 401
    code = "invalid_token"


class SignCredentials(grants.ClientCredentialsGrant):
    """Client credentials, for the sign-transaction API only (scope ``sign``)."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_token_request(self) -> None:
        super().validate_token_request()
        if (self.request.payload.scope or "").split() != ["sign"]:
            raise InvalidScopeError("Client credentials are for scope=sign only.")


def api_client() -> OIDCClient:
    """The client a client-credentials token of scope ``sign`` speaks for."""
    live = bearer()
    if live is None:
        raise Unauthorized(_l("The access token is missing, invalid, expired or revoked."))
    claims = live[0]
    if "sign" not in str(claims.get("scope", "")).split() or claims.get("sub") != claims.get("client_id"):
        raise ServiceError(_l("This API needs a client-credentials token with scope sign."),
                           code="insufficient_scope", status=403)
    client = db.session.scalar(select(OIDCClient).where(OIDCClient.public_id == claims["client_id"]))
    if client is None:
        raise Unauthorized(_l("The access token is missing, invalid, expired or revoked."))
    return client


def register(client: OIDCClient, body: Any) -> SignTransaction:
    if not isinstance(body, dict):
        raise SignError(_l("Send a JSON object."), code="malformed")
    try:
        raw = base64.b64decode(str(body.get("digest", "")), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == len(SHA256_DIGEST_INFO) + 32 and raw.startswith(SHA256_DIGEST_INFO):
        raw = raw[len(SHA256_DIGEST_INFO):]
    if len(raw) != 32:
        raise SignError(_l("digest must be a base64 SHA-256 digest (32 bytes) or its DigestInfo."),
                        code="invalid_digest", field="digest")
    text = body.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT or not _displayable(text):
        raise SignError(_l("text must be 1–2000 characters a person can read: no control or "
                           "direction-changing characters."), code="invalid_text", field="text")
    if "sign" not in json.loads(client.scopes):
        raise SignError(_l("This client is not allowed the sign scope."), code="invalid_scope", status=403)
    now = clock.now()
    transaction = SignTransaction(tenant_id=current_tenant().id, client_id=client.id, digest=raw, text=text,
                                  status=SignStatus.PENDING, created_at=now, expires_at=now + LIFETIME)
    db.session.add(transaction)
    db.session.flush()
    return transaction


def _displayable(text: str) -> bool:
    return all(ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf", "Co", "Cs") for ch in text)


def find(client: OIDCClient, public_id: str) -> SignTransaction:
    """The client's own transaction; another client's (or tenant's) is a 404."""
    row = db.session.scalar(select(SignTransaction).where(SignTransaction.public_id == public_id,
                                                          SignTransaction.client_id == client.id))
    if row is None or row.expires_at <= clock.now():
        raise NotFound(_l("No such sign transaction (or it has expired)."))
    return row


def pending(client_id: int, public_id: str | None) -> SignTransaction | None:
    if not public_id:
        return None
    row = db.session.scalar(select(SignTransaction).where(SignTransaction.public_id == public_id,
                                                          SignTransaction.client_id == client_id))
    if row is None or row.status is not SignStatus.PENDING or row.expires_at <= clock.now():
        return None
    return row


def record(row: SignTransaction, *, sub: str, signature: bytes, certificate: bytes,
           verified: VerifiedSignature, at: datetime) -> None:
    row.status, row.sub, row.signature, row.certificate, row.signed_at = (
        SignStatus.SIGNED, sub, signature, certificate, at)
    row.verification = json.dumps({
        "valid": True, "checked_at": at.isoformat(), "certificate_status": "good",
        "root_generation": verified.root_generation, "serial": format(verified.serial, "x"),
        "certificate_sha256": verified.fingerprint, "revocation_source": "crl"})
    db.session.flush()


def describe(row: SignTransaction) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row.public_id, "status": row.status.value, "digest": base64.b64encode(row.digest).decode(),
        "text": row.text, "created_at": row.created_at.isoformat(), "expires_at": row.expires_at.isoformat()}
    if row.status is SignStatus.SIGNED:
        assert row.signature is not None and row.certificate is not None and row.signed_at is not None
        body.update(sub=row.sub, algorithm="RS256", signature=base64.b64encode(row.signature).decode(),
                    certificate=base64.b64encode(row.certificate).decode(), signed_at=row.signed_at.isoformat(),
                    verification=json.loads(row.verification or "{}"))
    return body
