"""Every model of every domain, imported in one place for Alembic and the tests."""

from saas.db import Base
from saas.tenants.models import Tenant

__all__ = ["Base", "Tenant"]
