"""drop indexes nothing needs: the lone tenant_id ones, and events' type

Every tenant-scoped table had an index on tenant_id beside its unique (tenant_id, id),
whose leading column serves the same lookups. Worse than redundant: before a table had
statistics, PostgreSQL planned the composite foreign keys' checks, ``(tenant_id, x_id) →
x(tenant_id, id)``, on the lone index, and kept that plan for the connection's life: each
check then walked all of the tenant's rows (a webhook delivery's attempt row cost 190 µs
of the database's CPU instead of 20, growing with the table).

Nothing looks events up by type (the relay reads new events by id, the console by
endpoint and delivery): the index only cost every emitted event an entry.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 07:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "api_keys", "api_requests", "audit_entries", "checkin_devices", "checkins", "events", "id_link_history",
    "id_link_policies", "id_links", "invitations", "link_imports", "link_invitations", "live_mode_requests",
    "memberships", "oidc_attribute_update_consents", "oidc_authorization_codes", "oidc_authorization_requests",
    "oidc_clients", "oidc_device_authorizations", "oidc_grants", "oidc_login_stats", "oidc_sessions",
    "oidc_sign_transactions", "oidc_signing_keys", "oidc_subjects", "oidc_tokens", "power_access_codes",
    "power_agents", "power_fetches", "power_history", "powers_of_attorney", "webhook_deliveries",
    "webhook_delivery_attempts", "webhook_endpoints",
)


def upgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_tenant_id", table_name=table)
    op.drop_index("ix_events_type", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_type", "events", ["type"])
    for table in TABLES:
        op.create_index(f"ix_{table}_tenant_id", table, ["tenant_id"])
