"""Alembic environment: the models' metadata, the URL from the configuration.

``kakehashi migrate`` passes the URL in; plain ``alembic upgrade head`` reads
``DATABASE_URL`` (or the embedded default) like the app does.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

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


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
