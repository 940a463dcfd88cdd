"""OIDC: the tenants' relying parties and the pairwise subjects of their users

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("oidc_clients",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("redirect_uris", sa.Text(), nullable=False),
    sa.Column("scopes", sa.Text(), nullable=False),
    sa.Column("auth_method", sa.Enum("private_key_jwt", "client_secret_basic", name="client_auth_method", native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column("jwks", sa.Text(), nullable=True),
    sa.Column("jwks_uri", sa.String(length=500), nullable=True),
    sa.Column("secret_hash", sa.String(length=200), nullable=True),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_oidc_clients_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_clients")),
    sa.UniqueConstraint("public_id", name=op.f("uq_oidc_clients_public_id")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_oidc_clients_tenant_id_id"))
    )
    with op.batch_alter_table("oidc_clients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_clients_tenant_id"), ["tenant_id"], unique=False)



    op.create_table("oidc_subjects",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("sub", sa.String(length=64), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_oidc_subjects_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_subjects")),
    sa.UniqueConstraint("sub", name=op.f("uq_oidc_subjects_sub")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_oidc_subjects_tenant_id_id")),
    sa.UniqueConstraint("tenant_id", "person_id", name=op.f("uq_oidc_subjects_tenant_id_person_id"))
    )
    with op.batch_alter_table("oidc_subjects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_subjects_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oidc_subjects_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_table("oidc_subjects")
    with op.batch_alter_table("oidc_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_clients_tenant_id"))

    op.drop_table("oidc_clients")
