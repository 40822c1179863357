"""What the insight sums, stored per invoice and allocation when the ledger is synced
(collections.settled, sync/settled_store.py), so the KPIs, the trends and the closings are
single passes over covering indexes instead of running sums over the whole history.

`invoices` gains `home_total_minor` (the total in home currency, rounded once; NULL when voided
or deleted), `closed_on`, `days_to_pay`, `days_late`, `closing_irregular`, and after all its
allocations `applied_minor`, `settled_days`, `last_settled_on` and `home_left_minor`;
`payment_allocations` gains `counted_on` (max(its date, the invoice's issue date); NULL when it
does not count), `home_minor` (what it took off the invoice's home-currency receivables) and
`due_on` (its invoice's). Every company's are worked out here, in batches.

Revision ID: 0029
Revises: 0028
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("home_total_minor", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("closed_on", sa.Date(), nullable=True))
        batch.add_column(sa.Column("days_to_pay", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("days_late", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("closing_irregular", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("applied_minor", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("settled_days", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("last_settled_on", sa.Date(), nullable=True))
        batch.add_column(sa.Column("home_left_minor", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("payment_allocations") as batch:
        batch.add_column(sa.Column("counted_on", sa.Date(), nullable=True))
        batch.add_column(
            sa.Column("home_minor", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("due_on", sa.Date(), nullable=True))

    from arbridge.sync.settled_store import refresh_company

    bind = op.get_bind()
    session = Session(bind=bind)
    for (company_id,) in bind.execute(sa.text("SELECT id FROM companies ORDER BY id")).all():
        refresh_company(session, company_id)
    session.flush()

    op.create_index(
        "ix_invoices_issued_home",
        "invoices",
        ["company_id", "issued_on", "due_on", "home_total_minor"],
        sqlite_where=sa.text("home_total_minor IS NOT NULL"),
        postgresql_where=sa.text("home_total_minor IS NOT NULL"),
    )
    op.create_index(
        "ix_invoices_closed",
        "invoices",
        ["company_id", "closed_on", "days_to_pay", "days_late"],
        sqlite_where=sa.text("closed_on IS NOT NULL"),
        postgresql_where=sa.text("closed_on IS NOT NULL"),
    )
    op.create_index(
        "ix_invoices_customer_closed",
        "invoices",
        ["company_id", "customer_id", "closed_on", "issued_on", "id", "days_late"],
        sqlite_where=sa.text("closed_on IS NOT NULL"),
        postgresql_where=sa.text("closed_on IS NOT NULL"),
    )
    op.create_index(
        "ix_invoices_closing_irregular", "invoices", ["company_id", "closing_irregular"]
    )
    op.create_index(
        "ix_invoices_owing",
        "invoices",
        [
            "company_id",
            "customer_id",
            "due_on",
            "issued_on",
            "last_settled_on",
            "home_left_minor",
        ],
        sqlite_where=sa.text("home_left_minor <> 0"),
        postgresql_where=sa.text("home_left_minor <> 0"),
    )
    op.create_index(
        "ix_invoices_last_settled",
        "invoices",
        ["company_id", "last_settled_on"],
        sqlite_where=sa.text("last_settled_on IS NOT NULL"),
        postgresql_where=sa.text("last_settled_on IS NOT NULL"),
    )
    op.create_index(
        "ix_invoices_customer_issued",
        "invoices",
        [
            "company_id",
            "customer_id",
            "issued_on",
            "id",
            "total_minor",
            "home_total_minor",
            "applied_minor",
            "settled_days",
            "last_settled_on",
        ],
        sqlite_where=sa.text("home_total_minor IS NOT NULL"),
        postgresql_where=sa.text("home_total_minor IS NOT NULL"),
    )
    op.create_index(
        "ix_payment_allocations_counted",
        "payment_allocations",
        ["company_id", "counted_on", "due_on", "home_minor"],
    )
    # The planner's statistics for the new indexes (a large sync runs it too: sync.runner).
    op.execute("ANALYZE invoices")
    op.execute("ANALYZE payment_allocations")


def downgrade() -> None:
    op.drop_index("ix_payment_allocations_counted", table_name="payment_allocations")
    op.drop_index("ix_invoices_customer_issued", table_name="invoices")
    op.drop_index("ix_invoices_last_settled", table_name="invoices")
    op.drop_index("ix_invoices_owing", table_name="invoices")
    op.drop_index("ix_invoices_closing_irregular", table_name="invoices")
    op.drop_index("ix_invoices_customer_closed", table_name="invoices")
    op.drop_index("ix_invoices_closed", table_name="invoices")
    op.drop_index("ix_invoices_issued_home", table_name="invoices")
    with op.batch_alter_table("payment_allocations") as batch:
        batch.drop_column("due_on")
        batch.drop_column("home_minor")
        batch.drop_column("counted_on")
    with op.batch_alter_table("invoices") as batch:
        for name in (
            "home_left_minor",
            "last_settled_on",
            "settled_days",
            "applied_minor",
            "closing_irregular",
            "days_late",
            "days_to_pay",
            "closed_on",
        ):
            batch.drop_column(name)
        batch.drop_column("home_total_minor")
