"""`ix_invoices_closing_irregular` holds only the invoices whose closing is irregular (issue 14).

Migration 0029 indexed (company_id, closing_irregular) for every invoice, so every invoice a sync
writes (and writes again when a payment settles it) paid for an entry, when the queries that read
it (`settled_store.irregular`, `store.irregular_closings`, `insight_store._closings_one_by_one`)
only ask for the few invoices with `closing_irregular IS true`. The partial index's WHERE is
those queries' own term as SQLAlchemy renders it (`IS 1` on SQLite, `IS true` on PostgreSQL),
which is what lets both take it: EXPLAIN on a synced 100k-invoice ledger, SQLite "SEARCH
invoices USING COVERING INDEX ix_invoices_closing_irregular (company_id=? AND
closing_irregular=?)", as before.

Revision ID: 0034
Revises: 0033
"""

import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_invoices_closing_irregular", table_name="invoices")
    op.create_index(
        "ix_invoices_closing_irregular",
        "invoices",
        ["company_id", "closing_irregular"],
        sqlite_where=sa.text("closing_irregular IS 1"),
        postgresql_where=sa.text("closing_irregular IS true"),
    )


def downgrade() -> None:
    op.drop_index("ix_invoices_closing_irregular", table_name="invoices")
    op.create_index(
        "ix_invoices_closing_irregular", "invoices", ["company_id", "closing_irregular"]
    )
