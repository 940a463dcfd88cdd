"""Tenant-scoped models that exist only in the tests, to exercise the isolation mechanism.

They live in their own metadata (with a copy of ``tenants``) so that they never show up
in the migration-drift check.
"""

from __future__ import annotations

from sqlalchemy import MetaData, String, and_
from sqlalchemy.orm import DeclarativeBase, Mapped, foreign, mapped_column, relationship, remote

from saas.db import BigId, HasPublicId, TenantScoped, tenant_foreign_key
from saas.tenants.models import Tenant

metadata = MetaData()
Tenant.__table__.to_metadata(metadata)


class IsolationBase(DeclarativeBase):
    metadata = metadata


class Widget(HasPublicId, TenantScoped, IsolationBase):
    __tablename__ = "test_widgets"
    __id_prefix__ = "wid"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))

    parts: Mapped[list[Part]] = relationship(back_populates="widget", order_by="Part.id")
    # Joins on name alone: without the tenant criteria it would reach other tenants.
    namesakes: Mapped[list[Widget]] = relationship(
        primaryjoin=lambda: and_(Widget.name == remote(foreign(Widget.name)),
                                 Widget.id != remote(Widget.id)),
        viewonly=True,
    )


class Part(TenantScoped, IsolationBase):
    __tablename__ = "test_parts"
    __extra_table_args__ = (tenant_foreign_key("widget_id", "test_widgets"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    widget_id: Mapped[int] = mapped_column(BigId)
    label: Mapped[str] = mapped_column(String(50))

    widget: Mapped[Widget] = relationship(back_populates="parts")


TABLES = [Widget.__table__, Part.__table__]
