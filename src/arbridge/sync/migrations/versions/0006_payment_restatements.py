"""Payments after the money arrived: the live ledger write, disputes, refund attempts.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


BACKFILL = (
    """
    UPDATE collected_payments SET ledger_key = (
        SELECT o.key FROM outbox o
        WHERE o.key = 'ledger_payment:' || collected_payments.payment_intent_id
           OR substr(o.key, 1, length('ledger_reversal:' || collected_payments.payment_intent_id) + 1)
              = 'ledger_reversal:' || collected_payments.payment_intent_id || ':'
        ORDER BY o.id DESC LIMIT 1
    )
    """,
    """
    UPDATE collected_payments SET refund_key = (
        SELECT o.key FROM outbox o
        WHERE o.key = 'stripe_refund:' || collected_payments.payment_intent_id || ':' || 'overpayment'
    )
    """,
)


def upgrade() -> None:
    with op.batch_alter_table("collected_payments") as batch_op:
        batch_op.add_column(sa.Column("ledger_key", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("dispute_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("dispute_status", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("refund_key", sa.String(length=128), nullable=True))
    # Payments already written back: their latest ledger write is the newest of their write-back
    # and the reversals queued for them (keys start with the PaymentIntent's id); their refund
    # request is the one overpayment refund the owner could ask for before.
    for statement in BACKFILL:
        op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("collected_payments") as batch_op:
        batch_op.drop_column("refund_key")
        batch_op.drop_column("dispute_status")
        batch_op.drop_column("dispute_id")
        batch_op.drop_column("ledger_key")
