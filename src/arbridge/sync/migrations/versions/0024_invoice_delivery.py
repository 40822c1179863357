"""Invoice delivery: whether the ledger sent each invoice to its customer, and when arbridge did.

`invoices.ledger_sent` is what the ledger says (QuickBooks EmailStatus, Xero SentToContact, the
demo ledger's sentToContact), rewritten by every sync; NULL where the ledger says nothing.
`invoices.sent_at` is arbridge's own record of sending it, which sync never touches, so an
invoice arbridge sent by its own email stays sent although the ledger never hears of it.

Revision ID: 0024
Revises: 0023
"""

from alembic import op
import sqlalchemy as sa

import arbridge.sync.model


revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("ledger_sent", sa.Boolean(), nullable=True))
        batch.add_column(
            sa.Column("sent_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("sent_at")
        batch.drop_column("ledger_sent")
