"""sandbox: the commercial-register stand-in and the last published CRLs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("sandbox_corporations",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("corporate_number", sa.String(length=13), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("address", sa.String(length=300), nullable=False),
    sa.Column("representative_address_hidden", sa.Boolean(), nullable=False),
    sa.Column("registered_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_corporations")),
    sa.UniqueConstraint("corporate_number", name=op.f("uq_sandbox_corporations_corporate_number"))
    )
    op.create_table("sandbox_published_crls",
    sa.Column("authority_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("crl_number", sa.Integer(), nullable=False),
    sa.Column("der", sa.LargeBinary(), nullable=False),
    sa.Column("published_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("next_update", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["authority_id"], ["sandbox_authorities.id"], name=op.f("fk_sandbox_published_crls_authority_id_sandbox_authorities")),
    sa.PrimaryKeyConstraint("authority_id", name=op.f("pk_sandbox_published_crls"))
    )
    op.create_table("sandbox_representatives",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("corporation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("title", sa.String(length=40), nullable=False),
    sa.Column("name", sa.String(length=100), nullable=False),
    sa.Column("address", sa.String(length=300), nullable=False),
    sa.Column("appointed_on", sa.Date(), nullable=False),
    sa.Column("resigned_on", sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(["corporation_id"], ["sandbox_corporations.id"], name=op.f("fk_sandbox_representatives_corporation_id_sandbox_corporations")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_representatives"))
    )
    with op.batch_alter_table("sandbox_representatives", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_representatives_corporation_id"), ["corporation_id"], unique=False)



def downgrade() -> None:
    with op.batch_alter_table("sandbox_representatives", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_representatives_corporation_id"))

    op.drop_table("sandbox_representatives")
    op.drop_table("sandbox_published_crls")
    op.drop_table("sandbox_corporations")
