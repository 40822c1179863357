"""Installment plans, carried out: what a link may offer, making a plan (the customer's choice on
the pay page, the owner's custom plan, the command line's), the agreement and the first payment
through Checkout with the payment method saved, fitting a plan to a changed balance, and the
customer's and owner's changes (cancel, pause, resume).

The rules themselves are pure (`collections.plans`, `collections.plan_charges`); charging on
schedule, notices and failures are in `plan_runs`. Amounts and invoices always come from the
server's current balances: a form names only the choice (how many installments, how often) and
the version of the agreement it showed, and both are checked again here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from arbridge.clock import local_date
from arbridge.collections import plans as rules
from arbridge.collections.aging import days_overdue
from arbridge.collections.policy import policy
from arbridge.connectors.stripe import CheckoutRequest
from arbridge.connectors.stripe.gateway import INSTALLMENT_KEY, PLAN_KEY, CustomerRequest
from arbridge.errors import NotFound, Rejected, Transient
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.services.payments.accounts import gateway_for
from arbridge.services.payments.open_sessions import close_overlapping, lock_invoices
from arbridge.services.payments.quote import Quote, methods_for, quote
from arbridge.sync.activity import log_activity
from arbridge.sync.db import dialect_insert, transaction
from arbridge.sync.model import (
    LIVE_PLAN_STATUSES,
    CheckoutSessionRow,
    CollectedPayment,
    Company,
    Customer,
    CustomerReminderSettings,
    Invoice,
    LateFeeAssessment,
    PayToken,
    Plan,
    PlanInstallment,
    PlanInvoice,
)
from arbridge.sync.notices import tell_owner
from arbridge.sync.outbox_kinds import owner_mail_key
from arbridge.sync.store import customer_email, find_pay_token, issue_pay_token
from arbridge.wording import counted, verb

log = logging.getLogger(__name__)

OFFER_DAYS = 14  # an owner's (or the command line's) offer lapses unless agreed within this
SESSION_MINUTES = 60
UNSETTLED = ("scheduled", "failed")  # installments still to be charged
OPEN_STATES = ("scheduled", "processing", "failed")


class PlanRefused(Rejected):
    """A plan that cannot be made or changed as asked; one sentence for the person asking."""


# --- Reading plans ----------------------------------------------------------------------------
def live_plan_of_invoices(s: Session, invoice_ids: Sequence[int]) -> Plan | None:
    """The current (or paused) plan covering any of these invoices, if there is one."""
    if not invoice_ids:
        return None
    return s.scalar(
        select(Plan)
        .join(PlanInvoice, PlanInvoice.plan_id == Plan.id)
        .where(PlanInvoice.invoice_id.in_(list(invoice_ids)), Plan.status.in_(LIVE_PLAN_STATUSES))
        .options(selectinload(Plan.installments), selectinload(Plan.invoices))
        .order_by(Plan.id.desc())
        .limit(1)
    )


def open_offer_of_invoices(s: Session, invoice_ids: Sequence[int], now: datetime) -> Plan | None:
    """An offer the owner (or the command line) made for these invoices, still open."""
    if not invoice_ids:
        return None
    return s.scalar(
        select(Plan)
        .join(PlanInvoice, PlanInvoice.plan_id == Plan.id)
        .where(
            PlanInvoice.invoice_id.in_(list(invoice_ids)),
            Plan.status == "offered",
            Plan.origin != "customer",
            Plan.offer_expires_at > now,
        )
        .options(selectinload(Plan.installments), selectinload(Plan.invoices))
        .order_by(Plan.id.desc())
        .limit(1)
    )


def plan_invoices(s: Session, plan: Plan) -> list[Invoice]:
    """The plan's invoices, oldest first (issue date, then number)."""
    ids = [pi.invoice_id for pi in plan.invoices]
    if not ids:
        return []
    return plan_invoices_sorted(s.scalars(select(Invoice).where(Invoice.id.in_(ids))).all())


def installments_of(plan: Plan, statuses: Sequence[str] = UNSETTLED) -> list[rules.Installment]:
    return [
        rules.Installment(i.number, i.due_on, Money.from_minor(i.amount_minor, plan.currency))
        for i in plan.installments
        if i.status in statuses
    ]


def plan_fee_period(plan: Plan) -> str:
    """The plan fee's assessment period (7 characters): the plan's id in hex."""
    return f"{plan.id:07x}"[-7:]


