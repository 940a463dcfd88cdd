"""``kakehashi delegation …``: verify a power's record file; end powers past their validity."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask.cli import AppGroup

from saas import db
from saas.db import tenant_scope
from saas.delegation import records, services
from saas.jpki.revocation import LayeredRevocation
from saas.jpki.trust import live_stores
from saas.stores import jpki_stores
from saas.tenants.models import Tenant, TenantMode

group = AppGroup("delegation", help="Powers of attorney (電子委任状): verify records, end expired powers.")


@group.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--jwks", "jwks_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The issuer's JWKS (from <issuer>/jwks.json): the seal's key must be one of them.")
@click.option("--mode", type=click.Choice(["auto", "live", "sandbox"]), default="auto", show_default=True,
              help="Which JPKI roots to check the representative's certificate against "
                   "(auto: what the record says; live never accepts sandbox cards).")
def verify_command(path: Path, jwks_path: Path | None, mode: str) -> None:
    """Check a record file (or an API answer holding one) and print a plain verdict."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        click.echo(f"INVALID (malformed): {path} is not JSON ({error})")
        sys.exit(1)
    record = document.get("record", document) if isinstance(document, dict) else document
    seal_keys = None
    if jwks_path is not None:
        seal_keys = json.loads(jwks_path.read_text(encoding="utf-8")).get("keys", [])
    claimed = _claimed_mode(record)
    chosen = claimed if mode == "auto" else mode
    if chosen == "live":
        store = live_stores().signature
    else:
        from saas.sandbox import services as sandbox

        store = sandbox.trust_stores().signature
    verdict = records.verify_record(record, store=store, revocation=LayeredRevocation(jpki_stores().revocations),
                                    tsa_roots=services.tsa_roots(TenantMode.LIVE if chosen == "live"
                                                                 else TenantMode.SANDBOX),
                                    seal_keys=seal_keys)
    power = verdict.power
    if power:
        click.echo(f"power:      {power.get('id')} ({power.get('principal', {}).get('name')}, "
                   f"{power.get('principal', {}).get('corporate_number')})")
        click.echo(f"agents:     {', '.join(a.get('name', '') for a in power.get('agents', []))}")
        click.echo(f"valid:      {power.get('valid_from')} – {power.get('valid_until')}")
    for name in ("signer", "signed_at", "route", "reviewed_by", "sealed_at", "issuer", "seal_key", "timestamp"):
        if name in verdict.facts:
            click.echo(f"{name + ':':<11} {verdict.facts[name]}")
    click.echo(f"roots:      {chosen}" + ("" if seal_keys is not None else " (seal key not checked: pass --jwks)"))
    if verdict.valid:
        click.echo("VALID: every signature, the certificate chain and its status at signing, and the record's "
                   "integrity check out.")
        return
    for code, message in verdict.reasons:
        click.echo(f"INVALID ({code}): {message}")
    sys.exit(1)


def _claimed_mode(record: object) -> str:
    try:
        signature = record.get("signature") or {}  # type: ignore[union-attr]
        body = json.loads(records.unb64u(signature.get("payload") or record.get("payload")))  # type: ignore[union-attr]
        return "live" if body.get("mode") == "live" else "sandbox"
    except (AttributeError, TypeError, ValueError):
        return "live"


@group.command("expire")
def expire_command() -> None:
    """Mark powers past their end as expired, with an event each (run daily)."""
    from sqlalchemy import select

    from saas.db import all_tenants

    with all_tenants(db.session):
        tenants = list(db.session.scalars(select(Tenant)))
    total = 0
    for tenant in tenants:
        with tenant_scope(db.session, tenant.id):
            total += services.expire_due(tenant)
            db.session.commit()
    click.echo(f"expired {total} powers")
