"""Each invoice keeps the highest reminder step claimed for it (issue 14).

The daily run and the dry run leave out an invoice once a step at or after the one in force for
its due date has been claimed. Asked of `reminder_sends` that is one probe per overdue open
invoice (half a million at 1M invoices: most of a 2.7 s dry run, growing with the ledger). Kept
on the invoice, next to its status and due date, one index answers it: for each step index r,
the invoices whose highest claimed step is r and whose due date puts a later step in force are
one range of `ix_invoices_open_reminded` (company, status, highest step, due date).

The dry run also counts the open invoices, and those not yet due. An invoice with status "open"
owes nothing only when arbridge collected money the ledger does not show yet or the ledger's
balance is not positive: `ix_invoices_open_unposted` makes those few three small ranges, so the
counts are index-only counts of `ix_invoices_open_due` less those few, not an evaluation of the
open balance on every row (at 1M invoices on SQLite: 46 ms against 130 ms).

`-1`: no step claimed yet. Written in the same transaction as the claims (services/reminders/
run.py); claims are never deleted, so it only grows.

Revision ID: 0027
Revises: 0026
"""

from alembic import op
import sqlalchemy as sa


revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(
            sa.Column("highest_step_claimed", sa.Integer(), nullable=False, server_default="-1")
        )
    op.execute(
        "UPDATE invoices SET highest_step_claimed = ("
        "SELECT MAX(r.step_index) FROM reminder_sends r WHERE r.invoice_id = invoices.id) "
        "WHERE id IN (SELECT invoice_id FROM reminder_sends)"
    )
    op.create_index(
        "ix_invoices_open_reminded",
        "invoices",
        ["company_id", "status", "highest_step_claimed", "due_on"],
    )
    op.create_index(
        "ix_invoices_open_unposted",
        "invoices",
        ["company_id", "status", "unposted_minor", "ledger_balance_minor"],
    )


def downgrade() -> None:
    op.drop_index("ix_invoices_open_unposted", table_name="invoices")
    op.drop_index("ix_invoices_open_reminded", table_name="invoices")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("highest_step_claimed")