def link_fee_invoice(s: Session, plan: Plan) -> Invoice | None:
    """The plan's fee as the ledger invoice that carries it, once synced: added to the plan's
    invoices (paid last, being the newest), so installments settle it like the rest."""
    if not plan.fee_minor:
        return None
    found = s.scalar(
        select(Invoice)
        .join(
            LateFeeAssessment,
            (LateFeeAssessment.company_id == Invoice.company_id)
            & (LateFeeAssessment.ledger_ref == Invoice.source_id),
        )
        .where(
            LateFeeAssessment.company_id == plan.company_id,
            LateFeeAssessment.kind == "plan_fee",
            LateFeeAssessment.period == plan_fee_period(plan),
            LateFeeAssessment.status != "waived",
        )
    )
    if found is not None and found.id not in {pi.invoice_id for pi in plan.invoices}:
        plan.invoices.append(PlanInvoice(invoice_id=found.id))
        s.flush()
    return found


def plan_owed_minor(s: Session, plan: Plan, invoices: Sequence[Invoice]) -> int:
    """What the plan may still collect: its invoices' open balances, plus its fee while the
    fee's own ledger invoice is not among them yet (less what was collected beyond the
    invoices, which is the fee)."""
    owed = sum(i.open_balance_minor for i in invoices if i.is_open)
    fee_invoice = link_fee_invoice(s, plan)
    if fee_invoice is None or fee_invoice.id not in {i.id for i in invoices}:
        owed += max(plan.fee_minor - fee_collected_minor(s, plan), 0)
    return owed


def fee_collected_minor(s: Session, plan: Plan) -> int:
    """The part of the plan's payments beyond what its invoices owed: its fee, collected."""
    ids = [i.id for i in plan.installments]
    if not plan.fee_minor or not ids:
        return 0
    got = s.scalar(
        select(func.coalesce(func.sum(CollectedPayment.unapplied_minor), 0)).where(
            CollectedPayment.plan_installment_id.in_(ids),
            CollectedPayment.status == "succeeded",
        )
    )
    return min(int(got or 0), plan.fee_minor)


# --- What a link may offer --------------------------------------------------------------------
@dataclass(frozen=True)
class PlanChoice:
    """What the pay page offers: whether a plan may be chosen, why, and the choices."""

    eligibility: rules.Eligibility
    offer: rules.Offer | None = None
    balance: Money | None = None


def _rate_to_home(invoices: Sequence[Invoice]) -> Decimal:
    rate = invoices[0].exchange_rate if invoices else None
    return Decimal(rate) if rate else Decimal(1)


def plan_choice(s: Session, q: Quote, today: date) -> PlanChoice:
    """May this link's customer choose a plan for what the link asks now, and from what?"""
    if q.state != "payable" or not q.invoices:
        return PlanChoice(rules.Eligibility(False, "nothing is payable now"))
    pol = policy(q.company.settings)
    balance = q.balance
    home = balance.convert(_rate_to_home(q.invoices), q.company.home_currency)
    on_plan = live_plan_of_invoices(s, [i.id for i in q.invoices]) is not None
    override = s.scalar(
        select(CustomerReminderSettings.plan_choice).where(
            CustomerReminderSettings.customer_id == q.customer.id
        )
    )
    oldest_due = s.scalar(
        select(func.min(Invoice.due_on)).where(
            Invoice.customer_id == q.customer.id, Invoice.is_open
        )
    )
    defaulted = (
        s.scalar(
            select(func.count())
            .select_from(Plan)
            .where(Plan.customer_id == q.customer.id, Plan.status == "defaulted")
        )
        or 0
    )
    eligible = rules.eligibility(
        pol,
        home,
        most_days_overdue=max(0, days_overdue(oldest_due, today)) if oldest_due else 0,
        has_defaulted_plan=defaulted > 0,
        override=override if override in ("allow", "deny") else None,
        on_current_plan=on_plan,
    )
    if not eligible.offered:
        return PlanChoice(eligible, None, balance)
    try:
        offer = rules.offer(pol, balance, q.company.name, _rate_to_home(q.invoices))
    except rules.PlanError as e:
        return PlanChoice(rules.Eligibility(False, str(e)), None, balance)
    return PlanChoice(eligible, offer, balance)


