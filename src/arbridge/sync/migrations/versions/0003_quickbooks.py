"""QuickBooks connector: call slots shared by every worker, per realm.

Everything else QuickBooks needs fits the existing tables: the realm is connections.tenant_id;
the tokens and their expiry times are the JSON in connections.credentials_encrypted; "needs
reconnect" is a connection status; the owner's Intuit user id is users.identity_provider and
identity_subject (unique); the deposit account is companies.settings["quickbooks"]; CDC cursors
are sync_cursors rows.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import arbridge.sync.model

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quickbooks_realms",
        sa.Column("realm_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("realm_id", name=op.f("pk_quickbooks_realms")),
    )
    op.create_table(
        "quickbooks_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("realm_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_until", arbridge.sync.model.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quickbooks_calls")),
    )
    with op.batch_alter_table("quickbooks_calls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_quickbooks_calls_realm_started", ["realm_id", "started_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("quickbooks_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_quickbooks_calls_realm_started")
    op.drop_table("quickbooks_calls")
    op.drop_table("quickbooks_realms")
