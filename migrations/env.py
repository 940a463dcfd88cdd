"""Alembic environment: the models' metadata, the URL from the configuration.

``kakehashi migrate`` passes the URL in; plain ``alembic upgrade head`` reads
``DATABASE_URL`` (or the embedded default) like the app does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import context
from sqlalchemy import Connection, pool

from saas.db import make_engine
from saas.models import ALL_METADATA

config = context.config
target_metadata = ALL_METADATA


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from saas import ROOT
    from saas.config import load

    return load(ROOT / "instance")["DATABASE_URL"]


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True,
                      render_as_batch=True, **kwargs)


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


@contextmanager
def _foreign_keys_off_while_migrating(connection: Connection) -> Iterator[None]:
    """SQLite: no foreign key actions while migrating (``_check_foreign_keys`` checks every
    key before the migrations commit).

    SQLite alters a table by copying it into a new one and dropping the old (Alembic's
    batch mode). With foreign keys on, that DROP deletes the old table's rows first, and
    the rows of other tables that point at them with ``ON DELETE CASCADE`` go with them:
    re-creating ``webhook_endpoints`` (migration 0015) deleted every webhook delivery.
    So keys are off for the migrations (SQLite only turns them off outside a
    transaction), and ``PRAGMA foreign_key_check`` must find no row pointing nowhere
    before the migrations' one transaction commits. PostgreSQL alters tables in place.

    A connection handed in (``config.attributes["connection"]``) must therefore be
    outside a transaction, and come from ``saas.db.make_engine``, whose SQLite engine
    issues the BEGIN that makes the migrations' DDL one transaction (pysqlite would not)."""
    if connection.dialect.name != "sqlite":
        yield
        return
    if connection.in_transaction():
        raise RuntimeError("SQLite migrations need a connection outside a transaction (to turn foreign keys off): "
                           "pass the URL, or a connection of saas.db.make_engine not yet in a transaction")
    driver = connection.connection.driver_connection
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if dangling:
        raise RuntimeError(
            "after the migrations, rows point at rows that are not there (table, rowid, parent table, key): "
            f"{dangling[:10]}; nothing was migrated. Find them with `sqlite3 <file> 'PRAGMA foreign_key_check'`, "
            "delete or repair them, and migrate again")


# How long a migration waits for a table's lock on PostgreSQL before it gives up: a
# migration waiting behind a long transaction holds every request that needs the table
# (dropping a foreign key to tenants locks tenants). It fails instead; run it again.
LOCK_TIMEOUT = "5s"


def _run(connection: Connection) -> None:
    with _foreign_keys_off_while_migrating(connection):
        # One transaction for the whole upgrade on SQLite too, which can roll DDL back
        # (Alembic commits each of its migrations there by default): the key check's
        # failure then leaves the database as it was.
        _configure(connection=connection, transactional_ddl=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            migrations = context.get_context()
            before = migrations.get_current_heads()
            context.run_migrations()
            if migrations.get_current_heads() != before:  # (a database already at head is not scanned)
                _check_foreign_keys(connection)


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
