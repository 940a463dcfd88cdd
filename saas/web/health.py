"""Readiness of what the service depends on: the database and, when configured, Redis."""

from __future__ import annotations

import time
from dataclasses import dataclass

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