@dataclass(frozen=True)
class Proposal:
    """A schedule as the customer (or owner) would agree to it."""

    balance: Money
    fee: Money
    installments: tuple[rules.Installment, ...]
    every: str
    deposit_percent: Decimal
    agreement: rules.Agreement

    @property
    def total(self) -> Money:
        return self.balance + self.fee


def propose_for_customer(
    choice: PlanChoice, installments: int, every: str, start_on: date
) -> Proposal:
    """The schedule for the customer's choice, within what the owner offers."""
    offer = choice.offer
    if offer is None or choice.balance is None:
        raise PlanRefused(f"A plan is not offered here: {choice.eligibility.reason}")
    if installments not in offer.installment_counts:
        raise PlanRefused(
            f"Choose from {offer.installment_counts[0]} to {offer.installment_counts[-1]} installments"
        )
    if every not in offer.frequencies:
        raise PlanRefused("That frequency is not offered")
    try:
        schedule = rules.schedule(
            choice.balance,
            installments=installments,
            every=every,
            start_on=start_on,
            max_installments=offer.installment_counts[-1],
            deposit_percent=offer.deposit_percent,
            fee=offer.fee,
        )
    except rules.PlanError as e:
        raise PlanRefused(str(e)) from e
    return Proposal(
        choice.balance, offer.fee, schedule, every, offer.deposit_percent, offer.agreement
    )


# --- Making a plan ----------------------------------------------------------------------------
def _store_plan(
    s: Session,
    rt: Runtime,
    *,
    company: Company,
    customer: Customer,
    invoices: Sequence[Invoice],
    proposal: Proposal,
    start_on: date,
    origin: str,
    pay_token_id: int | None,
) -> Plan:
    now = rt.clock.now()
    plan = Plan(
        company_id=company.id,
        customer_id=customer.id,
        pay_token_id=pay_token_id,
        status="offered",
        origin=origin,
        currency=proposal.balance.currency,
        balance_minor=proposal.balance.minor,
        fee_minor=proposal.fee.minor,
        installment_count=sum(1 for i in proposal.installments if i.number != rules.DEPOSIT),
        every=proposal.every,
        deposit_percent=proposal.deposit_percent,
        start_on=start_on,
        agreement_text=proposal.agreement.text,
        agreement_version=proposal.agreement.version,
        created_at=now,
        updated_at=now,
        offer_expires_at=now + timedelta(days=OFFER_DAYS),
    )
    for inv in invoices:
        plan.invoices.append(PlanInvoice(invoice_id=inv.id))
    for inst in proposal.installments:
        plan.installments.append(
            PlanInstallment(
                number=inst.number,
                due_on=inst.due_on,
                amount_minor=inst.amount.minor,
                agreed_minor=inst.amount.minor,
                status="scheduled",
                attempts=0,
                failures=0,
            )
        )
    s.add(plan)
    s.flush()
    return plan


@dataclass(frozen=True)
class MadePlan:
    plan_id: int
    link: str  # where the customer agrees and pays the first amount
    proposal: Proposal


