"""Web eID (``web-eid:1.0``) authentication tokens made by the bridge agent.

The server issues a single-use challenge nonce (256 random bits, valid at most five
minutes); the card signs SHA-256(SHA-256(origin) ‖ SHA-256(nonce)) with the
user-authentication key. Neither origin nor nonce travels in the token: the verifier
rebuilds both from its own configuration and the session's challenge. The agent may add
the origin it signed for (``origin``): only to tell a wrong origin apart from a bad
signature, never trusted for anything else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from saas.jpki.certificates import CertificateKind, parse_certificate
from saas.jpki.errors import MalformedCertificate, VerificationFailed
from saas.jpki.revocation import RevocationChecker, require_not_revoked
from saas.jpki.trust import DEFAULT_SKEW, Mode, TrustStore

TOKEN_FORMAT = "web-eid:1.0"
NONCE_BYTES = 32
MAX_NONCE_LIFETIME = timedelta(minutes=5)
MAX_TOKEN_SIZE = 16 * 1024


@dataclass(frozen=True)
class Challenge:
    nonce: str
    expires_at: datetime


def new_challenge(*, at: datetime, lifetime: timedelta = MAX_NONCE_LIFETIME) -> Challenge:
    """A fresh challenge: 256 bits from the OS, base64, living at most five minutes."""
    lifetime = min(lifetime, MAX_NONCE_LIFETIME)
    return Challenge(base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode(), at + lifetime)


def nonce_key(nonce: str) -> bytes:
    """What stores keep: a hash of the nonce, so a leaked store replays nothing."""
    return hashlib.sha256(nonce.encode()).digest()


class NonceStore(Protocol):
    def put(self, challenge: Challenge) -> None: ...

    def take(self, nonce: str) -> datetime | None:
        """Remove the nonce and return its expiry; None when unknown or already used."""


class MemoryNonceStore:
    """A process-local store (one web process, tests); the database store is shared."""

    def __init__(self) -> None:
        self._expiry: dict[bytes, datetime] = {}
        self._lock = threading.Lock()

    def put(self, challenge: Challenge) -> None:
        with self._lock:
            self._expiry[nonce_key(challenge.nonce)] = challenge.expires_at

    def take(self, nonce: str) -> datetime | None:
        with self._lock:
            return self._expiry.pop(nonce_key(nonce), None)


@dataclass(frozen=True)
class VerifiedAuthentication:
    """Who authenticated, as far as the certificate says; no raw certificate is kept."""

    mode: Mode
    serial: int
    issuer_key_id: bytes
    root_generation: str
    subject: str
    not_after: datetime
    fingerprint: str
    verified_at: datetime


def verify_token(token: Mapping[str, Any] | str | bytes, *, nonce: str, origin: str,
                 nonces: NonceStore, store: TrustStore, revocation: RevocationChecker,
                 at: datetime, skew: timedelta = DEFAULT_SKEW) -> VerifiedAuthentication:
    """Verify a ``web-eid:1.0`` token or raise :class:`VerificationFailed` with its code."""
    if store.kind is not CertificateKind.AUTH:
        raise ValueError("web-eid tokens are verified against the auth trust store")
    # Single use: spent before anything about the token is looked at, so that even a
    # malformed one leaves nothing to retry with.
    expiry = nonces.take(nonce)
    if expiry is None:
        raise VerificationFailed("this challenge is unknown or was already used", code="replayed")
    if at > expiry:
        raise VerificationFailed("the challenge expired; ask for a new one", code="nonce_expired")
    fields = _fields(token)
    try:
        certificate = parse_certificate(fields["certificate"])
    except MalformedCertificate as error:
        raise VerificationFailed(f"certificate: {error.detail}", code="malformed") from None
    trusted = store.validate(certificate, at=at, skew=skew)
    claimed_origin = fields["origin"]
    if claimed_origin is not None and claimed_origin != origin:
        raise VerificationFailed(f"signed for {claimed_origin}, not {origin}", code="wrong_origin")
    signed = hashlib.sha256(origin.encode()).digest() + hashlib.sha256(nonce.encode()).digest()
    try:
        # PKCS#1 v1.5 verification re-encodes the DigestInfo and compares it whole (strict).
        certificate.public_key.verify(fields["signature"], signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise VerificationFailed("the signature does not match this origin and challenge",
                                 code="bad_signature") from None
    # The root that verified the signature names the issuer, not the leaf's own claim.
    issuer_key_id = trusted.anchor.key_id
    require_not_revoked(revocation, issuer_key_id, certificate.serial, at=at)
    return VerifiedAuthentication(
        mode=store.mode, serial=certificate.serial, issuer_key_id=issuer_key_id,
        root_generation=trusted.anchor.generation, subject=certificate.subject,
        not_after=certificate.not_after, fingerprint=certificate.fingerprint, verified_at=at)


def _fields(token: Mapping[str, Any] | str | bytes) -> dict[str, Any]:
    if isinstance(token, str | bytes):
        if len(token) > MAX_TOKEN_SIZE:
            raise VerificationFailed("the token is too large", code="malformed")
        try:
            token = json.loads(token)
        except (ValueError, UnicodeError, RecursionError):
            raise VerificationFailed("the token is not JSON", code="malformed") from None
    if not isinstance(token, Mapping):
        raise VerificationFailed("the token is not a JSON object", code="malformed")
    if token.get("format") != TOKEN_FORMAT:
        raise VerificationFailed(f"format must be {TOKEN_FORMAT}", code="malformed")
    if token.get("algorithm") != "RS256":
        raise VerificationFailed("algorithm must be RS256", code="malformed")
    origin = token.get("origin")
    if origin is not None and not isinstance(origin, str):
        raise VerificationFailed("origin must be a string", code="malformed")
    app_version = token.get("appVersion")
    if app_version is not None and not isinstance(app_version, str):
        raise VerificationFailed("appVersion must be a string", code="malformed")
    return {"certificate": _base64(token.get("unverifiedCertificate"), "unverifiedCertificate"),
            "signature": _base64(token.get("signature"), "signature"),
            "origin": origin}


def _base64(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise VerificationFailed(f"{name} must be a base64 string", code="malformed")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationFailed(f"{name} is not valid base64", code="malformed") from None
