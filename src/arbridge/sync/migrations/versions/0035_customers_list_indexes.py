"""The customers list's sorts read indexes, not every invoice and allocation (issue 14).

Sorted by balance (or overdue), the list summed every invoice of the company through
ix_invoices_customer_id (8.3 s at 1M invoices on SQLite); by days to pay, on time or lateness,
it took the maximum date of every allocation per invoice (about 5 s); by last payment, it
grouped every payment. Now: `ix_invoices_customer_open` (the open invoices, partial, with what
the home-currency balance reads) is walked in customer order and grouped without a sort;
`ix_invoices_customer_paid` (the paid invoices, partial) gives the closing day stored at sync
(`last_settled_on`, the last allocation's date, migration 0029) with the due and issue dates;
`ix_payments_customer_received` gives each customer's latest payment in one step back. The
partial indexes' WHERE is the queries' own literal term, so SQLite and PostgreSQL take them.

On PostgreSQL `ix_invoices_owing` (0029) also INCLUDEs the invoice's id, which the forecast
week's invoices list reads beside what the forecast reads: without it PostgreSQL visited the
heap for every invoice owing something (31k blocks at 1M invoices). SQLite's index holds the
rowid already and is left as it is.

Revision ID: 0035
Revises: 0034
"""

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


_OWING = ["company_id", "customer_id", "due_on", "issued_on", "last_settled_on", "home_left_minor"]


def _owing(include: list[str]) -> None:
    op.drop_index("ix_invoices_owing", table_name="invoices")
    op.create_index(
        "ix_invoices_owing",
        "invoices",
        _OWING,
        postgresql_where=sa.text("home_left_minor <> 0"),
        postgresql_include=include,
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _owing(["id"])
    op.create_index(
        "ix_invoices_customer_open",
        "invoices",
        [
            "company_id",
            "customer_id",
            "due_on",
            "currency",
            "exchange_rate",
            "ledger_balance_minor",
            "unposted_minor",
            "total_minor",
            "status",
        ],
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(
        "ix_invoices_customer_paid",
        "invoices",
        ["company_id", "customer_id", "last_settled_on", "due_on", "issued_on", "status"],
        sqlite_where=sa.text("status = 'paid'"),
        postgresql_where=sa.text("status = 'paid'"),
    )
    op.create_index(
        "ix_payments_customer_received",
        "payments",
        ["company_id", "customer_id", "received_on", "status"],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _owing([])
    op.drop_index("ix_payments_customer_received", table_name="payments")
    op.drop_index("ix_invoices_customer_paid", table_name="invoices")
    op.drop_index("ix_invoices_customer_open", table_name="invoices")