def make_offer(
    rt: Runtime,
    *,
    company_slug: str | None = None,
    company_id: int | None = None,
    invoice_numbers: Sequence[str] = (),
    invoice_ids: Sequence[int] = (),
    installments: int,
    every: str,
    deposit_percent: Decimal | None = None,
    start_on: date | None = None,
    origin: str = "owner",
) -> MadePlan:
    """The owner's (or the command line's) custom plan for one customer's invoices: made as an
    offer, with a payment link where the customer reads the schedule, agrees and pays the first
    amount. The owner's choices may go beyond the pay page's (any count up to 120, any
    frequency); the balances, fee and agreement are the server's."""
    with transaction(rt.sessions) as s:
        q = select(Company)
        company = s.scalar(
            q.where(Company.slug == company_slug)
            if company_slug
            else q.where(Company.id == company_id)
        )
        if company is None:
            raise NotFound("no such company")
        conditions = [Invoice.company_id == company.id]
        if invoice_numbers:
            conditions.append(Invoice.number.in_(list(invoice_numbers)))
        else:
            conditions.append(Invoice.id.in_(list(invoice_ids)))
        invoices = list(s.scalars(select(Invoice).where(*conditions)).all())
        wanted = len(invoice_numbers or invoice_ids)
        if not wanted or len(invoices) < wanted:
            raise NotFound("no such invoice in this company")
        if len(invoices) > wanted:
            raise PlanRefused(
                "That invoice number is on more than one invoice; use the invoice page"
            )
        if len({i.customer_id for i in invoices}) > 1:
            raise PlanRefused("A plan covers invoices of one customer")
        if len({i.currency for i in invoices}) > 1:
            raise PlanRefused("A plan covers invoices in one currency")
        closed = [i.number or i.source_id for i in invoices if not i.is_open]
        if closed:
            raise PlanRefused(f"Invoice {', '.join(closed)} has nothing left to pay")
        if any(i.payment_pending for i in invoices):
            raise PlanRefused("A payment for this invoice is still clearing")
        if live_plan_of_invoices(s, [i.id for i in invoices]) is not None:
            raise PlanRefused("This invoice is already on a current plan")
        customer = s.get(Customer, invoices[0].customer_id)
        assert customer is not None
        pol = policy(company.settings)
        today = local_date(rt.clock.now(), company.timezone)
        start = start_on or today
        if start < today:
            raise PlanRefused("A plan cannot start in the past")
        if start > today + timedelta(days=365):
            raise PlanRefused("A plan starts within a year")
        balance = Money.from_minor(
            sum(i.open_balance_minor for i in invoices), invoices[0].currency
        )
        percent = pol.plan_deposit_percent if deposit_percent is None else deposit_percent
        try:
            fee = rules.plan_fee(
                balance, pol.plan_fee_amount, pol.plan_fee_percent, _rate_to_home(invoices)
            )
            schedule = rules.schedule(
                balance,
                installments=installments,
                every=every,
                start_on=start,
                max_installments=rules.MAX_INSTALLMENTS,
                deposit_percent=percent,
                fee=fee,
            )
        except rules.PlanError as e:
            raise PlanRefused(str(e)) from e
        proposal = Proposal(
            balance, fee, schedule, every, Decimal(percent), rules.agreement(pol, company.name)
        )
        oldest = plan_invoices_sorted(invoices)[0]
        token = issue_pay_token(s, rt.clock, oldest)
        s.flush()
        link = find_pay_token(s, token)
        plan = _store_plan(
            s,
            rt,
            company=company,
            customer=customer,
            invoices=invoices,
            proposal=proposal,
            start_on=start,
            origin=origin,
            pay_token_id=link.id,
        )
        log_activity(
            s,
            rt.clock,
            company.id,
            "plan.offered",
            f"Installment plan offered to {customer.name}: {schedule_words(proposal)}",
            customer_id=customer.id,
            plan_id=plan.id,
        )
        return MadePlan(plan.id, f"{rt.settings.base_url}/pay/{token}/plan", proposal)


def plan_invoices_sorted(invoices: Sequence[Invoice]) -> list[Invoice]:
    """Oldest first, as a plan's payments are applied (collections.plans.oldest_first)."""
    by_id = {i.id: i for i in invoices}
    order = rules.oldest_first(
        [rules.PlanInvoice(i.id, i.number, i.issued_on, i.total) for i in invoices]
    )
    return [by_id[o.invoice_id] for o in order]


def schedule_words(p: Proposal) -> str:
    count = sum(1 for i in p.installments if i.number != rules.DEPOSIT)
    deposit = next((i for i in p.installments if i.number == rules.DEPOSIT), None)
    words = f"{p.total.format()} in {count} installment{'s' if count != 1 else ''} "
    words += rules.FREQUENCY_LABELS[p.every]
    if deposit is not None:
        words += f" after a deposit of {deposit.amount.format()}"
    return words + f", from {p.installments[0].due_on.isoformat()}"


# --- Agreeing and paying the first amount -----------------------------------------------------
def _check_agreement(text_version: str, agreed: bool, version: str) -> None:
    if not agreed:
        raise PlanRefused("Tick the box to agree to the plan first")
    if version != text_version:
        # The owner changed the wording (or the page is stale): show the new text again.
        raise PlanRefused(
            "The plan's terms have changed since the page was opened; read them again"
        )


