"""``kakehashi events …``: the webhook relay and endpoints from the command line."""

from __future__ import annotations

import signal
import threading

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from saas import db
from saas.cli import run_service
from saas.db import tenant_scope
from saas.events import relay, services
from saas.tenants import services as tenants

group = AppGroup("events", help="Events: the webhook relay, webhook endpoints.")


@group.command("relay")
@click.option("--once", is_flag=True, help="Queue what is due now and stop.")
def relay_command(once: bool) -> None:
    """Queue due webhook deliveries for the workers, until stopped (run one or more)."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if once:
        click.echo(f"queued {relay.relay_once()} deliveries")
        return
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo("relaying webhook deliveries (Ctrl+C to stop)")
    relay.run(app, stop)


@group.command("add-webhook")
@click.option("--tenant", "slug", required=True, help="The tenant's identifier (/t/<slug>/).")
@click.option("--url", required=True)
@click.option("--type", "types", multiple=True, default=(services.ALL_TYPES,), show_default=True,
              help=f"Event type (repeat): {', '.join(services.EVENT_TYPES)}, or * for all.")
@click.option("--description", default="")
def add_webhook_command(slug: str, url: str, types: tuple[str, ...], description: str) -> None:
    """Register a webhook endpoint; its signing secret is printed once."""
    def create() -> tuple[str, str]:
        tenant = tenants.active_tenant(slug)
        with tenant_scope(db.session, tenant.id):
            endpoint, secret = services.create_endpoint(tenant, url=url, event_types=types,
                                                        description=description)
            return endpoint.public_id, secret

    endpoint_id, secret = run_service(create)
    click.echo(f"endpoint: {endpoint_id}")
    click.echo(f"signing secret: {secret}   (shown once: store it now)")


@group.command("purge")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650),
              help="Keep events (and their delivery logs) this many days.")
def purge_command(days: int) -> None:
    """Delete old events whose deliveries are finished (run it from cron)."""
    from datetime import timedelta

    removed = run_service(lambda: relay.purge(older_than=timedelta(days=days)))
    click.echo(f"events deleted: {removed}")
