from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from saas import ROOT, create_app, db
from saas.config import ConfigurationError, load, normalise_database_url

PG = "postgresql+psycopg://kk@db.internal/kakehashi"
STRONG = "s" * 48


REDIS = "redis://redis.internal:6379/0"
KEK = base64.b64encode(bytes(range(32))).decode()


def production(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"KAKEHASHI_ENV": "production", "INSTANCE_PATH": str(tmp_path), "REDIS_URL": REDIS,
            "KEY_ENCRYPTION_KEY": KEK, "MAIL_SMTP_URL": "smtp+starttls://mail.example:587",
            "PUBLIC_URL": "https://id.example.jp", **values}


def test_production_refuses_sqlite(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SQLite"):
        create_app(production(tmp_path, DATABASE_URL="sqlite:///x.db", SECRET_KEY=STRONG))


def test_production_refuses_the_embedded_default_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="SQLite"):
        create_app(production(tmp_path, SECRET_KEY=STRONG))


def test_production_refuses_a_missing_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="SECRET_KEY is not set"):
        create_app(production(tmp_path, DATABASE_URL=PG))
    assert not (tmp_path / "secret_key").exists()


def test_production_refuses_a_short_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="shorter than 32"):
        create_app(production(tmp_path, DATABASE_URL=PG, SECRET_KEY="short"))


def test_production_refuses_debug(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="KAKEHASHI_DEBUG is on"):
        create_app(production(tmp_path, DATABASE_URL=PG, SECRET_KEY=STRONG, KAKEHASHI_DEBUG="1"))


def test_production_lists_every_problem_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigurationError) as error:
        create_app(production(tmp_path, DATABASE_URL="sqlite://", KAKEHASHI_DEBUG="true"))
    message = str(error.value)
    assert "SQLite" in message and "SECRET_KEY" in message and "DEBUG" in message


def test_production_refuses_in_process_jobs(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="REDIS_URL is not set"):
        create_app(production(tmp_path, DATABASE_URL=PG, SECRET_KEY=STRONG, REDIS_URL=""))


def test_production_refuses_to_start_without_a_way_to_send_mail(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MAIL_SMTP_URL"):
        create_app(production(tmp_path, DATABASE_URL=PG, SECRET_KEY=STRONG, MAIL_SMTP_URL=""))


def test_production_needs_its_public_https_address(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="PUBLIC_URL is not set"):
        create_app(production(tmp_path, DATABASE_URL=PG, SECRET_KEY=STRONG, PUBLIC_URL=""))
    with pytest.raises(ConfigurationError, match="PUBLIC_URL must be an https origin"):
        create_app(production(tmp_path, DATABASE_URL=PG, SECRET_KEY=STRONG, PUBLIC_URL="http://id.example.jp"))
    with pytest.raises(ConfigurationError, match="PUBLIC_URL must be an https origin"):
        create_app(production(tmp_path, DATABASE_URL=PG, SECRET_KEY=STRONG, PUBLIC_URL="https://id.example.jp/kk"))


def test_the_public_address_limits_the_hosts_served(tmp_path: Path) -> None:
    app = create_app(production(tmp_path, DATABASE_URL=PG, SECRET_KEY=STRONG, PUBLIC_URL="https://ID.example.jp/",
                                KAKEHASHI_TRUSTED_HOSTS="lb.internal, 10.0.0.7"))
    assert app.config["PUBLIC_URL"] == "https://ID.example.jp"
    assert app.config["TRUSTED_HOSTS"] == ["id.example.jp", "lb.internal", "10.0.0.7"]
    development = create_app({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": "sqlite://"})
    assert development.config["TRUSTED_HOSTS"] is None  # no public address: the request's own


def test_production_refuses_a_missing_key_encryption_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="KEY_ENCRYPTION_KEY"):
        create_app(production(tmp_path, DATABASE_URL=PG, SECRET_KEY=STRONG, KEY_ENCRYPTION_KEY=""))


def test_a_malformed_key_encryption_key_is_refused_everywhere(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        load(tmp_path, {"KEY_ENCRYPTION_KEY": "c2hvcnQ="})


def test_development_generates_a_key_encryption_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEY_ENCRYPTION_KEY", raising=False)
    first, second = load(tmp_path)["KEY_ENCRYPTION_KEY"], load(tmp_path)["KEY_ENCRYPTION_KEY"]
    assert first == second and len(first) == 32


def test_production_with_postgresql_and_a_secret_starts(tmp_path: Path) -> None:
    app = create_app(production(tmp_path, DATABASE_URL=PG, SECRET_KEY=STRONG))
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_NAME"].startswith("__Host-")
    assert db.get_database(app).engine.hide_parameters is True


def test_unknown_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="KAKEHASHI_ENV"):
        load(tmp_path, {"KAKEHASHI_ENV": "staging"})


def test_development_generates_and_keeps_a_private_secret(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = load(tmp_path)["SECRET_KEY"]
    second = load(tmp_path)["SECRET_KEY"]
    assert first == second and len(first) == 64
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600


def test_embedded_default_is_sqlite_under_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    config = load(tmp_path)
    assert config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'kakehashi.db'}"
    assert config["REDIS_URL"] is None


@pytest.mark.parametrize("url", ["postgres://u@h/d", "postgresql://u@h/d"])
def test_postgresql_urls_use_psycopg3(url: str) -> None:
    assert normalise_database_url(url) == "postgresql+psycopg://u@h/d"


def test_the_cli_refuses_production_with_a_clear_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DATABASE_URL"}}
    env.update(KAKEHASHI_ENV="production", DATABASE_URL="sqlite:///x.db")
    result = subprocess.run([sys.executable, "-m", "saas.cli", "serve"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refuses to start in production" in result.stderr
    assert "SQLite" in result.stderr and "SECRET_KEY is not set" in result.stderr


def test_sqlite_writes_batched_lines_in_their_request_and_postgresql_in_batches(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCH_FLUSH_SECONDS", raising=False)
    embedded = load(tmp_path, {"DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    served = load(tmp_path, {"DATABASE_URL": PG})
    assert (embedded["BATCH_FLUSH_SECONDS"], served["BATCH_FLUSH_SECONDS"]) == (0, 1)
    assert load(tmp_path, {"DATABASE_URL": PG, "BATCH_FLUSH_SECONDS": "0"})["BATCH_FLUSH_SECONDS"] == 0