def choose_and_agree(
    rt: Runtime,
    token: str,
    *,
    installments: int,
    every: str,
    agreed: bool,
    version: str,
    ip: str | None,
    user_agent: str | None,
) -> str:
    """The customer's own plan from the pay page: checked against what is offered now, stored
    with the acceptance, and its first payment opened in Checkout; returns Checkout's URL."""
    with transaction(rt.sessions) as s:
        link = find_pay_token(s, token)
        q = quote(rt, s, link)
        today = local_date(rt.clock.now(), q.company.timezone)
        choice = plan_choice(s, q, today)
        proposal = propose_for_customer(choice, installments, every, today)
        _check_agreement(proposal.agreement.version, agreed, version)
        plan = _store_plan(
            s,
            rt,
            company=q.company,
            customer=q.customer,
            invoices=q.invoices,
            proposal=proposal,
            start_on=today,
            origin="customer",
            pay_token_id=link.id,
        )
        _accept(rt, s, plan, ip, user_agent)
        return _first_checkout(rt, s, plan, link, token)


def agree_to_offer(
    rt: Runtime,
    token: str,
    plan_id: int,
    *,
    agreed: bool,
    version: str,
    ip: str | None,
    user_agent: str | None,
) -> str:
    """The customer agrees to the owner's offer on their link; returns Checkout's URL."""
    with transaction(rt.sessions) as s:
        link = find_pay_token(s, token)
        plan = _plan_for_link(s, rt, link, plan_id, lock=True)
        if plan.status != "offered":
            raise PlanRefused(
                "This plan was agreed already" if plan.accepted_at else "This offer is closed"
            )
        if plan.offer_expires_at is not None and plan.offer_expires_at <= rt.clock.now():
            raise PlanRefused("This offer has lapsed; ask the business for a new one")
        invoices = plan_invoices(s, plan)
        owed = sum(i.open_balance_minor for i in invoices if i.is_open)
        if owed != plan.balance_minor:
            # Something was paid or credited since the offer: its amounts no longer fit.
            raise PlanRefused(
                "The balance changed since this plan was offered; ask the business for a new one"
            )
        if plan.accepted_at is None:
            _check_agreement(plan.agreement_version, agreed, version)
            _accept(rt, s, plan, ip, user_agent)
        return _first_checkout(rt, s, plan, link, token)


def _accept(rt: Runtime, s: Session, plan: Plan, ip: str | None, user_agent: str | None) -> None:
    plan.accepted_at = rt.clock.now()
    plan.accepted_ip = (ip or "")[:64] or None
    plan.accepted_user_agent = (user_agent or "")[:300] or None
    plan.updated_at = rt.clock.now()
    log_activity(
        s,
        rt.clock,
        plan.company_id,
        "plan.accepted",
        f"Plan {plan.id} agreed (terms version {plan.agreement_version[:12]}) from {plan.accepted_ip or 'an unknown address'}",
        customer_id=plan.customer_id,
        plan_id=plan.id,
    )


def _plan_for_link(
    s: Session, rt: Runtime, link: PayToken, plan_id: int, *, lock: bool = False
) -> Plan:
    """The plan, if this link may act on it: one of the link's invoices is on it (an invoice
    link), or it is the link's customer's (a statement link). Anything else is not found."""
    from arbridge.sync.pay_links import check_live

    check_live(link, rt.clock.now())
    stmt = select(Plan).where(Plan.id == plan_id, Plan.company_id == link.company_id)
    if lock:
        stmt = stmt.with_for_update()
    plan = s.scalar(stmt.options(selectinload(Plan.installments), selectinload(Plan.invoices)))
    if plan is None or plan.customer_id != link.customer_id:
        raise NotFound("no such plan")
    if link.invoice_id is not None and link.invoice_id not in {
        pi.invoice_id for pi in plan.invoices
    }:
        raise NotFound("no such plan")
    return plan


def _first_checkout(rt: Runtime, s: Session, plan: Plan, link: PayToken, token: str) -> str:
    """Checkout for the plan's first installment, saving the payment method for the rest."""
    first = min(plan.installments, key=lambda i: i.number)
    if first.status != "scheduled":
        raise PlanRefused("The first payment of this plan is made already")
    return _installment_checkout(rt, s, plan, first, link, token, save=True)


def installment_checkout(rt: Runtime, token: str, plan_id: int, number: int) -> str:
    """The customer pays a failed installment themselves (the link in the failure email); the
    method they use is saved for the rest of the plan."""
    with transaction(rt.sessions) as s:
        link = find_pay_token(s, token)
        plan = _plan_for_link(s, rt, link, plan_id, lock=True)
        if plan.status not in LIVE_PLAN_STATUSES:
            raise PlanRefused("This plan is no longer running")
        inst = next((i for i in plan.installments if i.number == number), None)
        if inst is None:
            raise NotFound("no such installment")
        if inst.status != "failed":
            raise PlanRefused("This installment is not waiting for a payment")
        return _installment_checkout(rt, s, plan, inst, link, token, save=True)


