"""link invitations: a transfer code is void once its link changed hands

A transfer code named only its link, so a ticket listed twice could be taken back from
its buyer with the other listing's code, and an offer outlived an unlink and a new link
of the same local id. A code now records the holder who offered it (a code of an earlier
holder is refused) and is voided when its link is transferred, unlinked or linked again;
an index on a link's transfer codes serves the voiding. Open codes offered before this
revision get the holder the link's history names at the moment they were made.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import saas.sqltypes

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("link_invitations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder_sub", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("voided_at", saas.sqltypes.UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_link_invitations_transfers", "link_invitations", ["link_id"],
                    postgresql_where=sa.text("transfer"), sqlite_where=sa.text("transfer = 1"))

    invitations = sa.table("link_invitations", sa.column("tenant_id"), sa.column("link_id"), sa.column("created_at"),
                           sa.column("used_at"), sa.column("transfer", sa.Boolean()), sa.column("holder_sub"))
    history = sa.table("id_link_history", sa.column("id"), sa.column("tenant_id"), sa.column("link_id"),
                       sa.column("at"), sa.column("sub"))
    holder = (sa.select(history.c.sub)
              .where(history.c.tenant_id == invitations.c.tenant_id, history.c.link_id == invitations.c.link_id,
                     history.c.at <= invitations.c.created_at)
              .order_by(history.c.id.desc()).limit(1).scalar_subquery())
    op.execute(invitations.update().where(invitations.c.transfer, invitations.c.used_at.is_(None))
               .values(holder_sub=holder))


def downgrade() -> None:
    op.drop_index("ix_link_invitations_transfers", table_name="link_invitations")
    with op.batch_alter_table("link_invitations", schema=None) as batch_op:
        batch_op.drop_column("voided_at")
        batch_op.drop_column("holder_sub")
