"""The invoices list's currency filter reads an index of its own (issue 14).

Every view of the invoices list asks which currencies the company's invoices are in. Grouped
over the company's invoices, that read every one of them (0.25 s a view at 1M invoices on
SQLite, a quarter of a forecast week's list). `ix_invoices_currency` on (company, currency)
lets the query step from one currency to the next (`readmodels.invoices.currencies`): a few
index seeks, whatever the number of invoices (under 1 ms at 1M). It costs a first sync about
4% more CPU on SQLite (100k invoices, three runs each, in turn with the code before: 18.6 s
against 19.3 s): a sync's inserts land at the end of each currency's run of the index.

No other query may take it. It is partial on a term every invoice meets (`currency IS NOT
NULL`, which only a query that names it or compares the currency implies). And on a SQLite
database whose invoices have planner statistics (a large sync ANALYZEs them), the new index
gets its own at once: SQLite takes an index without statistics for a narrow one, and the
dashboard's `SUM` floor at 1M invoices went from the covering `ix_invoices_open_due` to
reading every row through this index, 3x slower, until it did.

Revision ID: 0036
Revises: 0035
"""

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_invoices_currency",
        "invoices",
        ["company_id", "currency"],
        sqlite_where=sa.text("currency IS NOT NULL"),
        postgresql_where=sa.text("currency IS NOT NULL"),
    )
    if _invoices_analyzed():
        op.execute("ANALYZE ix_invoices_currency")


def _invoices_analyzed() -> bool:
    """SQLite, with planner statistics for the invoices (PostgreSQL's are per column)."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return False
    if not bind.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
        return False
    return (
        bind.exec_driver_sql("SELECT 1 FROM sqlite_stat1 WHERE tbl = 'invoices'").first()
        is not None
    )


def downgrade() -> None:
    op.drop_index("ix_invoices_currency", table_name="invoices")
