"""How many open invoices each company has due on each day, kept by triggers (issue 14).

`arbridge remind --dry-run` and the reminders page account for every open invoice: how many
there are, and how many are not yet due for a step. Counted in the ledger, that is one pass over
the company's open invoices (index-only, but still 1M entries at 1M invoices: the part of the
dry run that grew with the ledger). `open_invoice_days` holds one row per company and due date
with the number of open invoices due that day, so both figures are sums over a few hundred rows.

An invoice is open exactly as `Invoice.is_open` says (`collections.aging.owing` of
`open_balance`): status "open", and an open balance above zero, which is the ledger's balance
when nothing is unposted, else the ledger's balance less the unposted money, capped at the total
when the total is positive (so above zero only when both are).

The counts are the database's own: triggers on `invoices` change them in the same transaction as
every insert, update and delete of an invoice, whichever code wrote it (the sync's upserts, the
ledger's catch-up, payments, refunds, reversals, deletions, a company's removal). On SQLite a
trigger per row (the update trigger only when an invoice's openness, due date or company
changes); on PostgreSQL one trigger per statement, which reads the statement's rows as
transition tables and changes each day's count once (a sync page of 1,000 invoices is one
upsert of its few distinct days, not 1,000). A day keeps its row at 0 once nothing is open on
it (no delete racing an insert on PostgreSQL; a company has at most a row per calendar day).

`ix_invoices_open_unposted` (0027), which served the counts these rows replace, goes.

Revision ID: 0032
Revises: 0031
"""

from alembic import op
import sqlalchemy as sa


revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def _open(row: str) -> str:
    """SQL: is the invoice `row` (NEW, OLD, a transition table) open (`Invoice.is_open`)?"""
    return (
        f"({row}.status = 'open' AND CASE WHEN {row}.unposted_minor = 0"
        f" THEN {row}.ledger_balance_minor > 0"
        f" ELSE {row}.ledger_balance_minor - {row}.unposted_minor > 0 AND {row}.total_minor > 0"
        " END)"
    )


ADD_ONE = (
    "INSERT INTO open_invoice_days (company_id, due_on, open_invoices)"
    " SELECT NEW.company_id, NEW.due_on, 1 WHERE {cond}"
    " ON CONFLICT (company_id, due_on) DO UPDATE SET open_invoices = open_invoices + 1;"
)
TAKE_ONE = (
    "UPDATE open_invoice_days SET open_invoices = open_invoices - 1"
    " WHERE company_id = OLD.company_id AND due_on = OLD.due_on AND {cond};"
)

SQLITE = [
    f"""CREATE TRIGGER open_invoice_days_insert AFTER INSERT ON invoices
    WHEN {_open("NEW")}
    BEGIN {ADD_ONE.format(cond="1")} END""",
    f"""CREATE TRIGGER open_invoice_days_update AFTER UPDATE OF
        company_id, due_on, status, ledger_balance_minor, unposted_minor, total_minor ON invoices
    WHEN {_open("OLD")} IS NOT {_open("NEW")} OR ({_open("NEW")}
        AND (OLD.company_id IS NOT NEW.company_id OR OLD.due_on IS NOT NEW.due_on))
    BEGIN {TAKE_ONE.format(cond=_open("OLD"))} {ADD_ONE.format(cond=_open("NEW"))} END""",
    f"""CREATE TRIGGER open_invoice_days_delete AFTER DELETE ON invoices
    WHEN {_open("OLD")}
    BEGIN {TAKE_ONE.format(cond="1")} END""",
]

# Each day's change, added in (company, day) order: two transactions adding to the same days
# lock their rows in the same order. A change to a day that has no row yet (only ever an
# addition) inserts it.
ADD_CHANGES = """
    INSERT INTO open_invoice_days AS d (company_id, due_on, open_invoices)
    SELECT company_id, due_on, sum(change) FROM ({changes}) AS c
    GROUP BY company_id, due_on HAVING sum(change) <> 0 ORDER BY company_id, due_on
    ON CONFLICT (company_id, due_on) DO UPDATE SET open_invoices = d.open_invoices + excluded.open_invoices;
"""


def _rows(table: str, change: int) -> str:
    # Every name and number here is this module's own, never input.
    return f"SELECT company_id, due_on, {change} AS change FROM {table} WHERE {_open(table)}"  # noqa: S608


def _pg_function(name: str, body: str) -> str:
    return (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN {body} RETURN NULL; END $$"
    )


POSTGRES = [
    _pg_function("open_invoice_days_insert", ADD_CHANGES.format(changes=_rows("added", 1))),
    _pg_function(
        "open_invoice_days_update",
        ADD_CHANGES.format(
            changes=f"{_rows('after_rows', 1)} UNION ALL {_rows('before_rows', -1)}"
        ),
    ),
    # Only ever takes away from existing rows: when a company is removed, its days may be
    # gone already (both cascade from it), and nothing must be inserted for it again.
    _pg_function(
        "open_invoice_days_delete",
        "UPDATE open_invoice_days AS d SET open_invoices = d.open_invoices - c.n"  # noqa: S608
        " FROM (SELECT company_id, due_on, count(*) AS n FROM removed"
        f" WHERE {_open('removed')} GROUP BY company_id, due_on) AS c"
        " WHERE d.company_id = c.company_id AND d.due_on = c.due_on;",
    ),
    """CREATE TRIGGER open_invoice_days_insert AFTER INSERT ON invoices
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION open_invoice_days_insert()""",
    """CREATE TRIGGER open_invoice_days_update AFTER UPDATE ON invoices
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION open_invoice_days_update()""",
    """CREATE TRIGGER open_invoice_days_delete AFTER DELETE ON invoices
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION open_invoice_days_delete()""",
]

TRIGGERS = ("open_invoice_days_insert", "open_invoice_days_update", "open_invoice_days_delete")


def upgrade() -> None:
    op.create_table(
        "open_invoice_days",
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("open_invoices", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name="fk_open_invoice_days_company_id_companies",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("company_id", "due_on", name="pk_open_invoice_days"),
    )
    op.execute(
        "INSERT INTO open_invoice_days (company_id, due_on, open_invoices)"  # noqa: S608
        f" SELECT company_id, due_on, count(*) FROM invoices WHERE {_open('invoices')}"
        " GROUP BY company_id, due_on"
    )
    for statement in POSTGRES if _pg() else SQLITE:
        op.execute(statement)
    # 0027 made it for the counts these rows replace; nothing else reads it, and every invoice
    # a sync writes paid for it (a tenth of a 100k-invoice sync's index work on SQLite).
    op.drop_index("ix_invoices_open_unposted", table_name="invoices")


def downgrade() -> None:
    op.create_index(
        "ix_invoices_open_unposted",
        "invoices",
        ["company_id", "status", "unposted_minor", "ledger_balance_minor"],
    )
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON invoices" if _pg() else f"DROP TRIGGER {name}")
        if _pg():
            op.execute(f"DROP FUNCTION {name}()")
    op.drop_table("open_invoice_days")


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"
