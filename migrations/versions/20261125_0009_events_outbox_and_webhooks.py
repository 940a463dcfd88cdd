"""events outbox and webhooks

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 06:05:25.096401
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("events",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("type", sa.String(length=64), nullable=False),
    sa.Column("subject", sa.String(length=200), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("dispatched_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_events_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    sa.UniqueConstraint("public_id", name=op.f("uq_events_public_id")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_events_tenant_id_id"))
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_type"), ["type"], unique=False)
        batch_op.create_index("ix_events_undispatched", ["id"], unique=False, postgresql_where=sa.text("dispatched_at IS NULL"), sqlite_where=sa.text("dispatched_at IS NULL"))

    op.create_table("webhook_endpoints",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("url", sa.String(length=500), nullable=False),
    sa.Column("description", sa.String(length=200), nullable=False),
    sa.Column("event_types", sa.Text(), nullable=False),
    sa.Column("sealed_secret", sa.LargeBinary(), nullable=False),
    sa.Column("previous_sealed_secret", sa.LargeBinary(), nullable=True),
    sa.Column("previous_secret_expires_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("enabled", sa.Boolean(), nullable=False),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("updated_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("public_id", sa.String(length=40), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_webhook_endpoints_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    sa.UniqueConstraint("public_id", name=op.f("uq_webhook_endpoints_public_id")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_webhook_endpoints_tenant_id_id"))
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_endpoints_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("webhook_deliveries",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("endpoint_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("subject", sa.String(length=200), nullable=False),
    sa.Column("status", sa.Enum("pending", "succeeded", "dead", name="delivery_status", native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("leased_until", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("lease_token", sa.String(length=32), nullable=True),
    sa.Column("last_status_code", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.String(length=300), nullable=True),
    sa.Column("delivered_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column("created_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "endpoint_id"], ["webhook_endpoints.tenant_id", "webhook_endpoints.id"], name=op.f("fk_webhook_deliveries_tenant_id_endpoint_id_webhook_endpoints"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id", "event_id"], ["events.tenant_id", "events.id"], name=op.f("fk_webhook_deliveries_tenant_id_event_id_events"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_webhook_deliveries_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_webhook_deliveries_tenant_id_id"))
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_event_id"), ["event_id"], unique=False)
        batch_op.create_index("ix_webhook_deliveries_order", ["endpoint_id", "subject", "status", "event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_tenant_id"), ["tenant_id"], unique=False)

    op.create_table("webhook_delivery_attempts",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("attempted_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("error", sa.String(length=300), nullable=True),
    sa.Column("duration_ms", sa.Integer(), nullable=False),
    sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "delivery_id"], ["webhook_deliveries.tenant_id", "webhook_deliveries.id"], name=op.f("fk_webhook_delivery_attempts_tenant_id_delivery_id_webhook_deliveries"), ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_webhook_delivery_attempts_tenant_id_tenants")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery_attempts")),
    sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_webhook_delivery_attempts_tenant_id_id"))
    )
    with op.batch_alter_table("webhook_delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_delivery_attempts_delivery_id"), ["delivery_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_delivery_attempts_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_attempts_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_attempts_delivery_id"))

    op.drop_table("webhook_delivery_attempts")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_tenant_id"))
        batch_op.drop_index("ix_webhook_deliveries_order")
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_event_id"))
        batch_op.drop_index("ix_webhook_deliveries_due")

    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_endpoints_tenant_id"))

    op.drop_table("webhook_endpoints")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_undispatched", postgresql_where=sa.text("dispatched_at IS NULL"), sqlite_where=sa.text("dispatched_at IS NULL"))
        batch_op.drop_index(batch_op.f("ix_events_type"))
        batch_op.drop_index(batch_op.f("ix_events_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_events_created_at"))

    op.drop_table("events")
