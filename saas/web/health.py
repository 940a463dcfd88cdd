"""Readiness of what the service depends on: the database and, when configured, Redis."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

from flask import current_app
from sqlalchemy import text

from saas import db


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    latency_ms: float
    error: str | None = None


def check_database() -> Check:
    started = time.perf_counter()
    try:
        with db.get_database().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready"; the class says which
        return Check("database", False, _ms(started), type(exc).__name__)
    return Check("database", True, _ms(started))


def check_schema() -> Check:
    """The database is at the newest migration: a web instance of a newer release does
    not take traffic before ``kakehashi migrate`` has run."""
    started = time.perf_counter()
    try:
        with db.get_database().engine.connect() as connection:
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:
        return Check("schema", False, _ms(started), type(exc).__name__)
    head = migration_head()
    if current != head:
        return Check("schema", False, _ms(started), f"at {current}, code expects {head}")
    return Check("schema", True, _ms(started))


@cache
def migration_head() -> str | None:
    from alembic.script import ScriptDirectory

    from saas import ROOT

    return ScriptDirectory(str(ROOT / "migrations")).get_current_head()


def check_redis() -> Check | None:
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    from redis import Redis

    started = time.perf_counter()
    try:
        Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except Exception as exc:
        return Check("redis", False, _ms(started), type(exc).__name__)
    return Check("redis", True, _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
