"""powers of attorney and id links: records, agents, history, fetches, access codes; the
sandbox TSA; RFC 9396 authorization_details on authorization codes; id links, their history,
invitations, transfers and imports; check-in devices and check-ins

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 10:14:10.862641
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0012"
down_revision: str | None = "0011"
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
    op.create_table("checkin_devices",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("location", sa.String(length=200), nullable=False),
    sa.Column("origin", sa.String(length=200), nullable=False),
    sa.Column("key_hash", sa.String(length=64), nullable=False),
    sa.Column("hint", sa.String(length=20), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_checkin_devices_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_checkin_devices")),
    sa.UniqueConstraint("key_hash", name=op.f("uq_checkin_devices_key_hash")),
    sa.UniqueConstraint("public_id", name=op.f("uq_checkin_devices_public_id")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_checkin_devices_tenant_id_id"))
    )
    with op.batch_alter_table("checkin_devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checkin_devices_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("id_links",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("local_id", sa.String(length=100), nullable=False),
    sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("sub", sa.String(length=64), nullable=False),
    sa.Column("assurance", sa.String(length=16), nullable=False),
    sa.Column("made_by", sa.String(length=64), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("updated_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_id_links_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_id_links")),
    sa.UniqueConstraint("public_id", name=op.f("uq_id_links_public_id")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_id_links_tenant_id_id")),
    sa.UniqueConstraint("tenant_id", "local_id", name=op.f("uq_id_links_tenant_id_local_id"))
    )
    with op.batch_alter_table("id_links", schema=None) as batch_op:
        batch_op.create_index("ix_id_links_person", ["tenant_id", "person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_id_links_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("link_imports",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("filename", sa.String(length=200), nullable=False),
    sa.Column("encoding", sa.String(length=16), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("content", sa.Text(), nullable=True),
    sa.Column("total_rows", sa.Integer(), nullable=False),
    sa.Column("error_count", sa.Integer(), nullable=False),
    sa.Column("errors", sa.Text(), nullable=False),
    sa.Column("processed_rows", sa.Integer(), nullable=False),
    sa.Column("created_count", sa.Integer(), nullable=False),
    sa.Column("skipped_count", sa.Integer(), nullable=False),
    sa.Column("result_sealed", sa.LargeBinary(), nullable=True),
    sa.Column("created_by", sa.String(length=200), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("finished_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_link_imports_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_link_imports")),
    sa.UniqueConstraint("public_id", name=op.f("uq_link_imports_public_id")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_link_imports_tenant_id_id"))
    )
    with op.batch_alter_table("link_imports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_link_imports_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("powers_of_attorney",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("status", sa.Enum("draft", "awaiting_signature", "awaiting_review", "active", "suspended", "revoked", "expired", name="power_status", native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column("corporate_number", sa.String(length=13), nullable=False),
    sa.Column("principal_name", sa.String(length=200), nullable=False),
    sa.Column("principal_address", sa.String(length=300), nullable=False),
    sa.Column("representative_name", sa.String(length=200), nullable=True),
    sa.Column("representative_title", sa.String(length=40), nullable=True),
    sa.Column("representative_person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("verification_route", sa.String(length=16), nullable=True),
    sa.Column("matters", sa.Text(), nullable=False),
    sa.Column("authorization_details", sa.Text(), nullable=False),
    sa.Column("agency", sa.String(length=8), nullable=False),
    sa.Column("valid_from", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("valid_until", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("subdelegation_allowed", sa.Boolean(), nullable=False),
    sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("replaces_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("method", sa.String(length=16), nullable=False),
    sa.Column("signing_token_hash", sa.String(length=64), nullable=True),
    sa.Column("signing_expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("signing_digest", sa.String(length=64), nullable=True),
    sa.Column("signing_time", sa.String(length=32), nullable=True),
    sa.Column("record", sa.Text(), nullable=True),
    sa.Column("record_digest", sa.String(length=64), nullable=True),
    sa.Column("verification_code", sa.String(length=19), nullable=False),
    sa.Column("signed_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("activated_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("ended_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("end_reason", sa.String(length=500), nullable=True),
    sa.Column("ended_by", sa.String(length=200), nullable=True),
    sa.Column("history_seq", sa.Integer(), nullable=False),
    sa.Column("history_head", sa.String(length=64), nullable=False),
    sa.Column("created_by", sa.String(length=200), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("updated_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("retain_until", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "parent_id"], ["powers_of_attorney.tenant_id", "powers_of_attorney.id"], name=op.f("fk_powers_of_attorney_tenant_id_parent_id_powers_of_attorney")),
    sa.ForeignKeyConstraint(["tenant_id", "replaces_id"], ["powers_of_attorney.tenant_id", "powers_of_attorney.id"], name=op.f("fk_powers_of_attorney_tenant_id_replaces_id_powers_of_attorney")),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_powers_of_attorney_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_powers_of_attorney")),
    sa.UniqueConstraint("public_id", name=op.f("uq_powers_of_attorney_public_id")),
    sa.UniqueConstraint("signing_token_hash", name=op.f("uq_powers_of_attorney_signing_token_hash")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_powers_of_attorney_tenant_id_id")),
    sa.UniqueConstraint("tenant_id", "verification_code", name=op.f("uq_powers_of_attorney_tenant_id_verification_code"))
    )
    with op.batch_alter_table("powers_of_attorney", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_powers_of_attorney_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index("ix_powers_of_attorney_principal", ["tenant_id", "corporate_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_powers_of_attorney_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("checkins",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("device_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("result", sa.String(length=16), nullable=False),
    sa.Column("reason", sa.String(length=64), nullable=True),
    sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("sub", sa.String(length=64), nullable=True),
    sa.Column("local_ids", sa.String(length=2000), nullable=False),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "device_id"], ["checkin_devices.tenant_id", "checkin_devices.id"], name=op.f("fk_checkins_tenant_id_device_id_checkin_devices")),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_checkins_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_checkins")),
    sa.UniqueConstraint("public_id", name=op.f("uq_checkins_public_id")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_checkins_tenant_id_id"))
    )
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.create_index("ix_checkins_device_at", ["tenant_id", "device_id", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_checkins_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("id_link_history",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("link_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("action", sa.String(length=16), nullable=False),
    sa.Column("sub", sa.String(length=64), nullable=False),
    sa.Column("by", sa.String(length=64), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "link_id"], ["id_links.tenant_id", "id_links.id"], name=op.f("fk_id_link_history_tenant_id_link_id_id_links")),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_id_link_history_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_id_link_history")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_id_link_history_tenant_id_id"))
    )
    with op.batch_alter_table("id_link_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_id_link_history_link_id"), ["link_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_id_link_history_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("link_invitations",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("code_hash", sa.String(length=64), nullable=False),
    sa.Column("local_id", sa.String(length=100), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("used_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("link_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("transfer", sa.Boolean(), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "link_id"], ["id_links.tenant_id", "id_links.id"], name=op.f("fk_link_invitations_tenant_id_link_id_id_links")),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_link_invitations_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_link_invitations")),
    sa.UniqueConstraint("code_hash", name=op.f("uq_link_invitations_code_hash")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_link_invitations_tenant_id_id"))
    )
    with op.batch_alter_table("link_invitations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_link_invitations_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("power_access_codes",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("power_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("code_hash", sa.String(length=64), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("used_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("used_by", sa.String(length=64), nullable=True),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "power_id"], ["powers_of_attorney.tenant_id", "powers_of_attorney.id"], name=op.f("fk_power_access_codes_tenant_id_power_id_powers_of_attorney"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_power_access_codes_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_power_access_codes")),
    sa.UniqueConstraint("code_hash", name=op.f("uq_power_access_codes_code_hash")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_power_access_codes_tenant_id_id"))
    )
    with op.batch_alter_table("power_access_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_power_access_codes_power_id"), ["power_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_power_access_codes_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("power_agents",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("power_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("position", sa.Integer(), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("affiliation", sa.String(length=200), nullable=False),
    sa.Column("email", sa.String(length=254), nullable=True),
    sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("binding_token_hash", sa.String(length=64), nullable=True),
    sa.Column("binding_expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("bound_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "power_id"], ["powers_of_attorney.tenant_id", "powers_of_attorney.id"], name=op.f("fk_power_agents_tenant_id_power_id_powers_of_attorney"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_power_agents_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_power_agents")),
    sa.UniqueConstraint("binding_token_hash", name=op.f("uq_power_agents_binding_token_hash")),
    sa.UniqueConstraint("power_id", "position", name=op.f("uq_power_agents_power_id_position")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_power_agents_tenant_id_id"))
    )
    with op.batch_alter_table("power_agents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_power_agents_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_power_agents_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_power_agents_power_id"), ["power_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_power_agents_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("power_fetches",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("power_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("fetched_by", sa.String(length=64), nullable=False),
    sa.Column("first_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "power_id"], ["powers_of_attorney.tenant_id", "powers_of_attorney.id"], name=op.f("fk_power_fetches_tenant_id_power_id_powers_of_attorney"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_power_fetches_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_power_fetches")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_power_fetches_tenant_id_id")),
    sa.UniqueConstraint("tenant_id", "power_id", "fetched_by", name=op.f("uq_power_fetches_tenant_id_power_id_fetched_by"))
    )
    with op.batch_alter_table("power_fetches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_power_fetches_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("power_history",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("power_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("action", sa.String(length=40), nullable=False),
    sa.Column("status", sa.String(length=24), nullable=False),
    sa.Column("actor", sa.String(length=200), nullable=False),
    sa.Column("reason", sa.String(length=500), nullable=True),
    sa.Column("prev_hash", sa.String(length=64), nullable=False),
    sa.Column("hash", sa.String(length=64), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "power_id"], ["powers_of_attorney.tenant_id", "powers_of_attorney.id"], name=op.f("fk_power_history_tenant_id_power_id_powers_of_attorney"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_power_history_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_power_history")),
    sa.UniqueConstraint("power_id", "seq", name=op.f("uq_power_history_power_id_seq")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_power_history_tenant_id_id"))
    )
    with op.batch_alter_table("power_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_power_history_tenant_id"), ["tenant_id"], unique=False)

    with op.batch_alter_table("oidc_authorization_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("authorization_details", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oidc_authorization_codes", schema=None) as batch_op:
        batch_op.drop_column("authorization_details")

    with op.batch_alter_table("power_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_power_history_tenant_id"))

    op.drop_table("power_history")
    with op.batch_alter_table("power_fetches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_power_fetches_tenant_id"))

    op.drop_table("power_fetches")
    with op.batch_alter_table("power_agents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_power_agents_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_power_agents_power_id"))
        batch_op.drop_index(batch_op.f("ix_power_agents_person_id"))
        batch_op.drop_index(batch_op.f("ix_power_agents_name"))

    op.drop_table("power_agents")
    with op.batch_alter_table("power_access_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_power_access_codes_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_power_access_codes_power_id"))

    op.drop_table("power_access_codes")
    with op.batch_alter_table("link_invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_invitations_tenant_id"))

    op.drop_table("link_invitations")
    with op.batch_alter_table("id_link_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_id_link_history_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_id_link_history_link_id"))

    op.drop_table("id_link_history")
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checkins_tenant_id"))
        batch_op.drop_index("ix_checkins_device_at")

    op.drop_table("checkins")
    with op.batch_alter_table("powers_of_attorney", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_powers_of_attorney_tenant_id"))
        batch_op.drop_index("ix_powers_of_attorney_principal")
        batch_op.drop_index(batch_op.f("ix_powers_of_attorney_parent_id"))

    op.drop_table("powers_of_attorney")
    with op.batch_alter_table("link_imports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_imports_tenant_id"))

    op.drop_table("link_imports")
    with op.batch_alter_table("id_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_id_links_tenant_id"))
        batch_op.drop_index("ix_id_links_person")

    op.drop_table("id_links")
    with op.batch_alter_table("checkin_devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checkin_devices_tenant_id"))

    op.drop_table("checkin_devices")
    op.drop_table("sandbox_timestamp_authorities")
