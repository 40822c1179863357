"""A contact's email and phone as the owner sets them, kept apart from the ledger's.

`contacts.email` and `contacts.phone` stay what arbridge uses (every reader keeps reading them).
`ledger_email` / `ledger_phone` are what the ledger last said, written by every sync;
`owner_email` / `owner_phone` the owner's own values (NULL: follow the ledger; '': the owner
removed it), which no sync writes, so a sync puts them back over the ledger's. And the way the
contact prefers to be reached: `preferred_channel` (email, sms or phone; NULL: email).
Existing rows: the ledger's values are taken to be the current ones.

Revision ID: 0023
Revises: 0022
"""

from alembic import op
import sqlalchemy as sa


revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("ledger_email", sa.String(254), nullable=True))
        batch.add_column(sa.Column("ledger_phone", sa.String(40), nullable=True))
        batch.add_column(sa.Column("owner_email", sa.String(254), nullable=True))
        batch.add_column(sa.Column("owner_phone", sa.String(40), nullable=True))
        batch.add_column(sa.Column("preferred_channel", sa.String(10), nullable=True))
    op.execute("UPDATE contacts SET ledger_email = email, ledger_phone = phone")


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("preferred_channel")
        batch.drop_column("owner_phone")
        batch.drop_column("owner_email")
        batch.drop_column("ledger_phone")
        batch.drop_column("ledger_email")