def _installment_checkout(
    rt: Runtime,
    s: Session,
    plan: Plan,
    inst: PlanInstallment,
    link: PayToken,
    token: str,
    *,
    save: bool,
) -> str:
    company = s.get(Company, plan.company_id)
    customer = s.get(Customer, plan.customer_id)
    assert company is not None and customer is not None
    gateway = gateway_for(rt, s, company)
    if gateway is None:
        raise Rejected("online payment is not set up for this business")
    invoices = plan_invoices(s, plan)
    q = Quote(company, customer, [i for i in invoices if i.is_open], "payable")
    methods = [m for m in methods_for(gateway, q) if m in ("card", "us_bank_account")]
    if not methods:
        raise Rejected("this business does not take online payments at the moment")
    amount = Money.from_minor(inst.amount_minor, plan.currency)
    open_ids = [i.id for i in invoices if i.is_open]
    lock_invoices(s, open_ids)
    now = rt.clock.now()
    reusable = s.scalar(
        select(CheckoutSessionRow)
        .where(
            CheckoutSessionRow.pay_token_id == link.id,
            CheckoutSessionRow.status == "open",
            CheckoutSessionRow.basis == _basis(plan, inst),
            CheckoutSessionRow.expires_at > now + timedelta(minutes=5),
        )
        .order_by(CheckoutSessionRow.id.desc())
    )
    if reusable is not None and reusable.url:
        return reusable.url
    close_overlapping(rt, s, gateway, company.id, open_ids)
    if plan.stripe_customer_id is None:
        plan.stripe_customer_id = gateway.find_or_create_customer(
            CustomerRequest(
                company=str(company.id),
                customer=str(customer.id),
                name=customer.name,
                email=customer_email(s, customer.id),
            )
        )
    opened = (
        s.scalar(
            select(func.count())
            .select_from(CheckoutSessionRow)
            .where(CheckoutSessionRow.basis == _basis(plan, inst))
        )
        or 0
    )
    base = rt.settings.base_url
    label = (
        "deposit"
        if inst.number == rules.DEPOSIT
        else f"installment {inst.number} of {plan.installment_count}"
    )
    request = CheckoutRequest(
        amount=amount,
        description=f"{company.name}: payment plan {plan.id}, {label}",
        methods=methods,
        success_url=f"{base}/pay/{token}/plan/return?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{base}/pay/{token}/plan/return?cancelled=1",
        expires_at=now + timedelta(minutes=SESSION_MINUTES),
        idempotency_key=f"plan_checkout:{inst.id}:{opened}:{inst.amount_minor}",
        metadata={
            "arbridge_company": str(company.id),
            "arbridge_invoices": ",".join(str(i) for i in open_ids),
            PLAN_KEY: str(plan.id),
            INSTALLMENT_KEY: str(inst.number),
        },
        customer=plan.stripe_customer_id,
        save_payment_method=save,
    )
    created = gateway.create_checkout_session(request)
    s.execute(
        dialect_insert(s)(CheckoutSessionRow.__table__)
        .values(
            company_id=company.id,
            pay_token_id=link.id,
            stripe_session_id=created.id,
            url=created.url,
            invoice_ids=open_ids,
            currency=plan.currency,
            amount_minor=inst.amount_minor,
            discount_minor=0,
            basis=_basis(plan, inst),
            status="open",
            expires_at=created.expires_at or now + timedelta(minutes=SESSION_MINUTES),
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["stripe_session_id"])
    )
    if not created.url:
        raise Transient("Stripe returned a session without a URL")
    return created.url


def _basis(plan: Plan, inst: PlanInstallment) -> str:
    return f"plan:{plan.id}:{inst.number}:{inst.amount_minor}"


# --- Changes by the customer and the owner ----------------------------------------------------
def cancel_by_customer(rt: Runtime, token: str, plan_id: int) -> None:
    with transaction(rt.sessions) as s:
        link = find_pay_token(s, token)
        plan = _plan_for_link(s, rt, link, plan_id, lock=True)
        if plan.status not in LIVE_PLAN_STATUSES and plan.status != "offered":
            raise PlanRefused("This plan is not running")
        end_plan(rt, s, plan, "cancelled", "cancelled by the customer through their link")


