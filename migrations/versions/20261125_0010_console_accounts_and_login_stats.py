"""console accounts and login stats

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 07:21:18.209010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("console_users",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("email", sa.String(length=254), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("password_hash", sa.String(length=200), nullable=True),
    sa.Column("email_verified_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("totp_secret", sa.LargeBinary(), nullable=True),
    sa.Column("totp_enabled_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
    sa.Column("failed_logins", sa.Integer(), nullable=False),
    sa.Column("locked_until", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("is_operator", sa.Boolean(), nullable=False),
    sa.Column("card_sub", sa.String(length=64), nullable=True),
    sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False),
    sa.Column("last_login_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_console_users")),
    sa.UniqueConstraint("card_sub", name=op.f("uq_console_users_card_sub")),
    sa.UniqueConstraint("email", name=op.f("uq_console_users_email")),
    sa.UniqueConstraint("public_id", name=op.f("uq_console_users_public_id"))
    )
    op.create_table("outgoing_mail",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("recipient", sa.String(length=254), nullable=False),
    sa.Column("subject", sa.String(length=300), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("sent_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("last_error", sa.String(length=300), nullable=True),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_outgoing_mail"))
    )
    with op.batch_alter_table("outgoing_mail", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outgoing_mail_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outgoing_mail_recipient"), ["recipient"], unique=False)

    op.create_table("api_keys",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("hint", sa.String(length=24), nullable=False),
    sa.Column("key_hash", sa.String(length=64), nullable=False),
    sa.Column("scopes", sa.Text(), nullable=False),
    sa.Column("created_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("last_used_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["created_by"], ["console_users.id"], name=op.f("fk_api_keys_created_by_console_users"), ondelete="SET NULL"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_api_keys_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    sa.UniqueConstraint("public_id", name=op.f("uq_api_keys_public_id")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_api_keys_tenant_id_id"))
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("audit_entries",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(length=300), nullable=False),
    sa.Column("action", sa.String(length=64), nullable=False),
    sa.Column("target", sa.String(length=200), nullable=False),
    sa.Column("ip", sa.String(length=64), nullable=False),
    sa.Column("details", sa.Text(), nullable=False),
    sa.Column("prev_hash", sa.String(length=64), nullable=False),
    sa.Column("hash", sa.String(length=64), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_audit_entries_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_audit_entries_tenant_id_id")),
    sa.UniqueConstraint("tenant_id", "seq", name=op.f("uq_audit_entries_tenant_id_seq"))
    )
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_entries_action"), ["action"], unique=False)
        batch_op.create_index("ix_audit_entries_tenant_at", ["tenant_id", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_entries_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("email_tokens",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("purpose", sa.String(length=16), nullable=False),
    sa.Column("token_hash", sa.String(length=64), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("used_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["user_id"], ["console_users.id"], name=op.f("fk_email_tokens_user_id_console_users"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_email_tokens")),
    sa.UniqueConstraint("token_hash", name=op.f("uq_email_tokens_token_hash"))
    )
    with op.batch_alter_table("email_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_email_tokens_user_id"), ["user_id"], unique=False)

    op.create_table("invitations",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("email", sa.String(length=254), nullable=False),
    sa.Column("role", sa.Enum("owner", "admin", "developer", "auditor", name="invitation_role", native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column("token_hash", sa.String(length=64), nullable=False),
    sa.Column("invited_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("accepted_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["invited_by"], ["console_users.id"], name=op.f("fk_invitations_invited_by_console_users"), ondelete="SET NULL"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_invitations_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
    sa.UniqueConstraint("public_id", name=op.f("uq_invitations_public_id")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_invitations_tenant_id_id")),
    sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash"))
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invitations_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("live_mode_requests",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("requested_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("use_case", sa.Text(), nullable=False),
    sa.Column("status", sa.Enum("pending", "approved", "rejected", name="live_mode_status", native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column("decided_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("decision_reason", sa.Text(), nullable=True),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("decided_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["decided_by"], ["console_users.id"], name=op.f("fk_live_mode_requests_decided_by_console_users"), ondelete="SET NULL"),
    sa.ForeignKeyConstraint(["requested_by"], ["console_users.id"], name=op.f("fk_live_mode_requests_requested_by_console_users"), ondelete="SET NULL"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_live_mode_requests_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_live_mode_requests")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_live_mode_requests_tenant_id_id"))
    )
    with op.batch_alter_table("live_mode_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_live_mode_requests_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("memberships",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("role", sa.Enum("owner", "admin", "developer", "auditor", name="console_role", native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_memberships_tenant_id_tenants")),
    sa.ForeignKeyConstraint(["user_id"], ["console_users.id"], name=op.f("fk_memberships_user_id_console_users"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_memberships")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_memberships_tenant_id_id")),
    sa.UniqueConstraint("tenant_id", "user_id", name=op.f("uq_memberships_tenant_id_user_id"))
    )
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_memberships_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_memberships_user_id"), ["user_id"], unique=False)

    op.create_table("oidc_login_stats",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("day", sa.Date(), nullable=False),
    sa.Column("client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("outcome", sa.String(length=40), nullable=False),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_oidc_login_stats_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_login_stats")),
    sa.UniqueConstraint("tenant_id", "day", "client_id", "outcome", name=op.f("uq_oidc_login_stats_tenant_id_day_client_id_outcome")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_oidc_login_stats_tenant_id_id"))
    )
    with op.batch_alter_table("oidc_login_stats", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_login_stats_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("api_requests",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("key_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("method", sa.String(length=8), nullable=False),
    sa.Column("path", sa.String(length=300), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("ip", sa.String(length=64), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name=op.f("fk_api_requests_key_id_api_keys"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_api_requests_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_api_requests")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_api_requests_tenant_id_id"))
    )
    with op.batch_alter_table("api_requests", schema=None) as batch_op:
        batch_op.create_index("ix_api_requests_key_at", ["key_id", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_api_requests_tenant_id"), ["tenant_id"], unique=False)

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audit_seq", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("audit_head", sa.String(length=64), nullable=True))

    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("format", sa.String(length=8), server_default="json", nullable=False))
        batch_op.add_column(sa.Column("delivery", sa.String(length=8), server_default="push", nullable=False))
        batch_op.add_column(sa.Column("set_issuer", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("set_audience", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("sealed_authorization", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("requested_events", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("status_reason", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_column("status_reason")
        batch_op.drop_column("requested_events")
        batch_op.drop_column("sealed_authorization")
        batch_op.drop_column("set_audience")
        batch_op.drop_column("set_issuer")
        batch_op.drop_column("delivery")
        batch_op.drop_column("format")

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("audit_head")
        batch_op.drop_column("audit_seq")

    with op.batch_alter_table("api_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_requests_tenant_id"))
        batch_op.drop_index("ix_api_requests_key_at")

    op.drop_table("api_requests")
    with op.batch_alter_table("oidc_login_stats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_login_stats_tenant_id"))

    op.drop_table("oidc_login_stats")
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_memberships_user_id"))
        batch_op.drop_index(batch_op.f("ix_memberships_tenant_id"))

    op.drop_table("memberships")
    with op.batch_alter_table("live_mode_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_live_mode_requests_tenant_id"))

    op.drop_table("live_mode_requests")
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invitations_tenant_id"))

    op.drop_table("invitations")
    with op.batch_alter_table("email_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_tokens_user_id"))

    op.drop_table("email_tokens")
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_entries_tenant_id"))
        batch_op.drop_index("ix_audit_entries_tenant_at")
        batch_op.drop_index(batch_op.f("ix_audit_entries_action"))

    op.drop_table("audit_entries")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_tenant_id"))

    op.drop_table("api_keys")
    with op.batch_alter_table("outgoing_mail", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outgoing_mail_recipient"))
        batch_op.drop_index(batch_op.f("ix_outgoing_mail_created_at"))

    op.drop_table("outgoing_mail")
    op.drop_table("console_users")
