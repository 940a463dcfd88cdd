"""oidc authorization flow

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 02:21:40.498300
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("oidc_used_assertions",
    sa.Column("key", sa.String(length=64), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("key", name=op.f("pk_oidc_used_assertions"))
    )
    with op.batch_alter_table("oidc_used_assertions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_used_assertions_expires_at"), ["expires_at"], unique=False)

    op.create_table("oidc_sessions",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("sid", sa.String(length=64), nullable=False),
    sa.Column("browser_hash", sa.String(length=64), nullable=False),
    sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("sub", sa.String(length=64), nullable=False),
    sa.Column("auth_time", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("ended_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_oidc_sessions_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_sessions")),
    sa.UniqueConstraint("sid", name=op.f("uq_oidc_sessions_sid")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_oidc_sessions_tenant_id_id"))
    )
    with op.batch_alter_table("oidc_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_sessions_browser_hash"), ["browser_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_oidc_sessions_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("oidc_authorization_codes",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("code_hash", sa.String(length=64), nullable=False),
    sa.Column("client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("redirect_uri", sa.Text(), nullable=False),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("nonce", sa.String(length=255), nullable=False),
    sa.Column("acr", sa.String(length=64), nullable=False),
    sa.Column("code_challenge", sa.String(length=128), nullable=False),
    sa.Column("code_challenge_method", sa.String(length=8), nullable=False),
    sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("sub", sa.String(length=64), nullable=False),
    sa.Column("sid", sa.String(length=64), nullable=False),
    sa.Column("auth_time", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("sealed_attributes", sa.LargeBinary(), nullable=True),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("used_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("grant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "client_id"], ["oidc_clients.tenant_id", "oidc_clients.id"], name=op.f("fk_oidc_authorization_codes_tenant_id_client_id_oidc_clients"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_oidc_authorization_codes_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_authorization_codes")),
    sa.UniqueConstraint("code_hash", name=op.f("uq_oidc_authorization_codes_code_hash")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_oidc_authorization_codes_tenant_id_id"))
    )
    with op.batch_alter_table("oidc_authorization_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_authorization_codes_client_id"), ["client_id"], unique=False)
        batch_op.create_index("ix_oidc_authorization_codes_client_nonce", ["client_id", "nonce"], unique=False)
        batch_op.create_index(batch_op.f("ix_oidc_authorization_codes_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("oidc_authorization_requests",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("params", sa.Text(), nullable=False),
    sa.Column("pushed", sa.Boolean(), nullable=False),
    sa.Column("status", sa.Enum("pending", "authenticated", "completed", "failed", name="request_status", native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column("browser_hash", sa.String(length=64), nullable=True),
    sa.Column("challenge", sa.String(length=64), nullable=True),
    sa.Column("step", sa.String(length=16), nullable=True),
    sa.Column("release_digest", sa.LargeBinary(), nullable=True),
    sa.Column("release_text", sa.Text(), nullable=True),
    sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("sub", sa.String(length=64), nullable=True),
    sa.Column("auth_time", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("sealed_attributes", sa.LargeBinary(), nullable=True),
    sa.Column("error", sa.String(length=64), nullable=True),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "client_id"], ["oidc_clients.tenant_id", "oidc_clients.id"], name=op.f("fk_oidc_authorization_requests_tenant_id_client_id_oidc_clients"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_oidc_authorization_requests_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_authorization_requests")),
    sa.UniqueConstraint("public_id", name=op.f("uq_oidc_authorization_requests_public_id")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_oidc_authorization_requests_tenant_id_id"))
    )
    with op.batch_alter_table("oidc_authorization_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_authorization_requests_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oidc_authorization_requests_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("oidc_device_authorizations",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("device_code_hash", sa.String(length=64), nullable=False),
    sa.Column("user_code", sa.String(length=16), nullable=False),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("status", sa.Enum("pending", "approved", "denied", "consumed", name="device_status", native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("sub", sa.String(length=64), nullable=True),
    sa.Column("sid", sa.String(length=64), nullable=True),
    sa.Column("acr", sa.String(length=64), nullable=True),
    sa.Column("auth_time", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("sealed_attributes", sa.LargeBinary(), nullable=True),
    sa.Column("polled_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "client_id"], ["oidc_clients.tenant_id", "oidc_clients.id"], name=op.f("fk_oidc_device_authorizations_tenant_id_client_id_oidc_clients"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_oidc_device_authorizations_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_device_authorizations")),
    sa.UniqueConstraint("device_code_hash", name=op.f("uq_oidc_device_authorizations_device_code_hash")),
    sa.UniqueConstraint("public_id", name=op.f("uq_oidc_device_authorizations_public_id")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_oidc_device_authorizations_tenant_id_id")),
    sa.UniqueConstraint("user_code", name=op.f("uq_oidc_device_authorizations_user_code"))
    )
    with op.batch_alter_table("oidc_device_authorizations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_device_authorizations_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oidc_device_authorizations_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("oidc_grants",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("sub", sa.String(length=64), nullable=True),
    sa.Column("sid", sa.String(length=64), nullable=True),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("acr", sa.String(length=64), nullable=True),
    sa.Column("auth_time", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("sealed_attributes", sa.LargeBinary(), nullable=True),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("revoked_reason", sa.String(length=64), nullable=True),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "client_id"], ["oidc_clients.tenant_id", "oidc_clients.id"], name=op.f("fk_oidc_grants_tenant_id_client_id_oidc_clients"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_oidc_grants_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_grants")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_oidc_grants_tenant_id_id"))
    )
    with op.batch_alter_table("oidc_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_grants_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oidc_grants_sid"), ["sid"], unique=False)
        batch_op.create_index(batch_op.f("ix_oidc_grants_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("oidc_sign_transactions",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("client_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("digest", sa.LargeBinary(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("status", sa.Enum("pending", "signed", "refused", name="sign_status", native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column("sub", sa.String(length=64), nullable=True),
    sa.Column("signature", sa.LargeBinary(), nullable=True),
    sa.Column("certificate", sa.LargeBinary(), nullable=True),
    sa.Column("verification", sa.Text(), nullable=True),
    sa.Column("signed_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "client_id"], ["oidc_clients.tenant_id", "oidc_clients.id"], name=op.f("fk_oidc_sign_transactions_tenant_id_client_id_oidc_clients"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_oidc_sign_transactions_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_sign_transactions")),
    sa.UniqueConstraint("public_id", name=op.f("uq_oidc_sign_transactions_public_id")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_oidc_sign_transactions_tenant_id_id"))
    )
    with op.batch_alter_table("oidc_sign_transactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_sign_transactions_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oidc_sign_transactions_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("oidc_tokens",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("grant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("access_jti", sa.String(length=64), nullable=False),
    sa.Column("access_expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("refresh_hash", sa.String(length=64), nullable=True),
    sa.Column("refreshed_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "grant_id"], ["oidc_grants.tenant_id", "oidc_grants.id"], name=op.f("fk_oidc_tokens_tenant_id_grant_id_oidc_grants"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_oidc_tokens_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_tokens")),
    sa.UniqueConstraint("access_jti", name=op.f("uq_oidc_tokens_access_jti")),
    sa.UniqueConstraint("refresh_hash", name=op.f("uq_oidc_tokens_refresh_hash")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_oidc_tokens_tenant_id_id"))
    )
    with op.batch_alter_table("oidc_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_tokens_grant_id"), ["grant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oidc_tokens_tenant_id"), ["tenant_id"], unique=False)

    with op.batch_alter_table("oidc_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("post_logout_redirect_uris", sa.Text(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("backchannel_logout_uri", sa.String(length=500), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table("oidc_clients", schema=None) as batch_op:
        batch_op.drop_column("backchannel_logout_uri")
        batch_op.drop_column("post_logout_redirect_uris")

    with op.batch_alter_table("oidc_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_tokens_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_oidc_tokens_grant_id"))

    op.drop_table("oidc_tokens")
    with op.batch_alter_table("oidc_sign_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_sign_transactions_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_oidc_sign_transactions_client_id"))

    op.drop_table("oidc_sign_transactions")
    with op.batch_alter_table("oidc_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_grants_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_oidc_grants_sid"))
        batch_op.drop_index(batch_op.f("ix_oidc_grants_client_id"))

    op.drop_table("oidc_grants")
    with op.batch_alter_table("oidc_device_authorizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_device_authorizations_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_oidc_device_authorizations_client_id"))

    op.drop_table("oidc_device_authorizations")
    with op.batch_alter_table("oidc_authorization_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_authorization_requests_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_oidc_authorization_requests_client_id"))

    op.drop_table("oidc_authorization_requests")
    with op.batch_alter_table("oidc_authorization_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_authorization_codes_tenant_id"))
        batch_op.drop_index("ix_oidc_authorization_codes_client_nonce")
        batch_op.drop_index(batch_op.f("ix_oidc_authorization_codes_client_id"))

    op.drop_table("oidc_authorization_codes")
    with op.batch_alter_table("oidc_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_sessions_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_oidc_sessions_browser_hash"))

    op.drop_table("oidc_sessions")
    with op.batch_alter_table("oidc_used_assertions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_used_assertions_expires_at"))

    op.drop_table("oidc_used_assertions")
