"""Per-tenant signing keys: RS256 and ES256, encrypted at rest, rotated with overlap.

Rotation makes a new key active and moves the old one to ``retiring`` until every token
it signed has expired (``retire_after``); the JWKS lists active and retiring keys, so a
relying party can verify tokens across a rotation.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import g, has_app_context
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import select

from saas import clock, db
from saas.errors import ServiceError
from saas.events import services as events
from saas.oidc.models import KeyStatus, SigningKey
from saas.sealing import seal, unseal
from saas.tenants.models import Tenant

ALGORITHMS = ("RS256", "ES256")
# The longest a token signed by a key may live (ID and access tokens are shorter):
# a retiring key stays published this long after rotation.
TOKEN_LIFETIME = timedelta(hours=1)


class SigningKeyError(ServiceError):
    status = 422


def _context(tenant: Tenant, kid: str) -> str:
    # Bound to its tenant and kid: a ciphertext copied onto another row does not decrypt.
    return f"{tenant.public_id}:{kid}"


def _new_private_key(alg: str) -> Any:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def create_key(tenant: Tenant, alg: str) -> SigningKey:
    if alg not in ALGORITHMS:
        raise SigningKeyError(f"unsupported algorithm {alg!r}; one of {', '.join(ALGORITHMS)}",
                        code="unsupported_algorithm")
    private = _new_private_key(alg)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    key_class = RSAKey if alg == "RS256" else ECKey
    jwk = key_class.import_key(pem, {"alg": alg, "use": "sig"})
    kid = jwk.thumbprint()
    public = key_class.import_key(pem, {"alg": alg, "use": "sig", "kid": kid}).as_dict(private=False)
    key = SigningKey(tenant_id=tenant.id, kid=kid, alg=alg, status=KeyStatus.ACTIVE,
                     public_jwk=json.dumps(public, sort_keys=True), created_at=clock.now(),
                     encrypted_private_key=seal(pem, _context(tenant, kid)))
    db.session.add(key)
    db.session.flush()
    return key


def ensure_keys(tenant: Tenant) -> list[SigningKey]:
    """An active key for every algorithm, made on first use (read once per request)."""
    memo = g.setdefault("oidc_active_keys", {}) if has_app_context() else {}
    if tenant.id not in memo:
        active = {k.alg: k for k in _keys(tenant) if k.status is KeyStatus.ACTIVE}
        memo[tenant.id] = [active.get(alg) or create_key(tenant, alg) for alg in ALGORITHMS]
    return list(memo[tenant.id])


# What signs a token: the active key's (kid, private key), kept per process for a short
# while. Safe across a rotation elsewhere: the previous key stays published (retiring)
# for TOKEN_LIFETIME, far longer than a process keeps signing with it.
SIGNER_SECONDS = 30.0
_SIGNERS: dict[tuple[str, str], tuple[float, str, Any]] = {}


def rotate(tenant: Tenant, alg: str) -> SigningKey:
    """A new active key for ``alg``; the previous one retires once its tokens expire."""
    if has_app_context():
        g.pop("oidc_active_keys", None)
    _SIGNERS.pop((tenant.public_id, alg), None)
    now = clock.now()
    retiring = []
    for key in _keys(tenant):
        if key.alg == alg and key.status is KeyStatus.ACTIVE:
            key.status, key.retire_after = KeyStatus.RETIRING, now + TOKEN_LIFETIME
            retiring.append(key.kid)
    created = create_key(tenant, alg)
    events.emit(tenant, "oidc.signing_key.rotated", "signing_keys",
                {"alg": alg, "kid": created.kid, "retiring": retiring,
                 "retire_after": (now + TOKEN_LIFETIME).isoformat()})
    return created


def jwks(tenant: Tenant) -> dict[str, Any]:
    """The published key set: active keys, and retiring ones whose tokens may still live."""
    ensure_keys(tenant)
    now = clock.now()
    published = []
    for key in _keys(tenant):
        if key.status is KeyStatus.RETIRING and key.retire_after is not None and key.retire_after <= now:
            key.status = KeyStatus.RETIRED
        if key.status in (KeyStatus.ACTIVE, KeyStatus.RETIRING):
            published.append(json.loads(key.public_jwk))
    return {"keys": published}


_SIGNING_KEYS: dict[str, Any] = {}  # kid → joserfc key: decrypt and parse once per process


def signing_key(tenant: Tenant, alg: str) -> tuple[str, Any]:
    """(kid, joserfc private key) of the tenant's active key for ``alg``."""
    signer = _SIGNERS.get((tenant.public_id, alg))
    if signer is not None and time.monotonic() - signer[0] < SIGNER_SECONDS:
        return signer[1], signer[2]
    kid, key = _signing_key(tenant, alg)
    _SIGNERS[(tenant.public_id, alg)] = (time.monotonic(), kid, key)
    return kid, key


def _signing_key(tenant: Tenant, alg: str) -> tuple[str, Any]:
    key = next(k for k in ensure_keys(tenant) if k.alg == alg)
    cached = _SIGNING_KEYS.get(key.kid)
    if cached is None:
        pem = unseal(key.encrypted_private_key, _context(tenant, key.kid))
        key_class = RSAKey if alg == "RS256" else ECKey
        cached = _SIGNING_KEYS[key.kid] = key_class.import_key(pem, {"kid": key.kid, "alg": alg})
    return key.kid, cached


def verification_keys(tenant: Tenant) -> KeySet:
    """The published keys, for checking the provider's own tokens."""
    return KeySet.import_key_set(jwks(tenant))



def _keys(tenant: Tenant) -> list[SigningKey]:
    # Named by hand as well as by the session's tenant criterion: platform code under
    # all_tenants (the relay signing a stream's events) must get this tenant's keys only.
    return list(db.session.scalars(select(SigningKey).where(SigningKey.tenant_id == tenant.id)
                                   .order_by(SigningKey.id)))

