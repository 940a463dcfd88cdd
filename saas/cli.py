"""The ``kakehashi`` command (also ``flask --app wsgi …``).

    kakehashi migrate                 upgrade the database to the newest schema
    kakehashi create-tenant …         register a tenant
    kakehashi seed-demo               the demo sandbox tenant (idempotent)
    kakehashi worker [--burst]        an rq worker (needs REDIS_URL)
    kakehashi events relay            hands due webhook deliveries to the workers (with REDIS_URL)
    kakehashi serve                   gunicorn in production, Flask's server in development
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from flask import Flask, current_app
from flask.cli import FlaskGroup
from werkzeug.serving import run_simple

from saas import ROOT, db, jobs
from saas.errors import ServiceError
from saas.tenants import services as tenants
from saas.tenants.models import Tenant, TenantKind, TenantMode

T = TypeVar("T")

DEMO_TENANT = {
    "slug": "demo",
    "display_name": "架け橋デモ銀行 (Kakehashi Demo Bank)",
    "kind": "bank",
    "corporate_number": "7000012050002",
}


def alembic_config(url: str) -> AlembicConfig:
    if not (ROOT / "migrations").is_dir():
        raise click.ClickException(
            f"no migrations/ beside the saas package ({ROOT}): run Kakehashi from a checkout "
            "of its repository (make install), not from a wheel")
    config = AlembicConfig(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def require_current_schema() -> None:
    """Commands that use the database say what to do when it is not migrated yet."""
    from saas.web.health import check_schema

    check = check_schema()
    if not check.ok:
        raise click.ClickException(
            f"the database is not at the newest schema ({check.error}): run `kakehashi migrate` first")


def run_service(action: Callable[[], T]) -> T:
    """Run a service call on a migrated database and commit, or roll back and turn its
    error into a clear CLI error (code and message, no traceback)."""
    require_current_schema()
    try:
        result = action()
        db.session.commit()
        return result
    except ServiceError as error:
        db.session.rollback()
        raise click.ClickException(f"{error.code}: {error.message}") from None


def migrate_database(url: str, revision: str = "head") -> None:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    alembic_command.upgrade(alembic_config(url), revision)


@click.command("migrate")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def migrate_command(revision: str) -> None:
    """Upgrade the database schema (Alembic)."""
    migrate_database(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}: {_safe_url(current_app.config['DATABASE_URL'])}")


@click.command("create-tenant")
@click.option("--slug", required=True, help="URL identifier: /t/<slug>/")
@click.option("--name", "display_name", required=True, help="Display name.")
@click.option("--kind", type=click.Choice([k.value for k in TenantKind]), required=True)
@click.option("--corporate-number", default=None, help="法人番号 (13 digits).")
@click.option("--mode", type=click.Choice([m.value for m in TenantMode]), default="sandbox",
              show_default=True)
def create_tenant_command(slug: str, display_name: str, kind: str, corporate_number: str | None,
                          mode: str) -> None:
    """Register a tenant."""
    tenant = run_service(lambda: tenants.create_tenant(
        slug=slug, display_name=display_name, kind=kind, corporate_number=corporate_number,
        mode=TenantMode(mode)))
    click.echo(f"{tenant.public_id} /t/{tenant.slug}/ ({tenant.mode}, {tenant.kind})")


@click.command("seed-demo")
@click.option("--service-url", default="http://127.0.0.1:5000", show_default=True,
              help="Where the service is reached (the demo relying party's issuer is under it).")
@click.option("--rp-url", default="http://127.0.0.1:5001", show_default=True,
              help="Where the demo relying party runs (its redirect URI is under it).")
@click.option("--rp-config", default="instance/demo-rp.json", show_default=True,
              type=click.Path(dir_okay=False), help="Where the demo relying party's registration goes.")
def seed_demo_command(service_url: str, rp_url: str, rp_config: str) -> None:
    """Create the demo sandbox tenant and register the demo relying party, unless they exist."""
    require_current_schema()
    tenant = tenants.find_by_slug(DEMO_TENANT["slug"])
    if tenant is None:
        tenant = tenants.create_tenant(**DEMO_TENANT)
        db.session.commit()
        click.echo(f"created demo tenant {tenant.public_id} at /t/{tenant.slug}/")
    else:
        click.echo(f"demo tenant {tenant.public_id} already at /t/{tenant.slug}/")
    seed_demo_rp(tenant, service_url.rstrip("/"), rp_url.rstrip("/"), Path(rp_config))
    if current_app.config["KAKEHASHI_ENV"] != "production":  # a published password: never in production
        seed_demo_owner(tenant)
    from saas.tenants import cardlogin

    platform, client_id = cardlogin.setup(service_url.rstrip("/"))
    db.session.commit()
    click.echo(f"console card sign-in: /t/{platform.slug}/ client {client_id}")


DEMO_OWNER = {"email": "demo@kakehashi.example", "password": "demo bridge over the kamo river"}


def seed_demo_owner(tenant: Tenant) -> None:
    """A verified console owner of the demo tenant, so that a newcomer can open the console."""
    from sqlalchemy import select

    from saas import clock
    from saas.db import tenant_scope
    from saas.tenants.accounts import hash_password
    from saas.tenants.models import ConsoleUser, Membership, Role

    user = db.session.scalar(select(ConsoleUser).where(ConsoleUser.email == DEMO_OWNER["email"]))
    if user is None:
        user = ConsoleUser(email=DEMO_OWNER["email"], name="デモ 管理者", password_hash=hash_password(
            DEMO_OWNER["password"]), email_verified_at=clock.now(), failed_logins=0, is_operator=False,
            created_at=clock.now())
        db.session.add(user)
        db.session.flush()
    with tenant_scope(db.session, tenant.id):
        if db.session.scalar(select(Membership.id).where(Membership.user_id == user.id)) is None:
            db.session.add(Membership(tenant_id=tenant.id, user_id=user.id, role=Role.OWNER, created_at=clock.now()))
    db.session.commit()
    click.echo(f"demo console owner: {DEMO_OWNER['email']} / {DEMO_OWNER['password']}")


def seed_demo_rp(tenant: Tenant, service_url: str, rp_url: str, path: Path) -> None:
    import json
    import secrets

    from joserfc.jwk import KeySet, RSAKey
    from sqlalchemy import select

    from saas.db import tenant_scope
    from saas.oidc.clients import register_client
    from saas.oidc.models import OIDCClient

    issuer = f"{service_url}/t/{tenant.slug}"
    with tenant_scope(db.session, tenant.id):
        if path.exists():
            existing = json.loads(path.read_text())
            if existing.get("issuer") == issuer and db.session.scalar(
                    select(OIDCClient).where(OIDCClient.public_id == existing.get("client_id"))):
                click.echo(f"demo relying party {existing['client_id']} already registered ({path})")
                return
        key = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"})
        key = RSAKey.import_key(key.as_dict(private=True) | {"kid": key.thumbprint()})
        public = KeySet([RSAKey.import_key(key.as_dict(private=False))]).as_dict()
        client, _ = register_client(tenant, name="デモ RP (Demo relying party)",
                                    redirect_uris=[f"{rp_url}/callback"],
                                    scopes=["openid", "name", "address", "birthdate", "gender"],
                                    auth_method="private_key_jwt", jwks=json.dumps(public))
        from saas.events import services as events

        _endpoint, webhook_secret = events.create_endpoint(tenant, url=f"{rp_url}/webhooks/kakehashi",
                                                           event_types=[events.ALL_TYPES],
                                                           description="Demo relying party")
        from saas.idlink import checkin

        _device, device_key = checkin.register_device(tenant, name="デモ受付 (demo reception kiosk)",
                                                      kind="reception", origin=rp_url)
        db.session.commit()
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {"issuer": issuer, "client_id": client.public_id, "private_jwk": key.as_dict(private=True),
              "session_secret": secrets.token_hex(32), "webhook_secret": webhook_secret, "device_key": device_key}
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    click.echo(f"registered demo relying party {client.public_id} ({path})")


@click.command("worker")
@click.option("--queue", "kinds", multiple=True, type=click.Choice(jobs.KINDS),
              help="Kinds of work to take (repeat); default: all.")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
def worker_command(kinds: tuple[str, ...], burst: bool) -> None:
    """Run an rq worker (needs REDIS_URL)."""
    try:
        jobs.work(current_app._get_current_object(), kinds or jobs.KINDS, burst=burst)  # type: ignore[attr-defined]
    except RuntimeError as error:
        raise click.ClickException(str(error)) from None


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=None, type=int,
              help="gunicorn workers (production); default 2 × cores + 1.")
def serve_command(host: str, port: int, workers: int | None) -> None:
    """Serve the app: gunicorn in production, Flask's server in development."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config["KAKEHASHI_ENV"] == "production":
        gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
        count = workers or 2 * (os.cpu_count() or 1) + 1
        # The app writes its own JSON access log; gunicorn only runs the workers.
        os.execv(gunicorn, [gunicorn, "saas:create_app()", "--bind", f"{host}:{port}",
                            "--workers", str(count)])
    if not app.config["REDIS_URL"]:
        from saas.events import relay

        relay.start_in_process(app)  # embedded: webhooks go out from this process
    click.echo(f"Kakehashi is running: http://{host}:{port}/  (Ctrl+C to stop)")
    # Not app.run(): Flask ignores it inside its own CLI.
    run_simple(host, port, app, threaded=True, use_debugger=app.config["DEBUG"])


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


COMMANDS = (migrate_command, create_tenant_command, seed_demo_command, worker_command,
            serve_command)


def init_app(app: Flask) -> None:
    from saas.delegation.cli import group as delegation_group
    from saas.events.cli import group as events_group
    from saas.idlink.cli import group as idlink_group
    from saas.oidc.cli import group as oidc_group
    from saas.sandbox.cli import group as sandbox_group
    from saas.tenants.cli import card_group, operator_group
    from saas.tenants.cli import group as audit_group

    for command in (*COMMANDS, sandbox_group, oidc_group, events_group, audit_group, operator_group, card_group,
                    delegation_group, idlink_group):
        app.cli.add_command(command)


def _create_app() -> Flask:
    from saas import create_app
    from saas.config import ConfigurationError

    try:
        return create_app()
    except ConfigurationError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)


main = FlaskGroup(create_app=_create_app, add_version_option=False,
                  help="Kakehashi: JPKI trust service. See README.md.")


if __name__ == "__main__":
    main()
