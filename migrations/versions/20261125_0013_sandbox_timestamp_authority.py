"""sandbox timestamp authority

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 09:25:54.254565
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("sandbox_timestamp_authorities",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("root_pem", sa.Text(), nullable=False),
    sa.Column("certificate_pem", sa.Text(), nullable=False),
    sa.Column("private_key_pem", sa.Text(), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_timestamp_authorities"))
    )


def downgrade() -> None:
    op.drop_table("sandbox_timestamp_authorities")
