"""``kakehashi oidc …``: the tenants' OpenID Provider from the command line."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from saas import db
from saas.db import tenant_scope
from saas.errors import ServiceError
from saas.oidc import keys
from saas.tenants import services as tenants

group = AppGroup("oidc", help="Per-tenant OpenID Provider: signing keys.")


@group.command("rotate-key")
@click.option("--tenant", "slug", required=True, help="The tenant's identifier (/t/<slug>/).")
@click.option("--alg", type=click.Choice(keys.ALGORITHMS), required=True)
def rotate_key_command(slug: str, alg: str) -> None:
    """Make a new active signing key; the old one stays published until its tokens expire."""
    from saas.cli import require_current_schema

    require_current_schema()
    try:
        tenant = tenants.active_tenant(slug)
        with tenant_scope(db.session, tenant.id):
            key = keys.rotate(tenant, alg)
            kid = key.kid
            db.session.commit()
    except ServiceError as error:
        db.session.rollback()
        raise click.ClickException(f"{error.code}: {error.message}") from None
    click.echo(f"{slug}: new {alg} key {kid}; the previous one retires in {keys.TOKEN_LIFETIME}")
