"""tenants

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("kind", _enum("tenant_kind", "bank", "hospital", "ticketing", "association",
                                "municipality", "other"), nullable=False),
        sa.Column("corporate_number", sa.String(length=13), nullable=True),
        sa.Column("mode", _enum("tenant_mode", "sandbox", "live"), nullable=False),
        sa.Column("status", _enum("tenant_status", "active", "suspended", "closed"), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("corporate_number IS NULL OR length(corporate_number) = 13",
                           name=op.f("ck_tenants_corporate_number_length")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("public_id", name=op.f("uq_tenants_public_id")),
        sa.UniqueConstraint("slug", name=op.f("uq_tenants_slug")),
    )
    op.create_index(op.f("ix_tenants_corporate_number"), "tenants", ["corporate_number"])


def downgrade() -> None:
    op.drop_index(op.f("ix_tenants_corporate_number"), table_name="tenants")
    op.drop_table("tenants")
