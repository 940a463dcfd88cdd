"""One linear Alembic history whose head matches the models exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from saas import db
from saas.cli import alembic_config, migrate_database
from saas.models import ALL_METADATA
from tests.conftest import empty_database


def test_there_is_one_head_and_no_branches(database_url: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(database_url))
    assert len(script.get_heads()) == 1
    for revision in script.walk_revisions():
        assert not isinstance(revision.down_revision, (tuple, list)), f"{revision.revision} merges"
        assert len(revision.nextrev) <= 1, f"{revision.revision} branches"


def test_migration_files_are_named_by_date_and_purpose(database_url: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(database_url))
    for revision in script.walk_revisions():
        name = revision.path.rsplit("/", 1)[-1]
        assert name[:8].isdigit() and f"_{revision.revision}_" in name, name


def test_upgrade_from_empty_matches_the_models_and_downgrades_cleanly(tmp_path: Path) -> None:
    with empty_database("migrations", tmp_path) as url:
        migrate_database(url)
        engine = db.make_engine(url)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, ALL_METADATA)
            if engine.dialect.name == "postgresql":  # (collations are not compared above)
                assert connection.scalar(text(
                    "SELECT collation_name FROM information_schema.columns "
                    "WHERE table_name = 'events' AND column_name = 'public_id'")) == "C"
                assert connection.scalar(text(  # (nor are storage parameters)
                    "SELECT reloptions FROM pg_class WHERE relname = 'webhook_deliveries'")) == ["fillfactor=50"]
        assert differences == []

        command.downgrade(alembic_config(url), "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate_database(url)
        assert "tenants" in inspect(engine).get_table_names()
        engine.dispose()


_ROWS = (
    "INSERT INTO tenants (id, slug, display_name, kind, mode, status, public_id, created_at, updated_at) "
    "VALUES (1, 'acme', 'Acme', 'bank', 'sandbox', 'active', 'ten_1', '2026-01-01', '2026-01-01')",
    "INSERT INTO webhook_endpoints (id, url, description, event_types, enabled, created_at, updated_at, public_id, "
    "tenant_id) VALUES (1, 'https://hooks.example/a', '', '[\"*\"]', TRUE, '2026-01-01', '2026-01-01', 'whk_1', 1)",
    "INSERT INTO events (id, type, subject, payload, created_at, public_id, tenant_id) "
    "VALUES (1, 'webhook.ping', 's', '{}', '2026-01-01', 'evt_1', 1)",
    "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, subject, status, attempts, next_attempt_at, "
    "created_at, tenant_id) VALUES (1, 1, 1, 's', 'dead', 8, '2026-01-01', '2026-01-01', 1)",
    "INSERT INTO webhook_delivery_attempts (id, delivery_id, attempted_at, status_code, duration_ms, tenant_id) "
    "VALUES (1, 1, '2026-01-01', 500, 12, 1)",
)


def test_upgrading_keeps_the_rows_of_tables_that_point_at_an_altered_one(tmp_path: Path) -> None:
    # On SQLite, 0015 re-creates webhook_endpoints (batch mode); with foreign keys on, dropping
    # the old table deleted every delivery pointing at it (ON DELETE CASCADE), and their attempts.
    with empty_database("migrations_rows", tmp_path) as url:
        migrate_database(url, "0014")
        engine = db.make_engine(url)
        with engine.begin() as connection:
            for statement in _ROWS:
                connection.execute(text(statement))
        migrate_database(url)
        with engine.connect() as connection:
            counts = [connection.scalar(text(f"SELECT count(*) FROM {table}"))
                      for table in ("webhook_endpoints", "events", "webhook_deliveries", "webhook_delivery_attempts")]
            assert counts == [1, 1, 1, 1]
            if engine.dialect.name == "sqlite":
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # on again
        engine.dispose()


def test_an_upgrade_leaving_rows_that_point_nowhere_is_rolled_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dangling.db'}"  # (PostgreSQL never lets such a row in)
    migrate_database(url, "0014")
    engine = db.make_engine(url)
    with engine.begin() as connection:
        for statement in _ROWS[:3]:
            connection.execute(text(statement))
        connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # (a row written while keys were off)
        connection.exec_driver_sql("DELETE FROM tenants")
        connection.exec_driver_sql("PRAGMA defer_foreign_keys = OFF")
    with pytest.raises(RuntimeError, match="rows point at rows that are not there"):
        migrate_database(url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0014"
    engine.dispose()


def test_a_migration_waiting_for_a_lock_gives_up_instead_of_holding_every_request(tmp_path: Path) -> None:
    with empty_database("migrations_lock", tmp_path) as url:
        if not url.startswith("postgresql"):
            pytest.skip("SQLite has no lock queue: a writer waits for busy_timeout, then fails")
        migrate_database(url, "0017")
        engine = db.make_engine(url)
        with engine.connect() as holder:  # a long transaction that has read tenants
            holder.execute(text("SELECT count(*) FROM tenants"))
            with pytest.raises(OperationalError, match="lock timeout"):
                migrate_database(url)  # 0018 drops foreign keys to tenants: an exclusive lock on it
            holder.rollback()
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0017"
        migrate_database(url)  # once the transaction is gone, it goes through
        engine.dispose()


_LINK_ROWS = (
    "INSERT INTO tenants (id, slug, display_name, kind, mode, status, public_id, created_at, updated_at) "
    "VALUES (1, 'tickets', 'Tickets', 'ticketing', 'sandbox', 'active', 'ten_1', '2026-01-01', '2026-01-01')",
    "INSERT INTO id_links (id, local_id, person_id, sub, assurance, made_by, status, created_at, updated_at, "
    "public_id, tenant_id) VALUES (1, 'T-1', 2, 'buyer', 'card_login', 'c', 'active', '2026-01-01', "
    "'2026-01-03', 'lnk_1', 1)",
    "INSERT INTO id_link_history (id, link_id, at, action, sub, by, tenant_id) VALUES "
    "(1, 1, '2026-01-01', 'linked', 'seller', 'c', 1), (2, 1, '2026-01-03', 'transferred', 'buyer', 'c', 1)",
    "INSERT INTO link_invitations (id, code_hash, local_id, created_at, expires_at, link_id, transfer, tenant_id) "
    "VALUES (1, 'a', 'T-1', '2026-01-02', '2026-02-01', 1, TRUE, 1), "
    "(2, 'b', 'T-1', '2026-01-04', '2026-02-01', 1, TRUE, 1), "
    "(3, 'c', 'T-2', '2026-01-04', '2026-02-01', NULL, FALSE, 1)",
)


def test_open_transfer_codes_get_the_holder_who_offered_them(tmp_path: Path) -> None:
    with empty_database("migrations_offers", tmp_path) as url:
        migrate_database(url, "0020")
        engine = db.make_engine(url)
        with engine.begin() as connection:
            for statement in _LINK_ROWS:
                connection.execute(text(statement))
        migrate_database(url)
        with engine.connect() as connection:
            holders = connection.execute(text("SELECT id, holder_sub FROM link_invitations ORDER BY id")).all()
        assert [tuple(row) for row in holders] == [(1, "seller"), (2, "buyer"), (3, None)]  # 1: void now
        engine.dispose()
