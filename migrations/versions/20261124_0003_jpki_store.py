"""JPKI store: CRL state and entries, single-use challenges, persons and their certificates

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("jpki_crls",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("issuer_key_id", sa.LargeBinary(length=32), nullable=False),
    sa.Column("crl_number", sa.BigInteger(), nullable=False),
    sa.Column("this_update", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("next_update", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("ingested_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("entries", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_jpki_crls")),
    sa.UniqueConstraint("issuer_key_id", name=op.f("uq_jpki_crls_issuer_key_id"))
    )
    op.create_table("jpki_crl_indexes",
    sa.Column("issuer_key_id", sa.LargeBinary(length=32), nullable=False),
    sa.Column("crl_number", sa.BigInteger(), nullable=False),
    sa.Column("serial_keys", sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint("issuer_key_id", name=op.f("pk_jpki_crl_indexes"))
    )
    op.create_table("jpki_feed_positions",
    sa.Column("feed", sa.String(length=40), nullable=False),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("feed", name=op.f("pk_jpki_feed_positions"))
    )
    op.create_table("jpki_nonces",
    sa.Column("key", sa.LargeBinary(length=32), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("key", name=op.f("pk_jpki_nonces"))
    )
    with op.batch_alter_table("jpki_nonces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jpki_nonces_expires_at"), ["expires_at"], unique=False)

    op.create_table("jpki_persons",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("merged_into", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_jpki_persons"))
    )
    op.create_table("jpki_revocations",
    sa.Column("crl_id", sa.Integer(), nullable=False),
    sa.Column("key", sa.BigInteger(), nullable=False),
    sa.Column("serial", sa.String(length=40), nullable=False),
    sa.Column("reason", sa.SmallInteger(), nullable=False),
    sa.Column("revoked_at", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("crl_id", "key", "serial", name=op.f("pk_jpki_revocations"))
    )
    op.create_table("jpki_person_certificates",
    sa.Column("issuer_key_id", sa.LargeBinary(length=32), nullable=False),
    sa.Column("serial", sa.String(length=40), nullable=False),
    sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("linked_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["person_id"], ["jpki_persons.id"], name=op.f("fk_jpki_person_certificates_person_id_jpki_persons")),
    sa.PrimaryKeyConstraint("issuer_key_id", "serial", name=op.f("pk_jpki_person_certificates"))
    )
    with op.batch_alter_table("jpki_person_certificates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jpki_person_certificates_person_id"), ["person_id"], unique=False)



def downgrade() -> None:
    with op.batch_alter_table("jpki_person_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jpki_person_certificates_person_id"))

    op.drop_table("jpki_person_certificates")
    op.drop_table("jpki_revocations")
    op.drop_table("jpki_persons")
    with op.batch_alter_table("jpki_nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jpki_nonces_expires_at"))

    op.drop_table("jpki_nonces")
    op.drop_table("jpki_feed_positions")
    op.drop_table("jpki_crl_indexes")
    op.drop_table("jpki_crls")
