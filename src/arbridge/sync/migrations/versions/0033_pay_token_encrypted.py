"""The payment link the owner creates on the invoice page, kept to be shown again.

`pay_tokens.token_encrypted` holds that link's token, encrypted with the instance's keys (as the
other stored secrets are; `arbridge rotate-keys` re-encrypts it). NULL for every other link
(reminders, statements, plans: only their SHA-256 is kept) and once a link is revoked.

Revision ID: 0033
Revises: 0032
"""

from alembic import op
import sqlalchemy as sa


revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pay_tokens") as batch:
        batch.add_column(sa.Column("token_encrypted", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pay_tokens") as batch:
        batch.drop_column("token_encrypted")
