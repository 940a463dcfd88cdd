"""Every model of every domain, imported in one place for Alembic and the tests.

Each ``saas/<domain>/models.py`` is imported here automatically, so a new domain's
tables can never escape autogenerate or the migration-drift test.
"""

import importlib
import pkgutil

import saas
from saas.db import Base

for _module in pkgutil.iter_modules(saas.__path__):
    if _module.ispkg:
        try:
            importlib.import_module(f"saas.{_module.name}.models")
        except ModuleNotFoundError as missing:
            if missing.name != f"saas.{_module.name}.models":
                raise

# The JPKI library keeps its own schema (it imports no ORM); migrated with the rest.
from saas.jpki.store import metadata as jpki_metadata  # noqa: E402

ALL_METADATA = [Base.metadata, jpki_metadata]

__all__ = ["ALL_METADATA", "Base"]
