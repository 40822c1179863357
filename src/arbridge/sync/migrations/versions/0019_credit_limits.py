"""Credit limits: each customer's limit (home-currency minor units; empty: the company's default)
and the day the owner last approved or declined a higher one.

Revision ID: 0019
Revises: 0018
"""

from alembic import op
import sqlalchemy as sa


revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("credit_limit_minor", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("limit_reviewed_on", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("limit_reviewed_on")
        batch.drop_column("credit_limit_minor")
