"""events: no index on created_at; the purge finds old events by their public id

Every event wrote an entry into an index on ``created_at`` when it was emitted, and
another when the relay marked it dispatched (an update that changes an indexed column's
row is not a heap-only one), for the purge alone. The public id begins with its time
(a ULID), so the purge now reads a range of that id's unique index. On PostgreSQL the id
is compared in byte order (collation "C"), the order of its time: some locales'
collations sort its letters otherwise.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_events_created_at", table_name="events")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("events", "public_id", type_=sa.String(40, collation="C"), existing_type=sa.String(40),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("events", "public_id", type_=sa.String(40), existing_type=sa.String(40, collation="C"),
                        existing_nullable=False)
    op.create_index("ix_events_created_at", "events", ["created_at"])
