from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from saas import ROOT
from saas.tenants.models import Tenant
from tests.conftest import SECRET


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


def test_seed_demo_is_idempotent(app: Flask, db_session: Any, tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    config = str(tmp_path / "demo-rp.json")
    first = runner.invoke(args=["seed-demo", "--rp-config", config])
    second = runner.invoke(args=["seed-demo", "--rp-config", config])
    assert first.exit_code == 0 and "created demo tenant" in first.output
    assert "registered demo relying party" in first.output
    assert second.exit_code == 0 and "already" in second.output and "already registered" in second.output
    assert len(db_session.scalars(select(Tenant).where(Tenant.slug == "demo")).all()) == 1
    assert "demo console owner: demo@kakehashi.example" in first.output
    from saas.tenants.models import ConsoleUser

    owners = db_session.scalars(select(ConsoleUser).where(ConsoleUser.email == "demo@kakehashi.example")).all()
    assert len(owners) == 1 and owners[0].email_verified_at is not None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_and_get(env: dict[str, str], path: str = "/healthz") -> tuple[int, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "saas.cli", "serve", "--port", str(port),
                                "--workers", "2"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                    return response.status, response.read().decode()
            except OSError:
                if process.poll() is not None:
                    raise AssertionError(process.stdout.read() if process.stdout else "exited") from None
                time.sleep(0.2)
        raise AssertionError("the server did not answer within 30 s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_answers_in_development(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": SECRET,
           "KAKEHASHI_ENV": "development"}
    status, body = serve_and_get(env, "/readyz")
    assert status == 200 and '"ready"' in body


def test_serve_runs_gunicorn_in_production(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("production refuses SQLite; this runs in the PostgreSQL pass")
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": SECRET,
           "KAKEHASHI_ENV": "production", "REDIS_URL": "redis://127.0.0.1:6379/0",
           "KEY_ENCRYPTION_KEY": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
           "MAIL_SMTP_URL": "smtp+starttls://mail.example:587",
           "PUBLIC_URL": "https://kakehashi.example", "KAKEHASHI_TRUSTED_HOSTS": "127.0.0.1,localhost"}
    status, body = serve_and_get(env, "/readyz")
    assert status == 200 and '"ready"' in body


def test_commands_on_an_unmigrated_database_say_to_migrate(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}", "SECRET_KEY": SECRET,
           "KAKEHASHI_ENV": "development"}
    for args in (["seed-demo"], ["sandbox", "issue-card", "--out", str(tmp_path / "c.json")]):
        result = subprocess.run([sys.executable, "-m", "saas.cli", *args], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and "run `kakehashi migrate` first" in result.stderr, result.stderr


def test_check_card_tells_a_card_of_this_sandbox_from_a_stale_one(app: Flask, db_session: Any, tmp_path: Path,
                                                                 sandbox_card: Any) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    runner = app.test_cli_runner()
    card = tmp_path / "card.json"
    assert runner.invoke(args=["sandbox", "issue-card", "--out", str(card)]).exit_code == 0
    ours = runner.invoke(args=["sandbox", "check-card", "--card", str(card)])
    assert ours.exit_code == 0 and "issued by this sandbox" in ours.output
    stale = json.loads(card.read_text())  # as if another sandbox (a reset database) issued it
    stale["auth"]["certificate"] = sandbox_card.auth.certificate.public_bytes(Encoding.PEM).decode()
    card.write_text(json.dumps(stale))
    refused = runner.invoke(args=["sandbox", "check-card", "--card", str(card)])
    assert refused.exit_code != 0 and "not a card of this sandbox (untrusted)" in refused.output
