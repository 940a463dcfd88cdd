"""relying parties' webhook endpoints: an endpoint registered with a relying party's API key

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 16:53:40.124571
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("relying_party_key_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                      nullable=True))
        batch_op.create_index("ux_webhook_endpoints_relying_party_key", ["relying_party_key_id"], unique=True)
        batch_op.create_foreign_key(batch_op.f("fk_webhook_endpoints_tenant_id_relying_party_key_id_api_keys"),
                                    "api_keys", ["tenant_id", "relying_party_key_id"], ["tenant_id", "id"],
                                    ondelete="CASCADE")


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_webhook_endpoints_tenant_id_relying_party_key_id_api_keys"),
                                 type_="foreignkey")
        batch_op.drop_index("ux_webhook_endpoints_relying_party_key")
        batch_op.drop_column("relying_party_key_id")
