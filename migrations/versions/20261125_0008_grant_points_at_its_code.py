"""grant points at its code

The grant row names the code it was exchanged for (written with the grant), instead of
the code being updated afterwards to name its grant: one statement less per exchange.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 05:52:15.788645
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("oidc_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_id", BIG_ID, nullable=True))
        batch_op.create_index(batch_op.f("ix_oidc_grants_code_id"), ["code_id"], unique=False)
    op.execute("UPDATE oidc_grants SET code_id = (SELECT c.id FROM oidc_authorization_codes c "
               "WHERE c.grant_id = oidc_grants.id)")
    with op.batch_alter_table("oidc_authorization_codes", schema=None) as batch_op:
        batch_op.drop_column("grant_id")


def downgrade() -> None:
    with op.batch_alter_table("oidc_authorization_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grant_id", BIG_ID, nullable=True))
    op.execute("UPDATE oidc_authorization_codes SET grant_id = (SELECT g.id FROM oidc_grants g "
               "WHERE g.code_id = oidc_authorization_codes.id)")
    with op.batch_alter_table("oidc_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_grants_code_id"))
        batch_op.drop_column("code_id")
