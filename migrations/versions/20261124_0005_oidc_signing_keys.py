"""OIDC: the tenants' token-signing keys, encrypted at rest

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("oidc_signing_keys",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("kid", sa.String(length=64), nullable=False),
    sa.Column("alg", sa.String(length=8), nullable=False),
    sa.Column("status", sa.Enum("active", "retiring", "retired", name="key_status", native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column("public_jwk", sa.Text(), nullable=False),
    sa.Column("encrypted_private_key", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("retire_after", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_oidc_signing_keys_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_signing_keys")),
    sa.UniqueConstraint("kid", name=op.f("uq_oidc_signing_keys_kid")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_oidc_signing_keys_tenant_id_id"))
    )
    with op.batch_alter_table("oidc_signing_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_signing_keys_tenant_id"), ["tenant_id"], unique=False)



def downgrade() -> None:
    with op.batch_alter_table("oidc_signing_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_signing_keys_tenant_id"))

    op.drop_table("oidc_signing_keys")