def end_plan(rt: Runtime, s: Session, plan: Plan, status: str, reason: str) -> None:
    """End a plan: nothing more is charged (a charge already out still lands); the reminder
    sequence takes over what is left (a plan no longer current holds no reminders back)."""
    now = rt.clock.now()
    was = plan.status
    plan.status, plan.ended_at, plan.end_reason, plan.updated_at = status, now, reason, now
    for inst in plan.installments:
        if inst.status in UNSETTLED:
            inst.next_retry_on = None
            # The installment a plan defaulted on stays "failed": the record of why.
            if not (status == "defaulted" and inst.status == "failed"):
                inst.status = "cancelled"
    customer = s.get(Customer, plan.customer_id)
    who = customer.name if customer else "a customer"
    log_activity(
        s,
        rt.clock,
        plan.company_id,
        f"plan.{status}",
        f"Plan {plan.id} for {who} {status}: {reason}",
        plan_id=plan.id,
    )
    if was == "offered" or status == "completed":
        return
    company = s.get(Company, plan.company_id)
    assert company is not None
    tell_owner(
        s,
        rt.clock,
        company.id,
        key=owner_mail_key(company.id, f"plan-{status}:{plan.id}"),
        subject=f"Payment plan {status}: {who}",
        text=(
            f"{who}'s installment plan {plan.id} is {status}: {reason}. Nothing more will be "
            "charged; reminders resume for what is still owed.\n\n"
            f"{rt.settings.base_url}/c/{company.slug}/plans/{plan.id}\n"
        ),
    )


def owner_change(rt: Runtime, company_id: int, plan_id: int, action: str) -> str:
    """The owner pauses, resumes or cancels a plan; returns what happened, for the page."""
    with transaction(rt.sessions) as s:
        plan = s.scalar(
            select(Plan)
            .where(Plan.id == plan_id, Plan.company_id == company_id)
            .with_for_update()
            .options(selectinload(Plan.installments), selectinload(Plan.invoices))
        )
        if plan is None:
            raise NotFound("no such plan")
        now = rt.clock.now()
        if action == "pause":
            if plan.status != "current":
                raise PlanRefused("Only a current plan can be paused")
            plan.status, plan.paused_at, plan.updated_at = "paused", now, now
            log_activity(
                s, rt.clock, company_id, "plan.paused", f"Plan {plan.id} paused", plan_id=plan.id
            )
            return "Plan paused: nothing is charged until you resume it."
        if action == "resume":
            if plan.status != "paused":
                raise PlanRefused("Only a paused plan can be resumed")
            plan.status, plan.paused_at, plan.updated_at = "current", None, now
            today = local_date(now, s.get(Company, company_id).timezone)  # type: ignore[union-attr]
            # Installments that fell due while paused are charged from today, not all at once.
            for inst in plan.installments:
                if inst.status == "failed" and inst.next_retry_on and inst.next_retry_on < today:
                    inst.next_retry_on = today
            log_activity(
                s, rt.clock, company_id, "plan.resumed", f"Plan {plan.id} resumed", plan_id=plan.id
            )
            return "Plan resumed."
        if action == "cancel":
            if plan.status not in (*LIVE_PLAN_STATUSES, "offered"):
                raise PlanRefused("This plan is not running")
            end_plan(rt, s, plan, "cancelled", "cancelled by the business")
            return "Plan cancelled: nothing more will be charged."
        raise PlanRefused(f"Unknown action {action!r}")


