"""webhook secret optional for shared signals streams

A Shared Signals stream signs its tokens with the tenant's key; the HMAC secret every
stream was given (and never used) goes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 08:55:45.784191
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column("sealed_secret", existing_type=sa.LargeBinary(), nullable=True)
    op.execute("UPDATE webhook_endpoints SET sealed_secret = NULL, previous_sealed_secret = NULL, "
               "previous_secret_expires_at = NULL WHERE format = 'set'")


def downgrade() -> None:
    op.execute("UPDATE webhook_endpoints SET sealed_secret = '' WHERE sealed_secret IS NULL")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column("sealed_secret", existing_type=sa.LargeBinary(), nullable=False)
