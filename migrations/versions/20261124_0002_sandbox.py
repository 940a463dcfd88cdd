"""sandbox J-LIS: authorities, card holders, issued certificates, linkage feed

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("sandbox_authorities",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("kind", sa.Enum("auth", "signature", name="certificate_kind", native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column("key_id", sa.LargeBinary(length=32), nullable=False),
    sa.Column("certificate_pem", sa.Text(), nullable=False),
    sa.Column("private_key_pem", sa.Text(), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("last_crl_number", sa.Integer(), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_authorities")),
    sa.UniqueConstraint("key_id", name=op.f("uq_sandbox_authorities_key_id"))
    )
    op.create_table("sandbox_persons",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("name", sa.String(length=100), nullable=False),
    sa.Column("name_substitutes", sa.String(length=100), nullable=False),
    sa.Column("gender", sa.String(length=8), nullable=False),
    sa.Column("birthdate", sa.Date(), nullable=False),
    sa.Column("address", sa.String(length=300), nullable=False),
    sa.Column("address_substitutes", sa.String(length=300), nullable=False),
    sa.Column("prefecture_romaji", sa.String(length=40), nullable=False),
    sa.Column("deceased", sa.Boolean(), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_persons"))
    )
    op.create_table("sandbox_certificates",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("authority_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("kind", sa.Enum("auth", "signature", name="certificate_kind", native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column("serial", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("not_before", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("not_after", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("reason", sa.Enum("unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation", "cACompromise", "certificateHold", "removeFromCRL", "privilegeWithdrawn", "aACompromise", name="revocation_reason", native_enum=False, create_constraint=True, length=24), nullable=True),
    sa.ForeignKeyConstraint(["authority_id"], ["sandbox_authorities.id"], name=op.f("fk_sandbox_certificates_authority_id_sandbox_authorities")),
    sa.ForeignKeyConstraint(["person_id"], ["sandbox_persons.id"], name=op.f("fk_sandbox_certificates_person_id_sandbox_persons")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_certificates")),
    sa.UniqueConstraint("authority_id", "serial", name=op.f("uq_sandbox_certificates_authority_id_serial"))
    )
    with op.batch_alter_table("sandbox_certificates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_certificates_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandbox_certificates_serial"), ["serial"], unique=False)

    op.create_table("sandbox_linkage",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("old_certificate_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("new_certificate_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("published_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("event", sa.String(length=24), nullable=False),
    sa.ForeignKeyConstraint(["new_certificate_id"], ["sandbox_certificates.id"], name=op.f("fk_sandbox_linkage_new_certificate_id_sandbox_certificates")),
    sa.ForeignKeyConstraint(["old_certificate_id"], ["sandbox_certificates.id"], name=op.f("fk_sandbox_linkage_old_certificate_id_sandbox_certificates")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_linkage"))
    )


def downgrade() -> None:
    op.drop_table("sandbox_linkage")
    with op.batch_alter_table("sandbox_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_certificates_serial"))
        batch_op.drop_index(batch_op.f("ix_sandbox_certificates_person_id"))

    op.drop_table("sandbox_certificates")
    op.drop_table("sandbox_persons")
    op.drop_table("sandbox_authorities")
