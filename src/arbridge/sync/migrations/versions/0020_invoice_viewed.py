"""Receipt confirmed: when the customer first opened a page showing each invoice.

One nullable column, not a table of views: only the first view matters (shown to the owner and
in the `viewed_on` merge field), and `UPDATE ... WHERE viewed_at IS NULL` keeps it first under
concurrent opens without a lock or a unique key.

Revision ID: 0020
Revises: 0019
"""

from alembic import op
import sqlalchemy as sa

import arbridge.sync.model


revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(
            sa.Column("viewed_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("viewed_at")
