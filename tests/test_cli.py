from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select

from saas.tenants.models import Tenant


def test_create_tenant_registers_a_sandbox_tenant(app: Flask, db_session: Any) -> None:
    result = app.test_cli_runner().invoke(args=[
        "create-tenant", "--slug", "osaka-city", "--name", "大阪市", "--kind", "municipality",
        "--corporate-number", "7000012050002"])
    assert result.exit_code == 0, result.output
    assert "/t/osaka-city/" in result.output and "sandbox" in result.output
    tenant = db_session.scalar(select(Tenant).where(Tenant.slug == "osaka-city"))
    assert tenant.display_name == "大阪市" and tenant.corporate_number == "7000012050002"


def test_create_tenant_explains_bad_input(app: Flask, db_session: Any) -> None:
    result = app.test_cli_runner().invoke(args=[
        "create-tenant", "--slug", "bad-number", "--name", "X", "--kind", "bank",
        "--corporate-number", "7000012050003"])
    assert result.exit_code == 1
    assert "invalid_corporate_number" in result.output
    assert db_session.scalar(select(Tenant).where(Tenant.slug == "bad-number")) is None


def test_seed_demo_is_idempotent(app: Flask, db_session: Any) -> None:
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed-demo"])
    second = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0 and "created demo tenant" in first.output
    assert second.exit_code == 0 and "already" in second.output
    assert len(db_session.scalars(select(Tenant).where(Tenant.slug == "demo")).all()) == 1
