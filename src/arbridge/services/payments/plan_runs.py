"""Installment plans on schedule: the pass that queues each due charge and each notice, the outbox
handler that charges a saved payment method off-session, and what a charge's outcome does to
its installment and plan (success, a bank debit clearing, a decline, a failure days later).

Exactly once: an installment is charged through an outbox row whose key (installment and
attempt) is also Stripe's Idempotency-Key, and is marked "processing" in the same transaction,
so no second pass queues it again. A worker that dies between Stripe's answer and our record
leaves the row "sending"; it is retried with the same key, which Stripe answers with the first
PaymentIntent (charging nothing more); after Stripe forgets keys (24 hours), our earlier
attempts are looked up by the key in their metadata first. Every outcome goes through the
payment state machine (`recording.record`), whichever comes first: the charge's own answer or
Stripe's event.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from arbridge.clock import day_text, local_date
from arbridge.collections import plan_charges
from arbridge.collections import plans as rules
from arbridge.collections.templates import Rendered
from arbridge.connectors.stripe.gateway import (
    INSTALLMENT_KEY,
    PLAN_KEY,
    ChargeResult,
    OffSessionCharge,
)
from arbridge.errors import Rejected
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import Prepared
from arbridge.services.payments.accounts import gateway_for, gateway_for_row
from arbridge.services.payments.events import Observed, plain_failure
from arbridge.services.payments.plans import (
    UNSETTLED,
    end_plan,
    installments_of,
    link_fee_invoice,
    plan_fee_period,
    plan_invoices,
    plan_owed_minor,
    reconcile,
)
from arbridge.sync import pay_links
from arbridge.sync.activity import log_activity
from arbridge.sync.db import transaction
from arbridge.sync.fee_claims import FeeClaim, claim_fee_invoice
from arbridge.sync.model import (
    CheckoutSessionRow,
    CollectedPayment,
    Company,
    Customer,
    Invoice,
    OutboxMessage,
    PayToken,
    Plan,
    PlanInstallment,
    PlanInvoice,
)
from arbridge.sync.outbox import enqueue
from arbridge.sync.outbox_kinds import OutboxKind
from arbridge.sync.store import customer_email, ledger_connection

log = logging.getLogger(__name__)

MAIL = "plan"  # the plan's emails to the customer (notice, failure), written as they go out


def charge_key(inst: PlanInstallment, attempt: int) -> str:
    return f"{OutboxKind.PLAN_CHARGE.value}:{inst.id}:{attempt}"


# --- The pass ---------------------------------------------------------------------------------
def run_due_plans(rt: Runtime) -> int:
    """Queue every charge and notice that is due now, across companies; returns how many
    charges were queued. Cheap when nothing is due: one query finds the plans to look at."""
    now = rt.clock.now()
    # Today somewhere on earth is at most one day after UTC's: look that far, and decide per
    # company in its own timezone.
    horizon = now.date() + timedelta(days=1 + plan_charges.NOTICE_DAYS_BEFORE)
    queued = 0
    with transaction(rt.sessions) as s:
        plan_ids = s.scalars(
            select(PlanInstallment.plan_id)
            .join(Plan, Plan.id == PlanInstallment.plan_id)
            .where(
                Plan.status == "current",
                PlanInstallment.status.in_(UNSETTLED),
                or_(
                    (PlanInstallment.status == "scheduled") & (PlanInstallment.due_on <= horizon),
                    (PlanInstallment.status == "failed")
                    & (PlanInstallment.next_retry_on <= horizon),
                ),
            )
            .distinct()
        ).all()
        if not plan_ids:
            return 0
        plans = s.scalars(
            select(Plan)
            .where(Plan.id.in_(plan_ids), Plan.status == "current")
            .options(selectinload(Plan.installments), selectinload(Plan.invoices))
            .order_by(Plan.id)
            .with_for_update(skip_locked=True)
        ).all()
        companies = {
            c.id: c
            for c in s.scalars(
                select(Company).where(Company.id.in_({p.company_id for p in plans}))
            ).all()
        }
        invoice_ids = [pi.invoice_id for p in plans for pi in p.invoices]
        invoices_by_id = {
            i.id: i for i in s.scalars(select(Invoice).where(Invoice.id.in_(invoice_ids))).all()
        }
        paying_now = _installments_in_checkout(s, [p.id for p in plans], now)
        for plan in plans:
            company = companies[plan.company_id]
            today = local_date(now, company.timezone)
            invoices = [invoices_by_id[pi.invoice_id] for pi in plan.invoices]
            if reconcile(rt, s, plan, invoices) == "cancelled" or plan.status != "current":
                continue
            clearing = any(i.payment_pending for i in invoices)
            queued += _due(rt, s, company, plan, today, paying_now, clearing)
    return queued


def reconcile_company_plans(rt: Runtime, company_id: int) -> int:
    """Fit every running plan of a company to what its invoices owe now (the daily run, after
    the day's sync): a payment or credit made elsewhere shrinks the schedule the pages show,
    a voided invoice cancels its plan. Returns how many plans changed."""
    changed = 0
    with transaction(rt.sessions) as s:
        plans = s.scalars(
            select(Plan)
            .where(Plan.company_id == company_id, Plan.status.in_(("current", "paused")))
            .options(selectinload(Plan.installments), selectinload(Plan.invoices))
            .order_by(Plan.id)
            .with_for_update(skip_locked=True)
        ).all()
        ids = [pi.invoice_id for p in plans for pi in p.invoices]
        invoices = {i.id: i for i in s.scalars(select(Invoice).where(Invoice.id.in_(ids))).all()}
        for plan in plans:
            outcome = reconcile(rt, s, plan, [invoices[pi.invoice_id] for pi in plan.invoices])
            changed += outcome not in (rules.UNCHANGED, rules.BALANCE_GREW)
        # Offers nobody took up close, so the lists show what is live.
        lapsed = s.scalars(
            select(Plan)
            .where(
                Plan.company_id == company_id,
                Plan.status == "offered",
                Plan.offer_expires_at <= rt.clock.now(),
            )
            .options(selectinload(Plan.installments))
            .with_for_update(skip_locked=True)
        ).all()
        for plan in lapsed:
            end_plan(rt, s, plan, "cancelled", "the offer lapsed without a first payment")
    return changed


def _installments_in_checkout(s: Session, plan_ids: list[int], now: object) -> set[str]:
    """Installments the customer is paying themselves right now (an open Checkout for it)."""
    rows = s.scalars(
        select(CheckoutSessionRow.basis).where(
            CheckoutSessionRow.status == "open",
            CheckoutSessionRow.expires_at > now,
            CheckoutSessionRow.basis.like("plan:%"),
        )
    ).all()
    wanted = {str(p) for p in plan_ids}
    return {":".join(b.split(":")[1:3]) for b in rows if b.split(":")[1] in wanted}


def _due(
    rt: Runtime,
    s: Session,
    company: Company,
    plan: Plan,
    today: date,
    paying_now: set[str],
    clearing: bool = False,
) -> int:
    installments = installments_of(plan, (*UNSETTLED, "processing"))
    settled = {i.number for i in plan.installments if i.status not in UNSETTLED}
    noticed = {i.number for i in plan.installments if i.noticed_on is not None}
    by_number = {i.number: i for i in plan.installments}
    for due in plan_charges.notices_due(installments, settled, noticed, today):
        inst = by_number[due.number]
        inst.noticed_on = today
        _queue_mail(rt, s, company, plan, inst, "notice", key=f"plan-notice:{inst.id}")
    # In order: nothing later is charged while an earlier one is out or unpaid.
    if any(i.status == "processing" for i in plan.installments):
        return 0
    if clearing:
        # A payment of its invoices is still clearing (a bank debit through the pay link):
        # what it leaves owing is known only once it has, so nothing is charged meanwhile.
        return 0
    if plan.payment_method_id is None or plan.stripe_customer_id is None:
        return 0  # the first payment has not saved a method yet
    nxt = min(
        (i for i in plan.installments if i.status in UNSETTLED),
        key=lambda i: (i.due_on, i.number),
        default=None,
    )
    if nxt is None:
        return 0
    if f"{plan.id}:{nxt.number}" in paying_now:
        return 0  # the customer is paying it through their link right now
    if nxt.status == "scheduled" and nxt.due_on > today:
        return 0
    if nxt.status == "failed":
        assert nxt.first_failed_on is not None
        decision = plan_charges.after_failure(nxt.first_failed_on, nxt.failures, today)
        if decision.action == plan_charges.DEFAULT:
            _default(rt, s, company, plan, nxt, decision.reason)
            return 0
        if decision.action == plan_charges.WAIT:
            nxt.next_retry_on = decision.next_on
            return 0
    if nxt.amount_minor <= 0:
        nxt.status = "dropped"
        return 0
    nxt.attempts += 1
    nxt.status = "processing"
    key = charge_key(nxt, nxt.attempts)
    enqueue(
        s,
        rt.clock,
        company_id=company.id,
        kind=OutboxKind.PLAN_CHARGE,
        key=key,
        payload={"plan_id": plan.id, "installment_id": nxt.id, "attempt": nxt.attempts},
    )
    log_activity(
        s,
        rt.clock,
        company.id,
        "plan.charge_queued",
        f"Plan {plan.id}: charging installment {nxt.number} "
        f"({Money.from_minor(nxt.amount_minor, plan.currency).format()})"
        + (f", retry {nxt.attempts - 1}" if nxt.attempts > 1 else ""),
        plan_id=plan.id,
        outbox_key=key,
    )
    return 1


def _default(
    rt: Runtime, s: Session, company: Company, plan: Plan, inst: PlanInstallment, why: str
) -> None:
    end_plan(rt, s, plan, "defaulted", f"installment {inst.number} could not be collected ({why})")
    _queue_mail(rt, s, company, plan, inst, "defaulted", key=f"plan-defaulted:{plan.id}")


# --- The charge -------------------------------------------------------------------------------
def plan_charge(rt: Runtime, message: OutboxMessage) -> str:
    """The outbox handler: charge one installment to the plan's saved payment method."""
    p = message.payload
    with transaction(rt.sessions) as s:
        inst = s.get(PlanInstallment, p["installment_id"])
        plan = s.get(Plan, p["plan_id"])
        if inst is None or plan is None or inst.plan_id != plan.id:
            return "skipped: the plan is gone"
        if plan.status != "current":
            inst.status = "scheduled" if inst.status == "processing" else inst.status
            return f"skipped: the plan is {plan.status}"
        if inst.status != "processing" or inst.attempts != p["attempt"]:
            return "skipped: the installment moved on"
        link_fee_invoice(s, plan)
        invoices = plan_invoices(s, plan)
        amount = min(inst.amount_minor, plan_owed_minor(s, plan, invoices))
        if amount <= 0:
            inst.status = "dropped"
            return "skipped: nothing is owed any more"
        if amount != inst.amount_minor:
            inst.amount_minor = amount  # never more than the balance
        company = s.get(Company, plan.company_id)
        assert company is not None
        charge = OffSessionCharge(
            customer=plan.stripe_customer_id or "",
            payment_method=plan.payment_method_id or "",
            method_type=plan.payment_method_type or "card",
            amount=Money.from_minor(amount, plan.currency),
            idempotency_key=message.key,
            metadata={
                "arbridge_company": str(company.id),
                "arbridge_invoices": ",".join(str(i.id) for i in invoices if i.is_open),
                PLAN_KEY: str(plan.id),
                INSTALLMENT_KEY: str(inst.number),
            },
            description=f"{company.name}: payment plan {plan.id}, installment {inst.number}",
        )
    gateway = gateway_for_row(rt, message.company_id)
    result: ChargeResult | None = None
    if message.attempts > 1:
        # A second try of this very row (after a crash, or an error): its first answer may be
        # lost, and Stripe forgets idempotency keys after a day. Ask for what this key made.
        result = gateway.find_off_session_charge(charge.customer, [message.key])
    if result is None:
        try:
            result = gateway.charge_off_session(charge)
        except Rejected as e:
            # Refused outright (the saved method was removed, say): a failed attempt.
            result = ChargeResult("declined", None, code="refused", message=str(e))
    with transaction(rt.sessions) as s:
        apply_charge_result(rt, s, p["installment_id"], charge.amount, result)
    return result.payment_intent or result.outcome


def apply_charge_result(
    rt: Runtime, s: Session, installment_id: int, amount: Money, result: ChargeResult
) -> None:
    """Record what Stripe answered to a charge, through the payment state machine."""
    from arbridge.services.payments.recording import record

    inst = s.get(PlanInstallment, installment_id, with_for_update=True)
    assert inst is not None
    plan = inst.plan
    invoices = plan_invoices(s, plan)
    if result.payment_intent is None:
        # No PaymentIntent to hang it on: the attempt failed before Stripe made one.
        reason = plain_failure({"message": result.message}) or "the charge was refused"
        installment_failed(rt, s, plan, inst, reason)
        return
    status = {
        "succeeded": "succeeded",
        "processing": "pending",
        "requires_action": "failed",
        "declined": "failed",
    }[result.outcome]
    reason = plain_failure(
        {"code": result.code, "decline_code": result.decline_code, "message": result.message}
    )
    record(
        rt,
        s,
        Observed(
            payment_intent=result.payment_intent,
            status=status,
            company_id=plan.company_id,
            invoice_ids=tuple(i.id for i in invoices if i.is_open),
            amount=amount,
            method=plan.payment_method_type,
            reason=reason if status == "failed" else None,
            plan_id=plan.id,
            installment=inst.number,
        ),
    )


# --- What a payment's outcome does to its installment -----------------------------------------
def link_installment(s: Session, row: CollectedPayment, seen: Observed) -> PlanInstallment | None:
    """The installment a payment is for (named in its metadata), checked against its company."""
    if row.plan_installment_id is not None:
        return s.get(PlanInstallment, row.plan_installment_id)
    if seen.plan_id is None or seen.installment is None:
        return None
    inst = s.scalar(
        select(PlanInstallment)
        .join(Plan, Plan.id == PlanInstallment.plan_id)
        .where(
            PlanInstallment.plan_id == seen.plan_id,
            PlanInstallment.number == seen.installment,
            Plan.company_id == row.company_id,
        )
    )
    if inst is not None:
        row.plan_installment_id = inst.id
    return inst


def installment_paid_or_failed(
    rt: Runtime, s: Session, row: CollectedPayment, new: str, reason: str | None
) -> None:
    """A plan payment moved to `new` (pending, succeeded, failed): move its installment."""
    inst = s.get(PlanInstallment, row.plan_installment_id, with_for_update=True)
    if inst is None:
        return
    plan = inst.plan
    now = rt.clock.now()
    if row.checkout_session_id and (
        (plan.payment_method_id is None and new == "pending") or new == "succeeded"
    ):
        # The plan's Checkouts all save the method used: the first one's, and the one a
        # customer pays a failed installment with, which replaces the one that failed (a
        # bank debit only once it has cleared).
        _save_method(rt, s, plan, row.checkout_session_id)
    if new == "pending":
        inst.status, inst.payment_intent_id = "processing", row.payment_intent_id
        if plan.status == "offered":
            _start(rt, s, plan)
        return
    if new == "succeeded":
        inst.status, inst.paid_at = "paid", now
        inst.payment_intent_id, inst.next_retry_on, inst.last_error = (
            row.payment_intent_id,
            None,
            None,
        )
        inst.amount_minor = row.amount_minor
        if plan.status == "offered":
            _start(rt, s, plan)
        log_activity(
            s,
            rt.clock,
            plan.company_id,
            "plan.installment_paid",
            f"Plan {plan.id}: installment {inst.number} paid "
            f"({Money.from_minor(row.amount_minor, row.currency).format()})",
            plan_id=plan.id,
            payment_intent=row.payment_intent_id,
        )
        if plan.status in ("current", "paused") and not any(
            i.status in (*UNSETTLED, "processing") for i in plan.installments
        ):
            end_plan(rt, s, plan, "completed", "every installment was paid")
        return
    if new == "failed":
        if inst.payment_intent_id == row.payment_intent_id and inst.status == "failed":
            return  # this charge's failure is counted already
        inst.payment_intent_id = row.payment_intent_id
        installment_failed(rt, s, plan, inst, reason or row.failure_reason or "the charge failed")


def installment_failed(
    rt: Runtime, s: Session, plan: Plan, inst: PlanInstallment, reason: str
) -> None:
    company = s.get(Company, plan.company_id)
    assert company is not None
    today = local_date(rt.clock.now(), company.timezone)
    inst.failures += 1
    inst.first_failed_on = inst.first_failed_on or today
    inst.last_error = reason
    inst.status = "failed"
    if plan.status == "offered":
        # The first payment (in Checkout) failed: the plan never started.
        inst.next_retry_on = None
        return
    decision = plan_charges.after_failure(inst.first_failed_on, inst.failures, today)
    log_activity(
        s,
        rt.clock,
        company.id,
        "plan.charge_failed",
        f"Plan {plan.id}: installment {inst.number} failed ({reason}); {decision.reason}",
        plan_id=plan.id,
    )
    if decision.action == plan_charges.DEFAULT:
        _default(rt, s, company, plan, inst, decision.reason)
        return
    inst.next_retry_on = decision.next_on
    _queue_mail(rt, s, company, plan, inst, "failed", key=f"plan-failed:{inst.id}:{inst.failures}")


def _start(rt: Runtime, s: Session, plan: Plan) -> None:
    """The first payment is made: the plan runs, and any other unstarted plan for its invoices
    (a second tab, an older offer) is withdrawn. If another plan started first, this one does
    not: its payment stays a partial payment of the invoices."""
    ids = [pi.invoice_id for pi in plan.invoices]
    rivals = (
        s.scalars(
            select(Plan)
            .join(PlanInvoice, PlanInvoice.plan_id == Plan.id)
            .where(PlanInvoice.invoice_id.in_(ids), Plan.id != plan.id)
            .where(Plan.status.in_(("offered", "current", "paused")))
            .with_for_update()
        )
        .unique()
        .all()
    )
    if any(r.status in ("current", "paused") for r in rivals):
        end_plan(rt, s, plan, "cancelled", "another plan for the same invoices started first")
        return
    for rival in rivals:
        end_plan(rt, s, rival, "cancelled", f"replaced by plan {plan.id}")
    plan.status, plan.updated_at = "current", rt.clock.now()
    if plan.fee_minor:
        _charge_plan_fee(rt, s, plan)
    customer = s.get(Customer, plan.customer_id)
    log_activity(
        s,
        rt.clock,
        plan.company_id,
        "plan.started",
        f"Plan {plan.id} for {customer.name if customer else 'a customer'} started: its first "
        "payment is made and later installments are charged on their dates",
        plan_id=plan.id,
    )


def _charge_plan_fee(rt: Runtime, s: Session, plan: Plan) -> None:
    """The plan's fee goes into the books as an invoice of its own, once (the late fees' write:
    its assessment's unique key, the ledger's idempotency key), so the payments that cover it
    land on an invoice rather than as credit."""
    conn = ledger_connection(s, plan.company_id)
    customer = s.get(Customer, plan.customer_id)
    invoices = plan_invoices(s, plan)
    if conn is None or conn.status != "active" or customer is None or not invoices:
        return
    company = s.get(Company, plan.company_id)
    assert company is not None
    today = local_date(rt.clock.now(), company.timezone)
    claim_fee_invoice(
        s,
        rt.clock,
        FeeClaim(
            company_id=plan.company_id,
            connection_id=conn.id,
            invoice_id=invoices[0].id,
            customer_id=plan.customer_id,
            customer_source_id=customer.source_id,
            kind="plan_fee",
            period=plan_fee_period(plan),
            amount=Money.from_minor(plan.fee_minor, plan.currency),
            description=f"Installment plan fee (plan {plan.id})",
            basis=f"the fee of the installment plan agreed on {day_text(today)}",
            assessed_on=today,
            due_on=max(i.due_on for i in plan.installments),
            reference=", ".join(i.number or i.source_id for i in invoices),
        ),
    )


def _save_method(rt: Runtime, s: Session, plan: Plan, session_id: str) -> None:
    """Keep the payment method the first Checkout saved, for the later installments."""
    company = s.get(Company, plan.company_id)
    assert company is not None
    gateway = gateway_for(rt, s, company)
    if gateway is None:
        return
    method = gateway.saved_payment_method(session_id)
    if method is None:
        return
    plan.payment_method_id, plan.payment_method_type = method.id, method.type
    brand = method.brand or ("Bank account" if method.type == "us_bank_account" else "Card")
    plan.payment_method_label = (
        f"{brand.title()} ending {method.last4}"[:80] if method.last4 else brand[:80]
    )
    if method.customer and not plan.stripe_customer_id:
        plan.stripe_customer_id = method.customer


# --- The customer's emails --------------------------------------------------------------------
def _queue_mail(
    rt: Runtime,
    s: Session,
    company: Company,
    plan: Plan,
    inst: PlanInstallment,
    what: str,
    *,
    key: str,
) -> None:
    customer = s.get(Customer, plan.customer_id)
    to = customer_email(s, plan.customer_id) if customer is not None else None
    if customer is None or not to:
        return
    invoices = plan_invoices(s, plan)
    link = pay_links.new_link(
        s, rt.clock, invoice=invoices[0] if invoices else None, customer=customer
    )
    enqueue(
        s,
        rt.clock,
        company_id=company.id,
        kind=OutboxKind.EMAIL,
        key=key,
        payload={
            "mail": MAIL,
            "what": what,
            "to": to,
            "customer_id": customer.id,
            "plan_id": plan.id,
            "installment_id": inst.id,
            "pay_link_id": link.id,
        },
    )


def prepare_plan_mail(rt: Runtime, message: OutboxMessage) -> Prepared | str:
    """A plan's email, written as it goes out from the plan's state then: a notice no longer
    due (paid meanwhile, plan ended) or a failure already put right is not sent."""
    p = message.payload
    with transaction(rt.sessions) as s:
        plan = s.get(Plan, p["plan_id"])
        inst = s.get(PlanInstallment, p["installment_id"])
        if plan is None or inst is None:
            return "skipped: the plan is gone"
        what = p["what"]
        if what == "notice" and (plan.status != "current" or inst.status != "scheduled"):
            return "skipped: the installment is no longer waiting for its date"
        if what == "failed" and (plan.status != "current" or inst.status != "failed"):
            return "skipped: the installment is no longer failed"
        company = s.get(Company, plan.company_id)
        assert company is not None
        link = s.get(PayToken, p["pay_link_id"])
        token = (
            pay_links.mint(s, rt.clock, link.id, pay_links.DEFAULT_STATEMENT_LINK_DAYS)
            if link
            else None
        )
        if token is None:
            return "skipped: the business withdrew the payment link"
        amount = Money.from_minor(inst.amount_minor, plan.currency).format()
        where = f"{rt.settings.base_url}/pay/{token}/plan"
        method = plan.payment_method_label or "your saved payment method"
        label = (
            "the deposit"
            if inst.number == rules.DEPOSIT
            else f"installment {inst.number} of {plan.installment_count}"
        )
        if what == "notice":
            subject = (
                f"{company.name}: your next installment of {amount} on {day_text(inst.due_on)}"
            )
            text = (
                f"This is a reminder that {label} of your payment plan with {company.name}, "
                f"{amount}, will be charged to {method} on {day_text(inst.due_on)}.\n\n"
                f"There is nothing to do. To see your plan, pay early or cancel future charges:\n\n{where}\n"
            )
        elif what == "failed":
            subject = f"{company.name}: your installment of {amount} did not go through"
            retry = day_text(inst.next_retry_on) if inst.next_retry_on else "soon"
            text = (
                f"We could not collect {label} of your payment plan with {company.name} "
                f"({amount}) from {method}: {inst.last_error or 'the payment was declined'}.\n\n"
                f"You can pay it yourself now, by card or bank account, here:\n\n{where}\n\n"
                f"Otherwise we will try {method} again on {retry}. If it cannot be collected, "
                "the plan ends and the whole balance becomes due.\n"
            )
        else:  # defaulted
            subject = f"{company.name}: your payment plan has ended"
            text = (
                f"We could not collect {label} of your payment plan with {company.name} after "
                f"several tries, so the plan has ended and the remaining balance is due now. "
                f"You can pay it here:\n\n{where}\n\nIf something has changed, reply to this "
                f"email and {company.name} will help.\n"
            )
        s.expunge(company)
    return Prepared(
        company=company,
        to=p["to"],
        rendered=Rendered(subject, text, ""),
        kind=MAIL,
        customer_id=p.get("customer_id"),
    )
