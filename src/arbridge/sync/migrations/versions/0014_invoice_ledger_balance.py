"""An invoice's balance as two figures: the ledger's balance at our last reading, and what
arbridge collected that the reading does not show yet. `balance_minor` blended the two.

Every existing balance becomes the ledger's figure with nothing unposted, so the open balance
of every invoice is what it was; the next sync states both figures exactly. Going back, the
open balance becomes the one balance again.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# The open balance as the model computes it (Invoice.open_balance_minor), for the way back.
OPEN_BALANCE = """CASE
    WHEN unposted_minor = 0 THEN ledger_balance_minor
    WHEN ledger_balance_minor - unposted_minor <= 0 THEN 0
    WHEN ledger_balance_minor - unposted_minor > CASE WHEN total_minor > 0 THEN total_minor ELSE 0 END
        THEN CASE WHEN total_minor > 0 THEN total_minor ELSE 0 END
    ELSE ledger_balance_minor - unposted_minor
END"""


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("ledger_balance_minor", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("unposted_minor", sa.BigInteger(), server_default="0", nullable=False)
        )
    op.execute("UPDATE invoices SET ledger_balance_minor = balance_minor, unposted_minor = 0")
    with op.batch_alter_table("invoices") as batch:
        batch.alter_column("ledger_balance_minor", existing_type=sa.BigInteger(), nullable=False)
        batch.drop_column("balance_minor")


def downgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("balance_minor", sa.BigInteger(), nullable=True))
    op.execute(f"UPDATE invoices SET balance_minor = {OPEN_BALANCE}")  # noqa: S608 (constant)
    with op.batch_alter_table("invoices") as batch:
        batch.alter_column("balance_minor", existing_type=sa.BigInteger(), nullable=False)
        batch.drop_column("unposted_minor")
        batch.drop_column("ledger_balance_minor")
