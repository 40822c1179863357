"""Reminders and statement links: "maybe sent" outbox rows, statement link expiry,
replies remembered with the link they came through (limited per link and per customer).

Revision ID: 0010
Revises: 0009
"""

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

import arbridge.sync.model

revision = "0010"
down_revision = "0009"
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
    with op.batch_alter_table("pay_tokens") as batch:
        batch.add_column(
            sa.Column("expires_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("invoice_holds") as batch:
        batch.add_column(sa.Column("pay_token_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_invoice_holds_pay_token_id_pay_tokens"),
            "pay_tokens",
            ["pay_token_id"],
            ["id"],
            ondelete="SET NULL",
        )
    # Statement links made before links expired: 60 days from when they were made.
    tokens = sa.table(
        "pay_tokens",
        sa.column("id", sa.Integer),
        sa.column("invoice_id", sa.Integer),
        sa.column("created_at", arbridge.sync.model.UTCDateTime(timezone=True)),
        sa.column("expires_at", arbridge.sync.model.UTCDateTime(timezone=True)),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(tokens.c.id, tokens.c.created_at).where(tokens.c.invoice_id.is_(None))
    ).all()
    for row_id, created_at in rows:
        bind.execute(
            tokens.update()
            .where(tokens.c.id == row_id)
            .values(expires_at=created_at + timedelta(days=60))
        )


def downgrade() -> None:
    with op.batch_alter_table("invoice_holds") as batch:
        batch.drop_constraint(op.f("fk_invoice_holds_pay_token_id_pay_tokens"), type_="foreignkey")
        batch.drop_column("pay_token_id")
    with op.batch_alter_table("pay_tokens") as batch:
        batch.drop_column("expires_at")
    op.execute("UPDATE outbox SET status = 'failed' WHERE status = 'maybe_sent'")
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column(
            "status", existing_type=_status(NEW), type_=_status(OLD), existing_nullable=False
        )
