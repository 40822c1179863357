"""What a payment link asks for right now, from the server's current balances (never from the
URL or the form)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.clock import local_date
from arbridge.collections.payments import (
    Discount,
    Due,
    amount_to_pay,
    discount_from_terms,
    early_payment_discount,
)
from arbridge.collections.policy import policy
from arbridge.connectors.stripe import (
    PaymentGateway,
)
from arbridge.errors import NotFound
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.sync.model import (
    Company,
    Customer,
    Invoice,
    LateFeeAssessment,
    PayToken,
)
from arbridge.sync.pay_links import check_live, statement_invoices

log = logging.getLogger(__name__)


# --- What is owed -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Quote:
    company: Company
    customer: Customer
    invoices: Sequence[Invoice]
    state: str  # payable, pending, paid, voided, closed
    due: Sequence[Due] = field(default_factory=tuple)
    discount: Discount | None = None
    # A statement's invoices whose bank payment is on its way: shown, left out of the amount.
    pending: Sequence[Invoice] = field(default_factory=tuple)

    @property
    def currency(self) -> str:
        return self.invoices[0].currency

    @property
    def balance(self) -> Money:
        return Money.from_minor(
            sum(i.open_balance_minor for i in self.invoices if i.is_open), self.currency
        )

    @property
    def amount(self) -> Money:
        return amount_to_pay(self.due, self.currency)

    @property
    def discount_total(self) -> Money:
        return Money.from_minor(sum(d.discount.minor for d in self.due), self.currency)


def quote(rt: Runtime, session: Session, link: PayToken) -> Quote:
    """What this payment link asks for right now, from the current balances."""
    check_live(link, rt.clock.now())  # LinkGone: expired or withdrawn
    if link.invoice_id is not None:
        invoices = [session.get(Invoice, link.invoice_id)]
        # The invoice's late fees and interest, each its own ledger invoice once synced, are
        # paid together with it.
        invoices += fee_invoices(session, link.company_id, [link.invoice_id])
    else:
        invoices = list(statement_invoices(session, link))
    invoices = [i for i in invoices if i is not None and i.company_id == link.company_id]
    company = session.get(Company, link.company_id)
    customer = session.get(Customer, link.customer_id) if link.customer_id else None
    if company is None or customer is None:
        raise NotFound("no such payment link")
    if not invoices:
        if link.invoice_id is None:
            # A statement whose invoices were all settled (through another link, a cheque):
            # nothing to pay, said plainly rather than as a missing link.
            return Quote(company, customer, [], "paid")
        raise NotFound("no such payment link")
    if len({i.currency for i in invoices}) > 1:
        # A statement in several currencies pays the home currency's invoices; the rest stay.
        invoices = [i for i in invoices if i.currency == invoices[0].currency]
    first = invoices[0]
    if all(i.status == "voided" for i in invoices):
        return Quote(company, customer, invoices, "voided")
    open_ = [i for i in invoices if i.is_open]
    pending = [i for i in open_ if i.payment_pending]
    if pending and (link.invoice_id is not None or len(pending) == len(open_)):
        return Quote(company, customer, invoices, "pending")
    # A statement pays the rest of what is open; the invoices being paid by bank stay out.
    open_ = [i for i in open_ if not i.payment_pending]
    if not open_:
        return Quote(
            company, customer, invoices, "paid" if first.status in ("paid", "open") else "closed"
        )
    pol = policy(company.settings)
    today = local_date(rt.clock.now(), company.timezone)
    due, best = [], None
    for inv in open_:
        # The owner's offer wins; otherwise the ledger's own terms ("2% 10 Net 30") may offer one.
        percent, days = pol.discount_percent, pol.discount_days
        if not percent and (from_terms := discount_from_terms(inv.terms)):
            percent, days = from_terms
        d = early_payment_discount(inv.balance, inv.issued_on, today, percent, days)
        due.append(Due(inv.id, inv.balance, d.amount if d else Money.zero(inv.currency)))
        if d and (best is None or d.ends_on < best.ends_on):
            best = d
    return Quote(company, customer, open_, "payable", due, best, pending)


def fee_invoices(session: Session, company_id: int, invoice_ids: Sequence[int]) -> list[Invoice]:
    """The open ledger invoices that carry these invoices' standing late fees and interest."""
    if not invoice_ids:
        return []
    return list(
        session.scalars(
            select(Invoice)
            .join(
                LateFeeAssessment,
                (LateFeeAssessment.company_id == Invoice.company_id)
                & (LateFeeAssessment.ledger_ref == Invoice.source_id),
            )
            .where(
                Invoice.company_id == company_id,
                LateFeeAssessment.invoice_id.in_(list(invoice_ids)),
                LateFeeAssessment.status != "waived",
                Invoice.is_open,
            )
            .order_by(Invoice.issued_on, Invoice.id)
        ).unique()
    )


def quote_basis(q: Quote, methods: Sequence[str]) -> str:
    """What a Checkout session is opened for, as one digest of fixed length (a statement of
    many invoices listed in full outgrew its column): each invoice due with its balance and
    discount, and the ways to pay offered. A session is reused only for the same basis, so a
    balance that moved, or a way to pay the business stopped taking, opens a new one."""
    due = ",".join(f"{d.invoice_id}:{d.balance.minor}:{d.discount.minor}" for d in q.due)
    return hashlib.sha256(f"{due}|{','.join(methods)}".encode()).hexdigest()


def methods_for(gateway: PaymentGateway, q: Quote) -> list[str]:
    pol = policy(q.company.settings)
    methods = ["card"] if pol.accept_card else []
    if pol.accept_ach and q.currency == "USD":
        methods.append("us_bank_account")
    return methods
