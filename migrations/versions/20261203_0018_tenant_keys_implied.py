"""tenant_id references the tenant's row only where nothing else implies the tenant

PostgreSQL checks a foreign key by locking the row it points at (FOR KEY SHARE). Every
INSERT into a tenant-scoped table locked its tenant's one row, and the requests of one
tenant committing at once shared that lock through a multixact, written to the WAL and
to the tenants table: at 8 requests committing events at once, the events table's key
cost PostgreSQL 110–140 µs an event.

The tables below keep their composite keys ``(tenant_id, x_id) → x(tenant_id, id)``,
which are not null and imply the tenant (a token's grant is of its tenant), and lose the
key to ``tenants``. The outbox (``events``) loses it too: it is written by every state
change, and only through ``saas.events.services`` (``emit``, ``emit_to``), with the tenant
it was handed; tenants are never deleted.

On PostgreSQL, dropping a key to ``tenants`` locks ``tenants`` exclusively for the rest
of the migration's transaction (``env.py`` gives up after a few seconds of waiting for
it, rather than holding every request). The downgrade checks every row of these tables
again, and fails if an event names a tenant that is not there.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 19:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "checkins", "events", "id_link_history", "oidc_attribute_update_consents", "oidc_authorization_codes",
    "oidc_authorization_requests", "oidc_device_authorizations", "oidc_grants", "oidc_sign_transactions",
    "oidc_tokens", "power_access_codes", "power_agents", "power_fetches", "power_history", "webhook_deliveries",
    "webhook_delivery_attempts",
)


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_constraint(f"fk_{table}_tenant_id_tenants", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_foreign_key(f"fk_{table}_tenant_id_tenants", "tenants", ["tenant_id"], ["id"])
