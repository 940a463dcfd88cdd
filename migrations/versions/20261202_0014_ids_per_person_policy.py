"""ids per person: whether a tenant lets one person hold several of its local ids

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 02:48:03.178728
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("id_link_policies",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("several_per_person", sa.Boolean(), nullable=False),
    sa.Column("updated_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(length=64), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_id_link_policies_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_id_link_policies")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_id_link_policies_tenant_id_id")),
    sa.UniqueConstraint("tenant_id", name=op.f("uq_id_link_policies_tenant_id"))
    )
    with op.batch_alter_table("id_link_policies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_id_link_policies_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("id_link_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_id_link_policies_tenant_id"))

    op.drop_table("id_link_policies")
