"""The dashboard's "never sent" invoices from an index of their own.

At 1,000,000 invoices the dashboard's unsent list (readmodels.delivery) took 10 s on SQLite: no
index led to the unsent invoices, so SQLite walked every customer and each one's invoices, then
sorted. `ix_invoices_unsent` holds only the open invoices the ledger says were never sent and
arbridge has not sent (its WHERE is the query's own terms, which is what lets SQLite and
PostgreSQL use a partial index), with those terms leading so it is the closest match, then in
issue order: the list is its first rows, the count its length.

Revision ID: 0031
Revises: 0030
"""

from alembic import op
import sqlalchemy as sa


revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_invoices_unsent",
        "invoices",
        ["company_id", "status", "ledger_sent", "sent_at", "issued_on", "id"],
        sqlite_where=sa.text("status = 'open' AND ledger_sent IS 0 AND sent_at IS NULL"),
        postgresql_where=sa.text("status = 'open' AND ledger_sent IS false AND sent_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_invoices_unsent", table_name="invoices")
