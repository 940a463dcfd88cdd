"""Database engines with the settings the service relies on, for each backend (no Flask)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc

# A pooled connection back in use within this many seconds is not pinged first: a busy
# server's connections go out again in milliseconds, and a round trip per checkout was a
# third of a relying party's fetch. One idle for longer (a quiet night, a failover
# meanwhile) is pinged, and replaced if the ping fails.
PING_AFTER_IDLE_SECONDS = 10.0
_CHECKED_IN = "kakehashi.checked_in_at"
_clock = time.monotonic  # the pool's idea of now (tests move it, not the process's clock)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings the service relies on for each backend. On PostgreSQL a
    pooled connection is pinged after sitting idle (:func:`ping_idle_connections`) unless
    ``pool_pre_ping`` is given (``False``: never pinged, as the login path's lookup pool)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, issue BEGIN, so SAVEPOINTs work as documented.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            if ":memory:" not in url and url != "sqlite://":
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                connection.exec_driver_sql("BEGIN")

        return engine
    engine = create_engine(url, **kwargs)
    if "pool_pre_ping" not in kwargs:
        ping_idle_connections(engine, PING_AFTER_IDLE_SECONDS)
    return engine


def ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Ping a pooled connection before use only when it has been idle ``idle_seconds``
    (SQLAlchemy's ``pool_pre_ping`` pings on every checkout). A failed ping invalidates the
    whole pool, as ``pool_pre_ping`` does, and the checkout connects afresh. After a
    restart or failover, a connection back in use sooner fails its first statement (one
    request per such connection), and SQLAlchemy then invalidates the whole pool too."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = _clock()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN)
        if checked_in is None or _clock() - checked_in < idle_seconds:
            return  # new (just connected), or back in use at once
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - whatever the driver raises, it is gone
            raise exc.InvalidatePoolError(f"pooled connection failed its ping: {error}") from error
        if not alive:
            raise exc.InvalidatePoolError("pooled connection failed its ping")
