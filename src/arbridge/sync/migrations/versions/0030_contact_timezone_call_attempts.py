"""A contact's own timezone, and the attempts on a call task.

`contacts.timezone` (IANA name; NULL: the customer's, then the business's) sets the hours a
reminder to that contact may arrive. `call_tasks.attempts` counts the calls logged on a task and
`call_tasks.voicemail_at` holds the last voicemail left: a voicemail keeps the task on the list
(try again), where reached, promised or disputed close it.

Revision ID: 0030
Revises: 0029
"""

from alembic import op
import sqlalchemy as sa

import arbridge.sync.model


revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=True))
    with op.batch_alter_table("call_tasks") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("voicemail_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("call_tasks") as batch:
        batch.drop_column("voicemail_at")
        batch.drop_column("attempts")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("timezone")
