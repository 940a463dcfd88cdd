"""link status sweep: card status on id links, sweeps and their chunks, standing consents to
attribute updates, each person's generation and current auth certificate

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 12:05:33.667651
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
    op.create_table("link_sweeps",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("chunks", sa.Integer(), nullable=False),
    sa.Column("started_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("finished_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_link_sweeps"))
    )
    op.create_table("link_sweep_chunks",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("sweep_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("first_person", sa.BigInteger(), nullable=False),
    sa.Column("last_person", sa.BigInteger(), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("claimed_until", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("persons", sa.Integer(), nullable=False),
    sa.Column("changes", sa.Integer(), nullable=False),
    sa.Column("unchecked", sa.Integer(), nullable=False),
    sa.Column("done_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["sweep_id"], ["link_sweeps.id"], name=op.f("fk_link_sweep_chunks_sweep_id_link_sweeps")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_link_sweep_chunks"))
    )
    with op.batch_alter_table("link_sweep_chunks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_link_sweep_chunks_sweep_id"), ["sweep_id"], unique=False)

    op.create_table("oidc_attribute_update_consents",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("attributes", sa.String(length=64), nullable=False),
    sa.Column("given_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("withdrawn_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "client_id"], ["oidc_clients.tenant_id", "oidc_clients.id"], name=op.f("fk_oidc_attribute_update_consents_tenant_id_client_id_oidc_clients"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_oidc_attribute_update_consents_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_attribute_update_consents")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_oidc_attribute_update_consents_tenant_id_id")),
    sa.UniqueConstraint("tenant_id", "person_id", "client_id", name=op.f("uq_oidc_attribute_update_consents_tenant_id_person_id_client_id"))
    )
    with op.batch_alter_table("oidc_attribute_update_consents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_attribute_update_consents_tenant_id"), ["tenant_id"], unique=False)

    with op.batch_alter_table("id_link_history", schema=None) as batch_op:
        batch_op.alter_column("action",
               existing_type=sa.VARCHAR(length=16),
               type_=sa.String(length=20),
               existing_nullable=False)

    with op.batch_alter_table("id_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("card_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("card_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("card_changed_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("auth_ref", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("signature_ref", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("generation", sa.Integer(), nullable=True))
        batch_op.create_index("ix_id_links_sweep", ["person_id", "status"], unique=False)

    with op.batch_alter_table("jpki_person_certificates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_after", saas.sqltypes.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("replaced", sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table("jpki_persons", schema=None) as batch_op:
        batch_op.add_column(sa.Column("generation", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("auth_issuer_key_id", sa.LargeBinary(length=32), nullable=True))
        batch_op.add_column(sa.Column("auth_serial", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("auth_not_after", saas.sqltypes.UTCDateTime(timezone=True), nullable=True))
    # Persons known already: their current auth certificate is the one attached last.
    for column in ("issuer_key_id", "serial"):
        op.execute(f"""UPDATE jpki_persons SET auth_{column} = (
            SELECT c.{column} FROM jpki_person_certificates c
            WHERE c.person_id = jpki_persons.id AND c.kind = 'auth'
            ORDER BY c.replaced, c.linked_at DESC, length(c.serial) DESC, c.serial DESC LIMIT 1)""")


def downgrade() -> None:
    with op.batch_alter_table("jpki_persons", schema=None) as batch_op:
        batch_op.drop_column("auth_not_after")
        batch_op.drop_column("auth_serial")
        batch_op.drop_column("auth_issuer_key_id")
        batch_op.drop_column("generation")

    with op.batch_alter_table("jpki_person_certificates", schema=None) as batch_op:
        batch_op.drop_column("replaced")
        batch_op.drop_column("not_after")

    with op.batch_alter_table("id_links", schema=None) as batch_op:
        batch_op.drop_index("ix_id_links_sweep")
        batch_op.drop_column("generation")
        batch_op.drop_column("signature_ref")
        batch_op.drop_column("auth_ref")
        batch_op.drop_column("card_changed_at")
        batch_op.drop_column("card_reason")
        batch_op.drop_column("card_status")

    with op.batch_alter_table("id_link_history", schema=None) as batch_op:
        batch_op.alter_column("action",
               existing_type=sa.String(length=20),
               type_=sa.VARCHAR(length=16),
               existing_nullable=False)

    with op.batch_alter_table("oidc_attribute_update_consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_attribute_update_consents_tenant_id"))

    op.drop_table("oidc_attribute_update_consents")
    with op.batch_alter_table("link_sweep_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_sweep_chunks_sweep_id"))

    op.drop_table("link_sweep_chunks")
    op.drop_table("link_sweeps")
