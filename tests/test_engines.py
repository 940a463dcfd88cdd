"""Pooled PostgreSQL connections: pinged before use only after they sat idle, replaced
when the ping finds them dead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from saas import engines
from tests.conftest import backend, empty_database

pytestmark = pytest.mark.skipif(backend() != "postgresql", reason="the idle ping is for PostgreSQL's pool")


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.2)
    with empty_database("engines", tmp_path) as url:
        made = engines.make_engine(url, pool_size=1, max_overflow=0)
        yield made
        made.dispose()


def count_pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    pings: list[Any] = []
    real = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return real(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return pings


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("select pg_backend_pid()")).scalar_one())


def test_a_connection_back_in_use_at_once_is_not_pinged(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    pings = count_pings(engine, monkeypatch)
    first = backend_pid(engine)
    assert [backend_pid(engine) for _ in range(5)] == [first] * 5
    assert pings == []


def test_an_idle_connection_is_pinged_before_use(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    pings = count_pings(engine, monkeypatch)
    first = backend_pid(engine)
    monkeypatch.setattr(engines, "_clock", lambda real=engines._clock: real() + 1.0)
    assert backend_pid(engine) == first  # alive: the same connection, after one ping
    assert len(pings) == 1


def test_an_idle_connection_that_died_is_replaced(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    first = backend_pid(engine)
    admin = create_engine(engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text("select pg_terminate_backend(:pid)"), {"pid": first})
    finally:
        admin.dispose()
    monkeypatch.setattr(engines, "_clock", lambda real=engines._clock: real() + 1.0)
    replaced = backend_pid(engine)  # no error reaches the caller: the ping failed, the pool reconnected
    assert replaced != first
