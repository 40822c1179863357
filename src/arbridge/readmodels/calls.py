"""The owner's live call list: each call still to make with the customer's best contact (name,
phone) and the task's invoices that still need a call, their balances as of now. An invoice
drops out the moment it is paid (or a payment is on its way), disputed, or promised for a date
not yet past; a call whose invoices have all dropped out is off the list, and off the
navigation's count. A fixed number of queries, however long the list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.money import Money
from arbridge.services.reminders.calls import live_task, needs_a_call
from arbridge.sync.db import among
from arbridge.sync.model import CallTask, Contact, Customer, Invoice


@dataclass(frozen=True)
class Call:
    task: CallTask
    customer: Customer
    contact: Contact | None  # the one to ring: one with a phone first, the primary first
    invoices: list[Invoice]  # those still needing the call, oldest due first

    @property
    def balances(self) -> list[Money]:
        """What the call is about, one total per currency."""
        totals: dict[str, int] = {}
        for inv in self.invoices:
            totals[inv.currency] = totals.get(inv.currency, 0) + inv.open_balance_minor
        return [Money.from_minor(v, c) for c, v in sorted(totals.items())]


def live_calls(s: Session, company_id: int, today: date) -> list[Call]:
    rows = s.execute(
        select(CallTask, Customer)
        .join(Customer, Customer.id == CallTask.customer_id)
        .where(live_task(s, company_id, today))
        .order_by(CallTask.created_at, CallTask.id)
    ).all()
    if not rows:
        return []
    wanted = {i for task, _ in rows for i in task.invoice_ids}
    invoices = {
        inv.id: inv
        for inv in s.scalars(
            select(Invoice).where(
                Invoice.company_id == company_id,
                among(s, Invoice.id, sorted(wanted)),
                needs_a_call(today),
            )
        )
    }
    customer_ids = sorted({c.id for _, c in rows})
    contacts: dict[int, Contact] = {}
    for contact in s.scalars(
        select(Contact).where(
            Contact.company_id == company_id, among(s, Contact.customer_id, customer_ids)
        )
    ):
        best = contacts.get(contact.customer_id)
        if best is None or _rank(contact) < _rank(best):
            contacts[contact.customer_id] = contact
    return [
        Call(
            task,
            customer,
            contacts.get(customer.id),
            sorted(
                (invoices[i] for i in set(task.invoice_ids) if i in invoices),
                key=lambda inv: (inv.due_on, inv.id),
            ),
        )
        for task, customer in rows
    ]


def _rank(c: Contact) -> tuple[bool, bool, int]:
    return (not c.phone, not c.is_primary, c.id)
