"""``kakehashi oidc …``: the tenants' OpenID Provider from the command line."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from saas import db
from saas.cli import run_service
from saas.db import tenant_scope
from saas.oidc import keys
from saas.tenants import services as tenants

group = AppGroup("oidc", help="Per-tenant OpenID Provider: signing keys, clients, housekeeping.")


@group.command("rotate-key")
@click.option("--tenant", "slug", required=True, help="The tenant's identifier (/t/<slug>/).")
@click.option("--alg", type=click.Choice(keys.ALGORITHMS), required=True)
def rotate_key_command(slug: str, alg: str) -> None:
    """Make a new active signing key; the old one stays published until its tokens expire."""
    def rotate() -> str:
        tenant = tenants.active_tenant(slug)
        with tenant_scope(db.session, tenant.id):
            return keys.rotate(tenant, alg).kid

    kid = run_service(rotate)
    click.echo(f"{slug}: new {alg} key {kid}; the previous one retires in {keys.TOKEN_LIFETIME}")


@group.command("create-client")
@click.option("--tenant", "slug", required=True)
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True, help="Repeat for more.")
@click.option("--scope", "scopes", multiple=True, default=("openid",), show_default=True,
              help="openid, name, address, birthdate, gender, sign (repeat).")
@click.option("--auth", "auth_method", type=click.Choice(["private_key_jwt", "client_secret_basic"]),
              default="private_key_jwt", show_default=True)
@click.option("--jwks-file", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--jwks-uri", default=None)
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True, help="Repeat for more.")
@click.option("--backchannel-logout-uri", default=None, help="Where logout tokens are posted.")
def create_client_command(slug: str, name: str, redirect_uris: tuple[str, ...], scopes: tuple[str, ...],
                          auth_method: str, jwks_file: str | None, jwks_uri: str | None,
                          logout_uris: tuple[str, ...], backchannel_logout_uri: str | None) -> None:
    """Register a relying party; a client secret (sandbox only) is printed once."""
    from pathlib import Path

    from saas.oidc import clients

    def register() -> tuple[str, str | None]:
        tenant = tenants.active_tenant(slug)
        with tenant_scope(db.session, tenant.id):
            client, secret = clients.register_client(
                tenant, name=name, redirect_uris=list(redirect_uris), scopes=list(scopes),
                auth_method=auth_method, jwks=Path(jwks_file).read_text() if jwks_file else None,
                jwks_uri=jwks_uri, post_logout_redirect_uris=list(logout_uris),
                backchannel_logout_uri=backchannel_logout_uri)
            return client.public_id, secret

    client_id, secret = run_service(register)
    click.echo(f"client_id: {client_id}")
    if secret:
        click.echo(f"client_secret: {secret}   (shown once: store it now)")


@group.command("purge")
def purge_command() -> None:
    """Delete expired codes, requests, grants, sessions and assertion ids (run it from cron)."""
    from saas.oidc.purge import purge

    removed = run_service(purge)
    click.echo(", ".join(f"{name} {count}" for name, count in removed.items()))
