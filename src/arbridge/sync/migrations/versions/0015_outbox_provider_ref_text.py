"""The outbox's `provider_ref` as text: a Xero payment write-back records one Xero payment id per
invoice it settles (a Xero payment settles one document), comma-joined for the reversal to
delete them all. 200 characters held five ids; a payment may settle many more invoices.

Going back truncates nothing silently: a row longer than 200 characters stops the downgrade.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column(
            "provider_ref",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=True,
        )


def downgrade() -> None:
    longest = op.get_bind().scalar(sa.text("SELECT MAX(LENGTH(provider_ref)) FROM outbox"))
    if longest is not None and longest > 200:
        raise RuntimeError(
            "an outbox row's provider_ref is longer than 200 characters (a Xero payment that "
            "settled more than five invoices): it would not fit the column of revision 0014"
        )
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column(
            "provider_ref",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
