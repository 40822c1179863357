"""Roles for the people of a company: owner, collector, viewer.

`users.role` and `invitations.role`, NOT NULL. Every existing row becomes "owner": teammates
invited before roles existed could do everything, and keep that until the owner changes it.

Revision ID: 0021
Revises: 0020
"""

from alembic import op
import sqlalchemy as sa


revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("role", sa.String(20), nullable=False, server_default="owner"))
    with op.batch_alter_table("invitations") as batch:
        batch.add_column(sa.Column("role", sa.String(20), nullable=False, server_default="owner"))


def downgrade() -> None:
    with op.batch_alter_table("invitations") as batch:
        batch.drop_column("role")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("role")
