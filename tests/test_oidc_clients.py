"""Registering relying parties: strict redirect URIs, keys or a secret shown once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import select

from saas.db import all_tenants, tenant_scope
from saas.oidc import clients
from saas.oidc.models import OIDCClient
from saas.tenants import services as tenants
from saas.tenants.models import TenantMode

PUBLIC_JWKS = json.dumps(KeySet([ECKey.generate_key("P-256")]).as_dict(private=False))


@pytest.fixture
def tenant(db_session: Any) -> Any:
    made = tenants.create_tenant(slug="rp-bank", display_name="RP銀行", kind="bank")
    db_session.commit()
    return made


def register(db_session: Any, tenant: Any, **overrides: Any) -> Any:
    values = {"name": "Online banking", "redirect_uris": ["https://bank.example/callback"],
              "scopes": ["openid", "name"], "auth_method": "private_key_jwt", "jwks": PUBLIC_JWKS}
    values.update(overrides)
    with tenant_scope(db_session, tenant.id):
        return clients.register_client(tenant, **values)


def test_a_private_key_jwt_client_keeps_only_public_keys(db_session: Any, tenant: Any) -> None:
    client, secret = register(db_session, tenant)
    assert secret is None and client.public_id.startswith("cli_") and client.secret_hash is None
    assert json.loads(client.redirect_uris) == ["https://bank.example/callback"]
    assert all("d" not in key for key in json.loads(client.jwks)["keys"])


def test_a_sandbox_secret_is_shown_once_and_kept_hashed(db_session: Any, tenant: Any) -> None:
    client, secret = register(db_session, tenant, auth_method="client_secret_basic", jwks=None)
    assert secret and secret not in client.secret_hash and client.secret_hash.startswith("scrypt$")
    assert clients.secret_matches(client, secret) and not clients.secret_matches(client, secret + "x")
    with tenant_scope(db_session, tenant.id):
        rotated = clients.rotate_secret(client)
    assert clients.secret_matches(client, rotated) and not clients.secret_matches(client, secret)


@pytest.mark.parametrize("uri", ["http://bank.example/cb", "https://bank.example/cb#frag",
                                 "https://*.bank.example/cb", "https://user:pw@bank.example/cb",
                                 "bank.example/cb", "javascript:alert(1)"])
def test_bad_redirect_uris_are_refused(db_session: Any, tenant: Any, uri: str) -> None:
    with pytest.raises(clients.ClientError) as error:
        register(db_session, tenant, redirect_uris=[uri])
    assert (error.value.code, error.value.field) == ("invalid_redirect_uri", "redirect_uris")


def test_loopback_http_is_allowed_for_development(db_session: Any, tenant: Any) -> None:
    client, _ = register(db_session, tenant, redirect_uris=["http://127.0.0.1:8000/callback"])
    assert json.loads(client.redirect_uris) == ["http://127.0.0.1:8000/callback"]


@pytest.mark.parametrize("overrides, code", [
    ({"scopes": ["name"]}, "invalid_scope"),
    ({"scopes": ["openid", "mynumber"]}, "invalid_scope"),
    ({"auth_method": "none"}, "invalid_auth_method"),
    ({"jwks": None}, "invalid_jwks"),
    ({"jwks": "{not json"}, "invalid_jwks"),
    ({"jwks": json.dumps(KeySet([ECKey.generate_key("P-256")]).as_dict(private=True))}, "invalid_jwks"),
    ({"jwks": None, "jwks_uri": "http://bank.example/jwks"}, "invalid_jwks"),
    ({"name": " "}, "invalid_name"),
])
def test_bad_registrations_say_why(db_session: Any, tenant: Any, overrides: dict[str, Any], code: str) -> None:
    with pytest.raises(clients.ClientError) as error:
        register(db_session, tenant, **overrides)
    assert error.value.code == code


def test_live_tenants_cannot_use_client_secrets(db_session: Any, tenant: Any) -> None:
    tenant.mode = TenantMode.LIVE
    with pytest.raises(clients.ClientError) as error:
        register(db_session, tenant, auth_method="client_secret_basic", jwks=None)
    assert error.value.code == "invalid_auth_method"


def test_the_cli_registers_a_client(app: Flask, db_session: Any, tenant: Any, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(PUBLIC_JWKS)
    result = app.test_cli_runner().invoke(args=[
        "oidc", "create-client", "--tenant", "rp-bank", "--name", "Demo RP",
        "--redirect-uri", "https://rp.example/callback", "--scope", "openid", "--scope", "birthdate",
        "--jwks-file", str(jwks)])
    assert result.exit_code == 0, result.output
    client_id = result.output.split("client_id: ")[1].split()[0]
    with all_tenants(db_session):
        client = db_session.scalar(select(OIDCClient).where(OIDCClient.public_id == client_id))
    assert client.tenant_id == tenant.id and json.loads(client.scopes) == ["birthdate", "openid"]
    bad = app.test_cli_runner().invoke(args=[
        "oidc", "create-client", "--tenant", "rp-bank", "--name", "x", "--redirect-uri", "http://rp.example/"])
    assert bad.exit_code == 1 and "invalid_redirect_uri" in bad.output


@pytest.mark.parametrize("overrides, field", [
    ({"backchannel_logout_uri": "http://127.0.0.1:6379/"}, "backchannel_logout_uri"),
    ({"backchannel_logout_uri": "http://[::1]:8080/admin"}, "backchannel_logout_uri"),
    ({"jwks": None, "jwks_uri": "https://10.0.0.1/jwks.json"}, "jwks_uri"),
])
def test_urls_the_service_calls_may_not_point_into_a_private_network(
        app: Flask, db_session: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any],
        field: str) -> None:
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_NETWORKS", False)
    with pytest.raises(clients.ClientError) as error:
        register(db_session, tenant, **overrides)
    assert error.value.field == field


def test_a_jwks_uri_host_with_a_private_address_is_not_fetched(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_NETWORKS", False)
    with app.app_context(), pytest.raises(OSError, match="non-public"):
        clients.fetch_key_set("https://localhost/jwks.json")
