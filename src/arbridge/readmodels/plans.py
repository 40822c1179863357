"""Installment plans for the owner's pages and the command line: every plan of a company with its
customer, invoices and installments, in a fixed number of queries whatever the count."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from arbridge.money import Money
from arbridge.sync.model import Customer, Invoice, Plan, PlanInstallment, PlanInvoice

STATUS_ORDER = ("current", "paused", "offered", "defaulted", "completed", "cancelled")


@dataclass(frozen=True)
class PlanRow:
    plan: Plan
    customer: Customer
    invoices: list[Invoice]

    @property
    def total(self) -> Money:
        return Money.from_minor(self.plan.balance_minor + self.plan.fee_minor, self.plan.currency)

    @property
    def paid(self) -> Money:
        return Money.from_minor(
            sum(i.amount_minor for i in self.plan.installments if i.status == "paid"),
            self.plan.currency,
        )

    @property
    def next_installment(self) -> PlanInstallment | None:
        waiting = [
            i for i in self.plan.installments if i.status in ("scheduled", "failed", "processing")
        ]
        return min(waiting, key=lambda i: (i.due_on, i.number), default=None)

    @property
    def numbers(self) -> str:
        return ", ".join(i.number or i.source_id for i in self.invoices)


def company_plans(
    s: Session,
    company_id: int,
    *,
    plan_id: int | None = None,
    customer_id: int | None = None,
    invoice_id: int | None = None,
) -> list[PlanRow]:
    """The company's plans (or one, or one customer's, or one invoice's), newest first."""
    stmt = (
        select(Plan)
        .where(Plan.company_id == company_id)
        .options(selectinload(Plan.installments), selectinload(Plan.invoices))
        .order_by(Plan.id.desc())
    )
    if plan_id is not None:
        stmt = stmt.where(Plan.id == plan_id)
    if customer_id is not None:
        stmt = stmt.where(Plan.customer_id == customer_id)
    if invoice_id is not None:
        stmt = stmt.where(
            Plan.id.in_(select(PlanInvoice.plan_id).where(PlanInvoice.invoice_id == invoice_id))
        )
    plans = s.scalars(stmt).all()
    if not plans:
        return []
    customers = {
        c.id: c
        for c in s.scalars(select(Customer).where(Customer.id.in_({p.customer_id for p in plans})))
    }
    invoice_ids = {pi.invoice_id for p in plans for pi in p.invoices}
    invoices = {i.id: i for i in s.scalars(select(Invoice).where(Invoice.id.in_(invoice_ids)))}
    return [
        PlanRow(
            p,
            customers[p.customer_id],
            sorted(
                (invoices[pi.invoice_id] for pi in p.invoices if pi.invoice_id in invoices),
                key=lambda i: (i.issued_on, i.id),
            ),
        )
        for p in plans
    ]


def by_status(rows: list[PlanRow]) -> dict[str, list[PlanRow]]:
    grouped: dict[str, list[PlanRow]] = defaultdict(list)
    for r in rows:
        grouped[r.plan.status].append(r)
    return {k: grouped[k] for k in STATUS_ORDER if grouped.get(k)}


def due_between(
    rows: list[PlanRow], start: date, days: int = 7
) -> list[tuple[PlanRow, PlanInstallment]]:
    """Installments of running plans to be charged from `start` for `days` days (and any
    failed one waiting for its retry), in date order."""
    end = start + timedelta(days=days - 1)
    found = []
    for r in rows:
        if r.plan.status not in ("current", "paused"):
            continue
        for i in r.plan.installments:
            when = i.next_retry_on if i.status == "failed" else i.due_on
            if (
                i.status in ("scheduled", "failed", "processing")
                and when is not None
                and when <= end
            ):
                found.append((r, i))
    return sorted(found, key=lambda pair: (pair[1].due_on, pair[0].plan.id, pair[1].number))


def plan_json(r: PlanRow) -> dict[str, Any]:
    """A plan as `arbridge plans list --format json` prints it."""
    p = r.plan
    return {
        "id": p.id,
        "status": p.status,
        "customer": r.customer.name,
        "customer_id": r.customer.source_id,
        "invoices": [i.number or i.source_id for i in r.invoices],
        "currency": p.currency,
        "balance": str(Money.from_minor(p.balance_minor, p.currency).amount),
        "fee": str(Money.from_minor(p.fee_minor, p.currency).amount),
        "total": str(r.total.amount),
        "every": p.every,
        "installment_count": p.installment_count,
        "deposit_percent": str(p.deposit_percent),
        "start_on": p.start_on.isoformat(),
        "origin": p.origin,
        "accepted_at": p.accepted_at.isoformat() if p.accepted_at else None,
        "agreement_version": p.agreement_version,
        "payment_method": p.payment_method_label,
        "ended_at": p.ended_at.isoformat() if p.ended_at else None,
        "end_reason": p.end_reason,
        "installments": [
            {
                "number": i.number,
                "due_on": i.due_on.isoformat(),
                "amount": str(Money.from_minor(i.amount_minor, p.currency).amount),
                "agreed_amount": str(Money.from_minor(i.agreed_minor, p.currency).amount),
                "status": i.status,
                "payment_reference": i.payment_intent_id,
                "attempts": i.attempts,
                "failures": i.failures,
                "next_retry_on": i.next_retry_on.isoformat() if i.next_retry_on else None,
                "last_error": i.last_error,
            }
            for i in p.installments
        ],
    }
