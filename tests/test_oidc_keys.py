"""Tenants' token-signing keys: encrypted at rest, published as JWKS, rotated with overlap."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from flask import Flask
from joserfc.jwk import KeySet
from sqlalchemy import select

from saas import clock
from saas.db import all_tenants, tenant_scope
from saas.oidc import keys
from saas.oidc.models import KeyStatus, SigningKey
from saas.sealing import unseal
from saas.tenants import services as tenants


@pytest.fixture
def tenant(db_session: Any) -> Any:
    made = tenants.create_tenant(slug="keys-bank", display_name="鍵銀行", kind="bank")
    db_session.commit()
    return made


def test_the_jwks_publishes_an_rs256_and_an_es256_key(client: Any, tenant: Any) -> None:
    response = client.get("/t/keys-bank/jwks.json")
    assert response.status_code == 200 and "max-age" in response.headers["Cache-Control"]
    published = response.get_json()["keys"]
    assert sorted((k["kty"], k["alg"], k["use"]) for k in published) == [("EC", "ES256", "sig"),
                                                                        ("RSA", "RS256", "sig")]
    assert all("d" not in k and "p" not in k for k in published)  # public halves only
    assert client.get("/t/keys-bank/jwks.json").get_json()["keys"] == published  # stable


def test_private_keys_are_stored_encrypted_and_bound_to_their_row(app: Flask, db_session: Any,
                                                                 tenant: Any) -> None:
    with tenant_scope(db_session, tenant.id):
        kid, signer = keys.signing_key(tenant, "RS256")
        private = signer.private_key
        stored = db_session.scalar(select(SigningKey).where(SigningKey.kid == kid))
        assert b"PRIVATE KEY" not in stored.encrypted_private_key
        signature = private.sign(b"id token", padding.PKCS1v15(), hashes.SHA256())
        public = KeySet.import_key_set(keys.jwks(tenant)).get_by_kid(kid)
        public.get_op_key("verify").verify(signature, b"id token", padding.PKCS1v15(), hashes.SHA256())
        stored.kid = "another-kid"  # a ciphertext moved to another identity does not decrypt
        db_session.flush()
        with pytest.raises(InvalidTag):
            unseal(stored.encrypted_private_key, keys._context(tenant, "another-kid"))
        db_session.rollback()
    assert isinstance(private, rsa.RSAPrivateKey)


def test_rotation_keeps_the_old_key_published_until_its_tokens_expire(db_session: Any, tenant: Any) -> None:
    with tenant_scope(db_session, tenant.id):
        old_kid, _ = keys.signing_key(tenant, "ES256")
        with clock.frozen() as frozen:
            new = keys.rotate(tenant, "ES256")
            kid, signer = keys.signing_key(tenant, "ES256")
            private = signer.private_key
            assert kid == new.kid != old_kid and isinstance(private, ec.EllipticCurvePrivateKey)
            assert {old_kid, new.kid} <= {k["kid"] for k in keys.jwks(tenant)["keys"]}
            frozen.tick(keys.TOKEN_LIFETIME + timedelta(seconds=1))
            published = {k["kid"] for k in keys.jwks(tenant)["keys"]}
        assert old_kid not in published and new.kid in published
        statuses = {k.kid: k.status for k in db_session.scalars(select(SigningKey))}
        assert statuses[old_kid] is KeyStatus.RETIRED


def test_another_tenants_keys_are_never_published(client: Any, db_session: Any, tenant: Any) -> None:
    other = tenants.create_tenant(slug="other-clinic", display_name="他院", kind="hospital")
    db_session.commit()
    mine = {k["kid"] for k in client.get("/t/keys-bank/jwks.json").get_json()["keys"]}
    theirs = {k["kid"] for k in client.get("/t/other-clinic/jwks.json").get_json()["keys"]}
    assert mine and theirs and not mine & theirs
    with all_tenants(db_session):
        owners = {k.kid: k.tenant_id for k in db_session.scalars(select(SigningKey))}
    assert {owners[k] for k in mine} == {tenant.id} and {owners[k] for k in theirs} == {other.id}


def test_the_cli_rotates_a_key(app: Flask, db_session: Any, tenant: Any) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["oidc", "rotate-key", "--tenant", "keys-bank", "--alg", "RS256"])
    assert result.exit_code == 0, result.output
    assert "new RS256 key" in result.output
    with all_tenants(db_session):
        statuses = [k.status for k in db_session.scalars(select(SigningKey).where(SigningKey.alg == "RS256"))]
    assert statuses == [KeyStatus.ACTIVE]  # the first key is made by the rotation itself
    again = runner.invoke(args=["oidc", "rotate-key", "--tenant", "keys-bank", "--alg", "RS256"])
    assert again.exit_code == 0
    missing = runner.invoke(args=["oidc", "rotate-key", "--tenant", "nobody", "--alg", "RS256"])
    assert missing.exit_code == 1 and "tenant_not_found" in missing.output


def test_unknown_algorithms_are_refused(db_session: Any, tenant: Any) -> None:
    with tenant_scope(db_session, tenant.id), pytest.raises(keys.SigningKeyError) as error:
        keys.create_key(tenant, "HS256")
    assert error.value.code == "unsupported_algorithm"


def test_public_jwk_is_valid_json_with_the_thumbprint_as_kid(db_session: Any, tenant: Any) -> None:
    with tenant_scope(db_session, tenant.id):
        for key in keys.ensure_keys(tenant):
            assert json.loads(key.public_jwk)["kid"] == key.kid
