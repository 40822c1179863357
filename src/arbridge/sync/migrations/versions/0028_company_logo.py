"""The business's logo, as the owner uploads it on the settings page, for its PDF documents.

`companies.logo` holds the PNG or JPEG bytes (at most 512 KB, checked by the settings page);
NULL: none, and documents carry the business's name alone.

Revision ID: 0028
Revises: 0027
"""

from alembic import op
import sqlalchemy as sa


revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("companies") as batch:
        batch.add_column(sa.Column("logo", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("companies") as batch:
        batch.drop_column("logo")
