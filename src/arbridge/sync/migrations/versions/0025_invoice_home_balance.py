"""Each invoice's open balance in the company's home currency, stored when it is synced, so the
aging is one `SUM ... GROUP BY` bucket in SQL instead of converting every foreign-currency open
invoice one by one.

`home_balance_minor` is the open balance converted at the invoice's own rate and rounded once
(as `Money.convert`, exactly as the report defines it); `home_basis_minor` is the open balance
(invoice currency) it was converted from. A reader uses the stored figure only where the basis
still equals the open balance; any other row (written by a path that does not store it, or
before this revision) is converted one by one, as before: never a wrong figure, at worst a
slower one. Existing foreign-currency invoices are converted here, in batches.

Two small tables keep the insight (KPIs, forecast, flags, trends) computed once per change of
the data behind it: `insight_versions` counts the changes per company, `insight_snapshots`
holds the latest insight with the version it was computed from (see sync/insight_cache.py).

`ix_invoices_open_due` grows to cover the dashboard's queries (aging by bucket, the open
invoices list in due order): see the model's comment for the plans checked.
`ix_invoices_customer_id` adds the issue date (and id): each customer's latest invoice is one
step down it.

Revision ID: 0025
Revises: 0024
"""

from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from arbridge.money import Money

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

BATCH = 5000
COVERING = (
    "company_id",
    "status",
    "due_on",
    "currency",
    "ledger_balance_minor",
    "unposted_minor",
    "total_minor",
    "home_balance_minor",
    "home_basis_minor",
)


def _open(ledger: int, unposted: int, total: int) -> int:
    # The open balance as the model computes it (collections.aging.open_balance).
    if unposted == 0:
        return ledger
    return min(max(0, ledger - unposted), max(total, 0))


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("home_balance_minor", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("home_basis_minor", sa.BigInteger(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT i.id, i.currency, i.exchange_rate, i.ledger_balance_minor, i.unposted_minor,"
            " i.total_minor, c.home_currency FROM invoices i JOIN companies c"
            " ON c.id = i.company_id WHERE i.currency <> c.home_currency AND i.status = 'open'"
        )
    ).all()
    changes = []
    for invoice_id, currency, rate, ledger, unposted, total, home in rows:
        basis = _open(int(ledger), int(unposted), int(total))
        home_minor = Money.from_minor(basis, currency).convert(Decimal(str(rate)), home).minor
        changes.append({"i": invoice_id, "h": home_minor, "b": basis})
    update = sa.text(
        "UPDATE invoices SET home_balance_minor = :h, home_basis_minor = :b WHERE id = :i"
    )
    for k in range(0, len(changes), BATCH):
        bind.execute(update, changes[k : k + BATCH])
    op.drop_index("ix_invoices_open_due", table_name="invoices")
    op.create_index("ix_invoices_open_due", "invoices", list(COVERING))
    op.drop_index("ix_invoices_customer_id", table_name="invoices")
    op.create_index("ix_invoices_customer_id", "invoices", ["customer_id", "issued_on", "id"])
    op.create_table(
        "insight_versions",
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_insight_versions_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("company_id", name=op.f("pk_insight_versions")),
    )
    op.create_table(
        "insight_snapshots",
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_insight_snapshots_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("company_id", "kind", name=op.f("pk_insight_snapshots")),
    )


def downgrade() -> None:
    op.drop_table("insight_snapshots")
    op.drop_table("insight_versions")
    op.drop_index("ix_invoices_customer_id", table_name="invoices")
    op.create_index("ix_invoices_customer_id", "invoices", ["customer_id"])
    op.drop_index("ix_invoices_open_due", table_name="invoices")
    op.create_index("ix_invoices_open_due", "invoices", ["company_id", "status", "due_on"])
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("home_basis_minor")
        batch.drop_column("home_balance_minor")