def owner_reschedule(
    rt: Runtime, company_id: int, plan_id: int, *, number: int, due_on: date
) -> str:
    """The owner moves one installment still to be charged to another date (not in the past,
    not before an earlier installment's, not after a later one's)."""
    with transaction(rt.sessions) as s:
        plan = s.scalar(
            select(Plan)
            .where(Plan.id == plan_id, Plan.company_id == company_id)
            .with_for_update()
            .options(selectinload(Plan.installments))
        )
        if plan is None:
            raise NotFound("no such plan")
        if plan.status not in (*LIVE_PLAN_STATUSES, "offered"):
            raise PlanRefused("This plan is not running")
        inst = next((i for i in plan.installments if i.number == number), None)
        if inst is None or inst.status not in UNSETTLED:
            raise PlanRefused("Only an installment still to be charged can be moved")
        company = s.get(Company, company_id)
        assert company is not None
        today = local_date(rt.clock.now(), company.timezone)
        if due_on < today:
            raise PlanRefused("An installment cannot be moved into the past")
        before = [i.due_on for i in plan.installments if i.number < number]
        after = [i.due_on for i in plan.installments if i.number > number and i.status in UNSETTLED]
        if (before and due_on < max(before)) or (after and due_on > min(after)):
            raise PlanRefused(
                "Keep the installments in order: move it between its neighbours' dates"
            )
        old = inst.due_on
        inst.due_on, inst.noticed_on = due_on, None
        if inst.status == "failed":
            inst.next_retry_on = due_on
        plan.updated_at = rt.clock.now()
        log_activity(
            s,
            rt.clock,
            company_id,
            "plan.rescheduled",
            f"Plan {plan.id}: installment {number} moved from {old.isoformat()} to {due_on.isoformat()}",
            plan_id=plan.id,
        )
        return f"Installment {number} now falls on {due_on.isoformat()}."


def set_customer_plan_choice(
    rt: Runtime, company_id: int, customer_id: int, choice: str | None
) -> None:
    """The owner's per-customer rule: "allow" (always offered), "deny" (never) or None."""
    if choice not in (None, "allow", "deny"):
        raise PlanRefused("Choose allow, deny or the company's rule")
    with transaction(rt.sessions) as s:
        customer = s.get(Customer, customer_id)
        if customer is None or customer.company_id != company_id:
            raise NotFound("no such customer")
        pref = s.scalar(
            select(CustomerReminderSettings).where(
                CustomerReminderSettings.customer_id == customer_id
            )
        )
        if pref is None:
            pref = CustomerReminderSettings(company_id=company_id, customer_id=customer_id)
            s.add(pref)
        pref.plan_choice = choice


# --- Fitting a plan to the balance ------------------------------------------------------------
def reconcile(rt: Runtime, s: Session, plan: Plan, invoices: Sequence[Invoice]) -> str:
    """Fit a live plan to what its invoices owe now (a payment or credit elsewhere, a void):
    installments shrink from the last, the plan finishes early, or it is cancelled when its
    invoices are voided or deleted. Returns the outcome (collections.plans' names, or
    "cancelled")."""
    if plan.status not in LIVE_PLAN_STATUSES:
        return rules.UNCHANGED
    if invoices and all(i.status in ("voided", "deleted") for i in invoices):
        end_plan(rt, s, plan, "cancelled", "its invoices were voided or deleted in the ledger")
        return "cancelled"
    in_flight = sum(i.amount_minor for i in plan.installments if i.status == "processing")
    if link_fee_invoice(s, plan) is not None:
        invoices = plan_invoices(s, plan)
    owed = plan_owed_minor(s, plan, invoices)
    available = Money.from_minor(max(owed - in_flight, 0), plan.currency)
    remaining = installments_of(plan)
    if not remaining:
        return rules.UNCHANGED
    adjustment = rules.reschedule_after_balance_change(remaining, available)
    if adjustment.outcome == rules.UNCHANGED:
        return adjustment.outcome
    if adjustment.outcome == rules.BALANCE_GREW:
        # Never added to a plan by itself: the owner sees the difference on the plan's page.
        return adjustment.outcome
    kept = {i.number: i.amount.minor for i in adjustment.installments}
    for inst in plan.installments:
        if inst.status not in UNSETTLED:
            continue
        if inst.number in kept:
            inst.amount_minor = kept[inst.number]
        else:
            inst.status, inst.next_retry_on = "dropped", None
    plan.updated_at = rt.clock.now()
    log_activity(
        s,
        rt.clock,
        plan.company_id,
        "plan.adjusted",
        f"Plan {plan.id}: the balance fell to {available.format()}, so "
        + (
            f"{counted(len(adjustment.dropped), 'installment')} "
            f"{verb(len(adjustment.dropped), 'is', 'are')} no longer needed and the rest fit it"
            if adjustment.outcome == rules.SHRUNK
            else "nothing more is charged"
        ),
        plan_id=plan.id,
    )
    if adjustment.outcome == rules.FINISHED and not any(
        i.status == "processing" for i in plan.installments
    ):
        end_plan(rt, s, plan, "completed", "the balance was paid another way")
    return adjustment.outcome
