"""One linear Alembic history whose head matches the models exactly."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

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
        assert differences == []

        command.downgrade(alembic_config(url), "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate_database(url)
        assert "tenants" in inspect(engine).get_table_names()
        engine.dispose()
