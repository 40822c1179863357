"""The daily assessment: load the facts in a few queries, let collections.late_fees decide, then
claim each assessment by its unique key (invoice, kind, period) and queue its ledger invoice in
the same transaction. A rerun, a retry or a second worker finds the key taken and charges
nothing (a peer's tracker showed a late fee added every hour because its job ran hourly)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import Select, select, true
from sqlalchemy.orm import Session

from arbridge.collections.late_fees import (
    Assessment,
    InvoiceFacts,
    LateFeePolicy,
    assess_all,
    earliest_due_on,
    late_fee_policy,
)
from arbridge.runtime import Runtime
from arbridge.sync.db import transaction
from arbridge.sync.fee_claims import FeeClaim, claim_fee_invoice
from arbridge.sync.model import (
    LIVE_PLAN_STATUSES,
    Company,
    Connection,
    Customer,
    CustomerReminderSettings,
    Invoice,
    InvoiceHold,
    LateFeeAssessment,
    PaymentAllocation,
    Plan,
    PlanInvoice,
)
from arbridge.sync.store import company_today, ledger_connection, log_activity
from arbridge.wording import counted

log = logging.getLogger(__name__)


@dataclass
class FeeRun:
    charged: list[Assessment] = field(default_factory=list)
    hold: str | None = None  # why nothing was assessed


def fee_invoice_refs(company_id: int) -> Select[tuple[str | None]]:
    """SQL: the ledger ids of the invoices arbridge made for charges (never charged again)."""
    return select(LateFeeAssessment.ledger_ref).where(
        LateFeeAssessment.company_id == company_id, LateFeeAssessment.ledger_ref.is_not(None)
    )


def load_facts(
    session: Session, company: Company, policy: LateFeePolicy, as_of: date
) -> tuple[list[InvoiceFacts], dict[int, str], frozenset[int]]:
    """The invoices past their grace period, with what was applied to them and what was charged
    on them before; each customer's ledger id; the exempt customers. Four queries in all."""
    # Invoices past their grace period before charge_from are never charged: not loaded.
    earliest = earliest_due_on(policy)
    rows = session.execute(
        select(Invoice, Customer.source_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(
            Invoice.company_id == company.id,
            Invoice.is_open,
            Invoice.due_on < as_of - timedelta(days=policy.grace_days),
            true() if earliest is None else Invoice.due_on >= earliest,
            Invoice.paused.is_(False),
            Invoice.payment_pending.is_(False),
            # A charge's own invoice is never charged in turn: no fee on a fee.
            Invoice.source_id.not_in(fee_invoice_refs(company.id)),
            # Nor, while it lasts, an invoice in dispute or on an agreed installment plan (the
            # months it lasted are charged when it ends, if the invoice is still overdue).
            Invoice.id.not_in(
                select(InvoiceHold.invoice_id).where(
                    InvoiceHold.company_id == company.id,
                    InvoiceHold.kind == "dispute",
                    InvoiceHold.resolved_at.is_(None),
                )
            ),
            Invoice.id.not_in(
                select(PlanInvoice.invoice_id)
                .join(Plan, Plan.id == PlanInvoice.plan_id)
                .where(Plan.company_id == company.id, Plan.status.in_(LIVE_PLAN_STATUSES))
            ),
        )
        .order_by(Invoice.id)
    ).all()
    ids = [inv.id for inv, _ in rows]
    settled: dict[int, list[tuple[date, int]]] = defaultdict(list)
    assessed: dict[int, dict[tuple[str, str], int]] = defaultdict(dict)
    if ids:
        for invoice_id, on, minor in session.execute(
            select(
                PaymentAllocation.invoice_id,
                PaymentAllocation.applied_on,
                PaymentAllocation.amount_minor,
            ).where(
                PaymentAllocation.invoice_id.in_(ids), PaymentAllocation.applied_on.is_not(None)
            )
        ):
            settled[invoice_id].append((on, minor))
        for a in session.execute(
            select(
                LateFeeAssessment.invoice_id,
                LateFeeAssessment.kind,
                LateFeeAssessment.period,
                LateFeeAssessment.amount_minor,
                LateFeeAssessment.status,
            ).where(
                LateFeeAssessment.invoice_id.in_(ids),
                LateFeeAssessment.kind != "plan_fee",  # an installment plan's, not a late fee
            )
        ):
            # A waived charge is not charged again, nor counted against the cap.
            assessed[a.invoice_id][(a.kind, a.period)] = (
                0 if a.status == "waived" else a.amount_minor
            )
    exempt = frozenset(
        session.scalars(
            select(CustomerReminderSettings.customer_id).where(
                CustomerReminderSettings.company_id == company.id,
                CustomerReminderSettings.late_fees_exempt.is_(True),
            )
        )
    )
    facts = [
        InvoiceFacts(
            invoice_id=inv.id,
            customer_id=inv.customer_id,
            number=inv.number or inv.source_id,
            currency=inv.currency,
            exchange_rate=inv.exchange_rate,
            due_on=inv.due_on,
            balance_minor=inv.open_balance_minor,
            settlements=tuple(settled.get(inv.id, ())),
            assessed=assessed.get(inv.id, {}),
        )
        for inv, _ in rows
    ]
    return facts, {inv.customer_id: source_id for inv, source_id in rows}, exempt


def claim(
    session: Session,
    rt: Runtime,
    company: Company,
    conn: Connection,
    decided: Sequence[Assessment],
    customers: dict[int, str],
    numbers: dict[int, str],
    as_of: date,
) -> list[Assessment]:
    """Insert each assessment under its unique key and queue its ledger invoice; return the
    ones this run claimed (a key already taken, by an earlier run or another worker, is not)."""
    claimed = []
    for a in decided:
        new_id = claim_fee_invoice(
            session,
            rt.clock,
            FeeClaim(
                company_id=company.id,
                connection_id=conn.id,
                invoice_id=a.invoice_id,
                customer_id=a.customer_id,
                customer_source_id=customers[a.customer_id],
                kind=a.kind,
                period=a.period,
                amount=a.amount,
                description=a.description,
                basis=a.basis,
                assessed_on=as_of,
                due_on=as_of,
                reference=numbers[a.invoice_id],
            ),
        )
        if new_id is None:
            continue
        log_activity(
            session,
            rt.clock,
            company.id,
            "late_fees.assessed",
            f"{a.description}: {a.amount.format()} ({a.basis})",
            invoice_id=a.invoice_id,
            customer_id=a.customer_id,
        )
        claimed.append(a)
    return claimed


def assess_late_fees(rt: Runtime, company: Company) -> FeeRun:
    """The daily late-fee run for one company (the worker's collections job calls it)."""
    policy = late_fee_policy(company.settings)
    if not policy.charges_anything:
        return FeeRun()
    as_of = company_today(company, rt.clock)
    with transaction(rt.sessions) as session:
        conn = ledger_connection(session, company.id)
        if conn is None or conn.status != "active":
            # Nothing is claimed, so the next run after the ledger is back charges it then.
            return FeeRun(hold="no active ledger connection")
        facts, customers, exempt = load_facts(session, company, policy, as_of)
        decided = assess_all(facts, policy, as_of, exempt)
        numbers = {f.invoice_id: f.number for f in facts}
        charged = claim(session, rt, company, conn, decided, customers, numbers, as_of)
    if charged:
        log.info("late fees for %s: %s assessed", company.slug, counted(len(charged), "charge"))
    return FeeRun(charged=charged)
