"""What Stripe last said about each company's account, so the settings page reads it from the
database instead of calling Stripe while it renders.

Revision ID: 0013
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

import arbridge.sync.model

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stripe_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=True),
        sa.Column("card", sa.Boolean(), nullable=False),
        sa.Column("ach", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("checked_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_stripe_checks_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_checks")),
        sa.UniqueConstraint("company_id", name=op.f("uq_stripe_checks_company_id")),
    )


def downgrade() -> None:
    op.drop_table("stripe_checks")
