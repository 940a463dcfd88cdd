"""``kakehashi audit …``: the audit log from the command line."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from saas import db
from saas.cli import require_current_schema
from saas.tenants import audit
from saas.tenants.models import Tenant

group = AppGroup("audit", help="The hash-chained audit log.")


@group.command("verify")
@click.option("--tenant", "slug", default=None, help="One organisation (default: every one).")
def verify_command(slug: str | None) -> None:
    """Check every organisation's chain; exit 1 and say where when one is broken."""
    require_current_schema()
    query = select(Tenant).order_by(Tenant.slug)
    if slug:
        query = query.where(Tenant.slug == slug)
    found = list(db.session.scalars(query))
    if slug and not found:
        raise click.ClickException(f"tenant_not_found: no organisation {slug!r}")
    broken = 0
    for tenant in found:
        problems = audit.verify(tenant)
        if problems:
            broken += 1
            for problem in problems:
                click.echo(f"{tenant.slug}: entry {problem.seq} {problem.problem}")
        else:
            click.echo(f"{tenant.slug}: intact")
    if broken:
        raise click.ClickException(f"audit_chain_broken: {broken} organisation(s) with a broken audit chain")


operator_group = AppGroup("operator", help="The platform's operators.")


@operator_group.command("grant")
@click.argument("email")
def grant_command(email: str) -> None:
    """Make an existing console user a platform operator (reviews go-live requests)."""
    from saas.tenants.models import ConsoleUser

    require_current_schema()
    user = db.session.scalar(select(ConsoleUser).where(ConsoleUser.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"user_not_found: no console user {email!r}; they sign up first")
    user.is_operator = True
    db.session.commit()
    click.echo(f"{user.email} is a platform operator: /console/operator")


card_group = AppGroup("console-card", help="Console sign-in with the My Number Card.")


@card_group.command("setup")
@click.option("--service-url", required=True, help="Where the service is reached, e.g. https://kakehashi.example")
def card_setup_command(service_url: str) -> None:
    """Make the platform's own tenant and the console's client (idempotent)."""
    from saas.cli import run_service
    from saas.tenants import cardlogin

    tenant, client_id = run_service(lambda: cardlogin.setup(service_url))
    click.echo(f"console card sign-in: tenant /t/{tenant.slug}/ ({tenant.mode.value}), client {client_id}")
