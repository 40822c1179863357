"""Reminders and statement links (issue 8): "maybe sent" outbox rows, statement link expiry.

Revision ID: 0010
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD = ("pending", "sending", "sent", "failed", "dead")
NEW = (*OLD, "maybe_sent")


def _status(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(
        *values, name="outbox_status", native_enum=False, create_constraint=True, length=20
    )


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column(
            "status", existing_type=_status(OLD), type_=_status(NEW), existing_nullable=False
        )


def downgrade() -> None:
    op.execute("UPDATE outbox SET status = 'failed' WHERE status = 'maybe_sent'")
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column(
            "status", existing_type=_status(NEW), type_=_status(OLD), existing_nullable=False
        )
