"""Per-connection Stripe webhook signing secrets, and replayed deliveries stored once.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

import arbridge.sync.model

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_secret_encrypted", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("webhook_endpoint_id", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column(
                "webhook_last_event_at",
                arbridge.sync.model.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("repeats", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column(
                "last_received_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_webhook_deliveries_provider_body_sha256"), ["provider", "body_sha256"]
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_webhook_deliveries_provider_body_sha256"), type_="unique"
        )
        batch_op.drop_column("last_received_at")
        batch_op.drop_column("repeats")
        batch_op.drop_column("body_sha256")
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_column("webhook_last_event_at")
        batch_op.drop_column("webhook_endpoint_id")
        batch_op.drop_column("webhook_secret_encrypted")
