"""Getting paid end to end on the demo company, through the simulated Stripe: the same quote,
checkout, webhook ingestion, event handling, write-back and refund code real Stripe uses."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from arbridge.connectors.stripe.simulated import sign
from arbridge.errors import Rejected
from arbridge.money import Money
from arbridge.services.payments.checkout import handle_checkout_return, start_checkout
from arbridge.services.payments.events import ingest_stripe
from arbridge.services.payments.quote import quote
from arbridge.services.payments.refunds import refund_overpayment
from arbridge.services.payments.simulated import simulated_stripe
from arbridge.services.payments.webhook_secrets import simulated_webhook_secret
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Activity,
    CheckoutSessionRow,
    CollectedPayment,
    Company,
    Invoice,
    OutboxMessage,
    WebhookEvent,
)
from arbridge.sync.store import find_pay_token, issue_pay_token, ledger_connection, open_invoices
from arbridge.worker import drain
from tests.conftest import ON_POSTGRES, sync_now
from tests.race_condition import run_before

# The step between a checkout's look for an open session and its saving the new one.
ASKS_STRIPE = "arbridge.connectors.stripe.simulated.SimulatedStripe.create_checkout_session"


@pytest.fixture
def usd_invoice(rt, demo_company):
    with rt.sessions() as s:
        inv = next(
            i
            for i in open_invoices(s, demo_company.id)
            if i.currency == "USD" and i.open_balance_minor == i.total_minor
        )
        s.expunge(inv)
    return inv


def token_for(rt, invoice) -> str:
    with transaction(rt.sessions) as s:
        return issue_pay_token(s, rt.clock, s.get(Invoice, invoice.id))


def session_id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def invoice(rt, invoice_id) -> Invoice:
    with rt.sessions() as s:
        return s.get(Invoice, invoice_id)


def collected(rt) -> list[CollectedPayment]:
    with rt.sessions() as s:
        return list(s.scalars(select(CollectedPayment)))


def ledger_payments(rt, company, reference_prefix="pi_sim_"):
    with rt.sessions() as s:
        conn = ledger_connection(s, company.id)
    state = rt.demo_ledger(conn.tenant_id).read()
    return [p for p in state["Payment"] if str(p.get("reference", "")).startswith(reference_prefix)]


def ledger_invoice(rt, company, source_id):
    with rt.sessions() as s:
        conn = ledger_connection(s, company.id)
    ledger = rt.demo_ledger(conn.tenant_id)
    return ledger.find(ledger.read(), "Invoice", source_id)


def pay(rt, token, method="card", outcome="succeed") -> str:
    url = start_checkout(rt, token)
    return simulated_stripe(rt).complete(session_id(url), method, outcome)


def test_card_payment_marks_the_invoice_paid_and_posts_to_the_ledger_once(
    rt, demo_company, usd_invoice
):
    token = token_for(rt, usd_invoice)
    pay(rt, token)
    assert invoice(rt, usd_invoice.id).status == "open"  # stored, not yet processed
    events, sent = drain(rt)
    assert events == 1 and sent >= 1
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "paid" and inv.open_balance_minor == 0 and not inv.payment_pending
    [row] = collected(rt)
    assert row.status == "succeeded" and row.amount_minor == usd_invoice.open_balance_minor
    assert row.customer_id == usd_invoice.customer_id and row.method == "card"
    [posted] = ledger_payments(rt, demo_company)
    assert Decimal(posted["amount"]) == usd_invoice.balance.amount
    assert ledger_invoice(rt, demo_company, usd_invoice.source_id)["status"] == "PAID"
    with rt.sessions() as s:
        kinds = dict(s.execute(select(OutboxMessage.key, OutboxMessage.kind)).tuples().all())
    assert any(k.startswith("receipt:") for k in kinds) and any(
        k.startswith("owner:") for k in kinds
    )
    # With no SMTP configured the mail lands in the owner's in-app mailbox: a receipt to the
    # customer's contact and a note to the owner.
    from arbridge.sync.model import MailMessage

    drain(rt)
    with rt.sessions() as s:
        mails = {m.kind: m for m in s.scalars(select(MailMessage))}
    assert "receipt" in mails and str(usd_invoice.number) in mails["receipt"].text_body
    assert mails["owner"].to_addr == "owner@acme-supply.example"
    # The sync afterwards agrees with what we recorded.
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    sync_now(rt, conn)
    assert invoice(rt, usd_invoice.id).status == "paid"


def test_duplicate_deliveries_and_the_return_racing_the_webhook_record_once(
    rt, demo_company, usd_invoice
):
    token = token_for(rt, usd_invoice)
    url = start_checkout(rt, token)
    sid = session_id(url)
    delivered = []
    sim = simulated_stripe(rt)
    sim.deliver = lambda body, header: (
        delivered.append((body, header)) or ingest_stripe(rt, body, header)
    )
    sim.complete(sid, "card", "succeed")
    # The customer's browser comes back before the worker has seen the webhook.
    handle_checkout_return(rt, token, sid)
    assert invoice(rt, usd_invoice.id).status == "paid"
    body, header = delivered[0]
    assert ingest_stripe(rt, body, header).new == 0  # Stripe retries the delivery
    drain(rt)
    drain(rt)
    assert len(collected(rt)) == 1 and len(ledger_payments(rt, demo_company)) == 1
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(WebhookEvent)) == 1
        assert (
            s.scalar(
                select(func.count())
                .select_from(Activity)
                .where(Activity.kind == "payment.succeeded")
            )
            == 1
        )


def test_ach_is_pending_for_days_then_succeeds(rt, demo_company, usd_invoice, clock, client):
    token = token_for(rt, usd_invoice)
    pay(rt, token, method="us_bank_account")
    drain(rt)
    inv = invoice(rt, usd_invoice.id)
    assert (
        inv.status == "open"
        and inv.payment_pending
        and inv.open_balance_minor == usd_invoice.open_balance_minor
    )
    assert collected(rt)[0].status == "pending"
    page = client.get(f"/pay/{token}")
    assert b"Payment pending" in page.data and b'id="pay"' not in page.data
    with pytest.raises(Rejected, match="pending"):
        start_checkout(rt, token)  # no second charge while the first clears
    assert ledger_payments(rt, demo_company) == []  # nothing posted while pending
    clock.advance(timedelta(seconds=21))
    drain(rt)
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "paid" and not inv.payment_pending
    assert collected(rt)[0].status == "succeeded" and len(ledger_payments(rt, demo_company)) == 1


def test_ach_failure_days_later_reopens_and_tells_the_owner(rt, demo_company, usd_invoice, clock):
    token = token_for(rt, usd_invoice)
    pay(rt, token, method="us_bank_account", outcome="fail")
    drain(rt)
    clock.advance(timedelta(seconds=21))
    drain(rt)
    inv = invoice(rt, usd_invoice.id)
    assert (
        inv.status == "open"
        and not inv.payment_pending
        and inv.open_balance_minor == usd_invoice.open_balance_minor
    )
    assert collected(rt)[0].status == "failed" and ledger_payments(rt, demo_company) == []
    with rt.sessions() as s:
        assert (
            s.scalar(select(OutboxMessage).where(OutboxMessage.key.like("owner:%payment-failed%")))
            is not None
        )
    # The customer can try again with the same link.
    assert start_checkout(rt, token).startswith("http")


def test_a_link_paid_again_after_its_bank_debit_failed_handed_out_the_completed_session(
    rt, demo_company, usd_invoice, clock
):
    token = token_for(rt, usd_invoice)
    first = start_checkout(rt, token)
    simulated_stripe(rt).complete(session_id(first), "us_bank_account", "fail")
    drain(rt)  # the webhook alone: the customer never came back to the return page
    clock.advance(timedelta(seconds=21))
    drain(rt)
    assert invoice(rt, usd_invoice.id).status == "open"
    again = start_checkout(rt, token)
    assert session_id(again) != session_id(first)
    simulated_stripe(rt).complete(session_id(again), "card", "succeed")
    drain(rt)
    assert invoice(rt, usd_invoice.id).status == "paid"


def _event(kind: str, obj: dict, n: int) -> dict:
    return {
        "id": f"evt_test_{n}",
        "object": "event",
        "type": kind,
        "created": 1764000000 + n,
        "livemode": False,
        "data": {"object": obj},
    }


def deliver(rt, event: dict) -> None:
    body = json.dumps(event).encode()
    header = sign(body, simulated_webhook_secret(rt), int(rt.clock.now().timestamp()))
    ingest_stripe(rt, body, header)


def completed_session(rt, token, payment_status="paid") -> dict:
    url = start_checkout(rt, token)
    sim = simulated_stripe(rt)
    page = sim.page(session_id(url))
    return {
        "id": page["id"],
        "object": "checkout.session",
        "payment_intent": page["payment_intent"],
        "amount_total": page["amount"],
        "currency": page["currency"],
        "metadata": page["metadata"],
        "payment_method_types": ["us_bank_account"],
        "payment_status": payment_status,
        "status": "complete",
    }


@pytest.mark.parametrize("order", ["in order", "success first", "twice each, reversed"])
def test_ach_events_in_any_order_leave_the_same_result(rt, demo_company, usd_invoice, order):
    token = token_for(rt, usd_invoice)
    session = completed_session(rt, token, "unpaid")
    events = [
        _event("checkout.session.completed", session, 1),
        _event(
            "payment_intent.processing",
            {
                "id": session["payment_intent"],
                "object": "payment_intent",
                "amount": session["amount_total"],
                "currency": "usd",
                "metadata": session["metadata"],
                "payment_method_types": ["us_bank_account"],
                "status": "processing",
            },
            2,
        ),
        _event(
            "checkout.session.async_payment_succeeded", {**session, "payment_status": "paid"}, 3
        ),
    ]
    if order == "success first":
        events = events[::-1]
    elif order.startswith("twice"):
        events = (events + events)[::-1]
    for e in events:
        deliver(rt, e)
        drain(rt)
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "paid" and not inv.payment_pending and inv.open_balance_minor == 0
    assert [p.status for p in collected(rt)] == ["succeeded"]
    assert len(ledger_payments(rt, demo_company)) == 1


def test_a_full_refund_reopens_the_invoice_and_voids_the_ledger_payment(
    rt, demo_company, usd_invoice
):
    token = token_for(rt, usd_invoice)
    pay(rt, token)
    drain(rt)
    row = collected(rt)[0]
    simulated_stripe(rt).refund(row.payment_intent_id, None, "refund-test")
    drain(rt)
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "open" and inv.open_balance_minor == usd_invoice.open_balance_minor
    assert collected(rt)[0].status == "refunded"
    [posted] = ledger_payments(rt, demo_company)
    assert posted["status"] == "VOIDED"
    assert (
        Decimal(ledger_invoice(rt, demo_company, usd_invoice.source_id)["balance"])
        == usd_invoice.balance.amount
    )


def test_a_dispute_weeks_later_reverses_the_payment(rt, demo_company, usd_invoice, clock):
    token = token_for(rt, usd_invoice)
    pay(rt, token)
    drain(rt)
    row = collected(rt)[0]
    clock.advance(timedelta(days=45))
    dispute = {
        "id": "dp_1Pgc71B7WZ01zgkWMevJiAUx",
        "object": "dispute",
        "amount": row.amount_minor,
        "charge": "ch_1PgafuB7WZ01zgkWXYmPNZs8",
        "currency": "usd",
        "payment_intent": row.payment_intent_id,
        "reason": "debit_not_authorized",
        "status": "needs_response",
    }
    deliver(rt, _event("charge.dispute.created", dispute, 9))
    deliver(rt, _event("charge.dispute.created", dispute, 9))
    drain(rt)
    assert collected(rt)[0].status == "disputed"
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "open" and inv.open_balance_minor == usd_invoice.open_balance_minor
    assert ledger_payments(rt, demo_company)[0]["status"] == "VOIDED"


def test_a_refund_that_overtakes_the_success_waits_for_it(rt, demo_company, usd_invoice, clock):
    token = token_for(rt, usd_invoice)
    session = completed_session(rt, token)
    deliver(
        rt,
        _event(
            "charge.refunded",
            {
                "id": "ch_x",
                "object": "charge",
                "amount": session["amount_total"],
                "amount_refunded": session["amount_total"],
                "currency": "usd",
                "payment_intent": session["payment_intent"],
            },
            5,
        ),
    )
    drain(rt)
    with rt.sessions() as s:
        assert s.scalar(select(WebhookEvent.status)) == "pending"  # retried later, not lost
    deliver(rt, _event("checkout.session.completed", session, 4))
    drain(rt)
    clock.advance(timedelta(minutes=5))
    drain(rt)
    assert collected(rt)[0].status == "refunded"
    assert invoice(rt, usd_invoice.id).status == "open"


def test_paid_elsewhere_meanwhile_is_an_overpayment_with_a_one_click_refund(
    rt, demo_company, usd_invoice
):
    token = token_for(rt, usd_invoice)
    url = start_checkout(rt, token)
    # The customer also mails a cheque; the bookkeeper records it and arbridge syncs.
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    from arbridge.connectors.base import PaymentLine, PaymentWriteBack

    rt.connector_for(conn).post_payment(
        PaymentWriteBack(
            "cheque-1",
            usd_invoice.customer.source_id
            if False
            else ledger_invoice(rt, demo_company, usd_invoice.source_id)["contactId"],
            "USD",
            usd_invoice.balance.amount,
            rt.clock.now().date(),
            "CHK 1001",
            [PaymentLine(usd_invoice.source_id, usd_invoice.balance.amount)],
        )
    )
    sync_now(rt, conn)
    simulated_stripe(rt).complete(session_id(url), "card", "succeed")
    drain(rt)
    row = collected(rt)[0]
    assert row.status == "succeeded" and row.unapplied_minor == usd_invoice.open_balance_minor
    assert ledger_payments(rt, demo_company) == []  # nothing left to apply in the ledger
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        assert refund_overpayment(rt, s, company, row.id).minor == usd_invoice.open_balance_minor
    drain(rt)  # the refund goes to Stripe
    drain(rt)  # Stripe's charge.refunded comes back
    row = collected(rt)[0]
    assert row.refunded_minor == usd_invoice.open_balance_minor and row.status == "refunded"
    assert invoice(rt, usd_invoice.id).status == "paid"  # the cheque still paid it


def test_early_payment_discount_is_charged_and_posted_so_the_invoice_closes(
    rt, demo_company, clock
):
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        company.settings = {"payments": {"discount_percent": "2", "discount_days": 10}}
        inv = next(
            i
            for i in open_invoices(s, company.id)
            if i.currency == "USD"
            and i.open_balance_minor == i.total_minor
            and (clock.now().date() - i.issued_on).days <= 5
        )
        s.expunge(inv)
    token = token_for(rt, inv)
    with rt.sessions() as s:
        q = quote(rt, s, find_pay_token(s, token))
    expected_discount = (inv.balance.amount * Decimal("0.02")).quantize(Decimal("0.01"))
    assert q.discount_total.amount == expected_discount
    assert q.amount.amount == inv.balance.amount - expected_discount
    pay(rt, token)
    drain(rt)
    assert invoice(rt, inv.id).status == "paid" and invoice(rt, inv.id).open_balance_minor == 0
    ledger_inv = ledger_invoice(rt, demo_company, inv.source_id)
    assert ledger_inv["status"] == "PAID" and Decimal(ledger_inv["balance"]) == 0
    [posted] = ledger_payments(rt, demo_company)
    assert Decimal(posted["amount"]) == q.amount.amount


def test_no_discount_after_the_window(rt, demo_company, clock):
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        company.settings = {"payments": {"discount_percent": "2", "discount_days": 10}}
        inv = next(
            i for i in open_invoices(s, company.id) if (clock.now().date() - i.issued_on).days > 11
        )
        s.expunge(inv)
    token = token_for(rt, inv)
    with rt.sessions() as s:
        q = quote(rt, s, find_pay_token(s, token))
    assert q.discount is None and q.amount == inv.balance


def test_checkout_session_is_reused_until_the_balance_changes(rt, demo_company, usd_invoice):
    token = token_for(rt, usd_invoice)
    first = start_checkout(rt, token)
    assert start_checkout(rt, token) == first
    with transaction(rt.sessions) as s:
        s.get(Invoice, usd_invoice.id).ledger_balance_minor -= 100
    second = start_checkout(rt, token)
    assert second != first
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CheckoutSessionRow)) == 2


def test_ledger_discount_terms_apply_when_the_owner_set_none(rt, demo_company, clock):
    with transaction(rt.sessions) as s:
        inv = next(
            i
            for i in open_invoices(s, demo_company.id)
            if i.currency == "USD" and (clock.now().date() - i.issued_on).days <= 5
        )
        inv.terms = "2% 10 Net 30"
        s.flush()
        s.expunge(inv)
    token = token_for(rt, inv)
    with rt.sessions() as s:
        q = quote(rt, s, find_pay_token(s, token))
    assert q.discount is not None and q.discount.percent == Decimal(2)
    assert q.discount.ends_on == inv.issued_on + timedelta(days=10)


def test_a_sync_before_the_write_back_lands_never_reopens_a_paid_invoice(
    rt, demo_company, usd_invoice
):
    from arbridge.services.bootstrap import outbox_handlers, webhook_handlers
    from arbridge.sync.outbox import deliver
    from arbridge.webhooks.dispatch import process_pending

    token = token_for(rt, usd_invoice)
    pay(rt, token)
    process_pending(rt.sessions, rt.clock, webhook_handlers(rt))  # recorded; the write-back waits
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    clock_step = timedelta(minutes=1)
    rt.clock.advance(clock_step)
    sync_now(rt, conn, full=True)
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "paid" and inv.open_balance_minor == 0
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))  # now the ledger has it
    sync_now(rt, conn, full=True)
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "paid" and inv.open_balance_minor == 0
    assert len(ledger_payments(rt, demo_company)) == 1


def test_two_presses_at_once_open_one_session(rt, demo_company, usd_invoice):
    """Three presses, each arriving after the one before has looked for an open session and
    before it has saved the one Stripe opened: all three ask Stripe, none finds another's row."""
    token = token_for(rt, usd_invoice)
    urls, errors, waiting = [], [], []

    def press(*_asked):
        try:
            urls.append(start_checkout(rt, token))
        except Exception as e:
            errors.append(e)

    def another(*_asked):
        if ON_POSTGRES:  # it waits for the invoice's row this press holds: a thread of its own
            waiting.append(threading.Thread(target=press))
            waiting[-1].start()
        else:
            press()

    with run_before(ASKS_STRIPE, another), run_before(ASKS_STRIPE, another):
        press()
    for t in waiting:
        t.join(30)
    assert errors == [] and len(urls) == 3 and len(set(urls)) == 1
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CheckoutSessionRow)) == 1


def test_from_a_reminders_link_to_a_paid_invoice_in_the_ledger(rt, demo_company, client):
    """The demo's promise: open a reminder's link, pay, see it paid here and in the ledger."""
    import re

    from arbridge.services.reminders.run import run_reminders
    from arbridge.sync.model import MailMessage

    run_reminders(rt, demo_company)  # 09:00 in Chicago: inside the sending window
    drain(rt)
    with rt.sessions() as s:
        mail = next(m for m in s.scalars(select(MailMessage).where(MailMessage.kind == "reminder")))
    link = re.search(r"https?://\S+/pay/[\w-]+", mail.text_body).group(0)
    token = link.rsplit("/", 1)[-1]
    with rt.sessions() as s:
        link_row = find_pay_token(s, token)
        inv = s.get(Invoice, link_row.invoice_id) if link_row.invoice_id else None
    page = client.get(f"/pay/{token}")
    assert page.status_code == 200 and b'id="pay"' in page.data
    pay(rt, token)
    drain(rt)
    if inv is not None:
        assert invoice(rt, inv.id).status == "paid"
    [posted] = ledger_payments(rt, demo_company)
    assert posted["status"] == "POSTED"


def applied(rt, row) -> int:
    with rt.sessions() as s:
        return sum(a.amount_minor for a in s.get(CollectedPayment, row.id).allocations)


def _cheque(rt, company, invoice_source_id, amount: Decimal, key: str) -> None:
    """The bookkeeper records a cheque in the ledger itself (arbridge does not sync meanwhile)."""
    from arbridge.connectors.base import PaymentLine, PaymentWriteBack

    with rt.sessions() as s:
        conn = ledger_connection(s, company.id)
    rt.connector_for(conn).post_payment(
        PaymentWriteBack(
            key,
            ledger_invoice(rt, company, invoice_source_id)["contactId"],
            "USD",
            amount,
            rt.clock.now().date(),
            f"CHK {key}",
            [PaymentLine(invoice_source_id, amount)],
        )
    )


def test_a_write_back_refused_because_the_ledger_settled_the_invoice_becomes_an_overpayment(
    rt, demo_company, usd_invoice
):
    token = token_for(rt, usd_invoice)
    url = start_checkout(rt, token)
    # While the customer is on the checkout page, the bookkeeper records their cheque.
    _cheque(rt, demo_company, usd_invoice.source_id, usd_invoice.balance.amount, "cheque-2")
    simulated_stripe(rt).complete(session_id(url), "card", "succeed")
    drain(rt)
    drain(rt)
    row = collected(rt)[0]
    # Nothing collected ends up in neither place: not in the ledger, so an overpayment here.
    assert ledger_payments(rt, demo_company) == []
    assert row.status == "succeeded" and row.unapplied_minor == row.amount_minor
    assert applied(rt, row) == 0
    with rt.sessions() as s:
        written = s.scalar(select(OutboxMessage).where(OutboxMessage.key.like("ledger_payment:%")))
        assert written.status == "sent", written.last_error
        kinds = [a.kind for a in s.scalars(select(Activity))]
        assert "payment.overpaid" in kinds and "outbox.failed" not in kinds
        assert s.scalar(
            select(OutboxMessage)
            .where(OutboxMessage.key.like(f"owner:%{row.payment_intent_id}%"))
            .where(OutboxMessage.payload["subject"].as_string() == "A customer overpaid")
        )
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "paid" and inv.open_balance_minor == 0  # the cheque paid it
    # The owner refunds it in one click.
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        assert refund_overpayment(rt, s, company, row.id).minor == row.amount_minor
    drain(rt)
    drain(rt)
    assert collected(rt)[0].refunded_minor == row.amount_minor
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    sync_now(rt, conn)
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "paid" and inv.open_balance_minor == 0


def test_a_write_back_refused_after_a_partial_cheque_applies_what_fits_and_the_rest_is_overpaid(
    rt, demo_company, usd_invoice
):
    token = token_for(rt, usd_invoice)
    url = start_checkout(rt, token)
    part = Decimal("10.00")
    _cheque(rt, demo_company, usd_invoice.source_id, part, "cheque-3")
    simulated_stripe(rt).complete(session_id(url), "card", "succeed")
    drain(rt)
    drain(rt)
    row = collected(rt)[0]
    [posted] = ledger_payments(rt, demo_company)
    fits = usd_invoice.balance.amount - part
    assert Decimal(posted["amount"]) == fits
    assert ledger_invoice(rt, demo_company, usd_invoice.source_id)["status"] == "PAID"
    assert row.unapplied_minor == 1000
    assert applied(rt, row) == row.amount_minor - 1000
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "paid" and inv.open_balance_minor == 0
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    sync_now(rt, conn)
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "paid" and inv.open_balance_minor == 0
    # A refund of the rest takes back only the overpayment: the invoice stays paid.
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        assert refund_overpayment(rt, s, company, row.id).minor == 1000
    drain(rt)
    drain(rt)
    assert invoice(rt, usd_invoice.id).status == "paid"
    assert len(ledger_payments(rt, demo_company)) == 1


class WriteBackDuringTheRead:
    """The ledger's connector, with the worker's write-back carried out after the sync has read
    the invoices and before it saves them: the race, made deterministic."""

    def __init__(self, inner, write_back) -> None:
        self.inner, self.write_back, self.source = inner, write_back, inner.source

    def pull(self, entity, cursor):
        for page in self.inner.pull(entity, cursor):
            if entity == "invoices" and self.write_back is not None:
                self.write_back()
                self.write_back = None
            yield page

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_sync_that_read_the_ledger_before_the_write_back_landed_never_reopens_the_invoice(
    rt, demo_company, usd_invoice
):
    from arbridge.services.bootstrap import outbox_handlers, webhook_handlers
    from arbridge.sync.outbox import deliver
    from arbridge.sync.runner import sync_connection
    from arbridge.webhooks.dispatch import process_pending

    token = token_for(rt, usd_invoice)
    pay(rt, token)
    process_pending(rt.sessions, rt.clock, webhook_handlers(rt))  # recorded; the write-back waits
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    rt.clock.advance(timedelta(minutes=1))
    racing = WriteBackDuringTheRead(
        rt.connector_for(conn), lambda: deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    )
    sync_connection(rt.sessions, conn.id, racing, rt.clock, full=True)
    with rt.sessions() as s:
        written = s.scalar(select(OutboxMessage).where(OutboxMessage.kind == "ledger_payment"))
        assert written.status == "sent"  # the write-back landed between the read and the save
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "paid" and inv.open_balance_minor == 0
    # So the link asks for nothing more: no second payment in that window.
    with pytest.raises(Rejected, match="paid"):
        start_checkout(rt, token)
    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn)
    inv = invoice(rt, usd_invoice.id)
    assert inv.status == "paid" and inv.open_balance_minor == 0
    assert len(ledger_payments(rt, demo_company)) == 1
    assert collected(rt)[0].unapplied_minor == 0


def test_a_racing_write_back_keeps_what_the_bookkeeper_changed_in_the_same_reading(
    rt, demo_company, usd_invoice
):
    """The reading may already hold the write-back and another change (a line added): after the
    sync, the invoice shows the ledger's own balance, not ours from before the read."""
    from arbridge.services.bootstrap import outbox_handlers, webhook_handlers
    from arbridge.sync.outbox import deliver
    from arbridge.sync.runner import sync_connection
    from arbridge.webhooks.dispatch import process_pending

    token = token_for(rt, usd_invoice)
    pay(rt, token)
    process_pending(rt.sessions, rt.clock, webhook_handlers(rt))
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    ledger = rt.demo_ledger(conn.tenant_id)

    def write_back_and_a_late_fee() -> None:
        deliver(rt.sessions, rt.clock, outbox_handlers(rt))
        with ledger.change() as state:
            inv = ledger.find(state, "Invoice", usd_invoice.source_id)
            inv.update(
                total=str(Decimal(inv["total"]) + 25),
                balance=str(Decimal(inv["balance"]) + 25),
                status="AUTHORISED",
            )
            ledger.touch(state, inv)

    rt.clock.advance(timedelta(minutes=1))
    racing = WriteBackDuringTheRead(rt.connector_for(conn), write_back_and_a_late_fee)
    sync_connection(rt.sessions, conn.id, racing, rt.clock, full=True)
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == ("open", 2500)  # the ledger's word
    assert len(ledger_payments(rt, demo_company)) == 1


def test_a_links_open_checkout_closes_when_a_second_link_opens_one(rt, demo_company, usd_invoice):
    first, second = token_for(rt, usd_invoice), token_for(rt, usd_invoice)
    url_a, url_b = start_checkout(rt, first), start_checkout(rt, second)
    # Only the newest can take the money: the first tab was closed as the second opened.
    with pytest.raises(Rejected, match="no longer open"):
        simulated_stripe(rt).complete(session_id(url_a), "card", "succeed")
    simulated_stripe(rt).complete(session_id(url_b), "card", "succeed")
    drain(rt)
    drain(rt)
    with pytest.raises(Rejected, match="paid"):
        start_checkout(rt, first)
    assert len(collected(rt)) == 1 and len(ledger_payments(rt, demo_company)) == 1


def test_a_dispute_won_after_the_invoice_was_paid_otherwise_is_an_overpayment(
    rt, demo_company, usd_invoice, clock
):
    """Disputed, the customer then paid by cheque, then the bank sided with the business: the
    card money no longer fits the invoice, so it shows as an overpayment to refund, and the
    ledger gets no second payment for the invoice."""
    from arbridge.connectors.base import PaymentLine, PaymentWriteBack

    token = token_for(rt, usd_invoice)
    pay(rt, token)
    drain(rt)
    row = collected(rt)[0]
    dispute = {
        "id": "dp_1Pgc71B7WZ01zgkWMevJiAUy",
        "object": "dispute",
        "amount": row.amount_minor,
        "charge": "ch_1PgafuB7WZ01zgkWXYmPNZs9",
        "currency": "usd",
        "payment_intent": row.payment_intent_id,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    deliver(rt, _event("charge.dispute.created", dispute, 21))
    drain(rt)
    assert invoice(rt, usd_invoice.id).status == "open"
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    rt.connector_for(conn).post_payment(
        PaymentWriteBack(
            "cheque-2",
            ledger_invoice(rt, demo_company, usd_invoice.source_id)["contactId"],
            "USD",
            usd_invoice.balance.amount,
            rt.clock.now().date(),
            "CHK 1002",
            [PaymentLine(usd_invoice.source_id, usd_invoice.balance.amount)],
        )
    )
    clock.advance(timedelta(minutes=1))
    sync_now(rt, conn)
    assert invoice(rt, usd_invoice.id).status == "paid"
    deliver(rt, _event("charge.dispute.closed", {**dispute, "status": "won"}, 22))
    drain(rt)
    drain(rt)
    row = collected(rt)[0]
    assert row.status == "succeeded" and row.unapplied_minor == row.amount_minor
    assert invoice(rt, usd_invoice.id).status == "paid"
    assert [p["status"] for p in ledger_payments(rt, demo_company)] == ["VOIDED"]
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        assert refund_overpayment(rt, s, company, row.id).minor == row.amount_minor


def test_a_discounted_payment_refused_by_the_ledger_drops_its_discount_credit_too(
    rt, demo_company, clock
):
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        company.settings = {"payments": {"discount_percent": "2", "discount_days": 10}}
        inv = next(
            i
            for i in open_invoices(s, company.id)
            if i.currency == "USD"
            and i.open_balance_minor == i.total_minor
            and (clock.now().date() - i.issued_on).days <= 5
        )
        s.expunge(inv)
    token = token_for(rt, inv)
    url = start_checkout(rt, token)
    _cheque(rt, demo_company, inv.source_id, inv.balance.amount, "cheque-4")
    simulated_stripe(rt).complete(session_id(url), "card", "succeed")
    drain(rt)
    drain(rt)
    row = collected(rt)[0]
    assert row.unapplied_minor == row.amount_minor and applied(rt, row) == 0
    with rt.sessions() as s:
        rows = {m.kind: m for m in s.scalars(select(OutboxMessage))}
        assert rows["ledger_discount"].status == "sent", rows["ledger_discount"].last_error
        assert "outbox.failed" not in [a.kind for a in s.scalars(select(Activity))]
    state = ledger_invoice(rt, demo_company, inv.source_id)
    assert state["status"] == "PAID" and Decimal(state["balance"]) == 0
    assert ledger_payments(rt, demo_company) == []


def _dispute(row, n: int) -> dict:
    return {
        "id": f"dp_1Pgc71B7WZ01zgkWMevJiA{n:02d}",
        "object": "dispute",
        "amount": row.amount_minor,
        "charge": f"ch_1PgafuB7WZ01zgkWXYmPNZ{n:02d}",
        "currency": "usd",
        "payment_intent": row.payment_intent_id,
        "reason": "fraudulent",
        "status": "needs_response",
    }


def _events_only(rt) -> None:
    """The worker takes in Stripe's events; the ledger writes they queue wait."""
    from arbridge.services.bootstrap import webhook_handlers
    from arbridge.webhooks.dispatch import process_pending

    process_pending(rt.sessions, rt.clock, webhook_handlers(rt))


def _won_dispute_waiting_to_be_restated(rt, demo_company, usd_invoice) -> CollectedPayment:
    """Paid and written back, disputed and reversed in the ledger, then the dispute won: the
    invoice is paid again here, and the restatement that says so waits in the outbox."""
    pay(rt, token_for(rt, usd_invoice))
    drain(rt)
    row = collected(rt)[0]
    dispute = _dispute(row, 31)
    deliver(rt, _event("charge.dispute.created", dispute, 31))
    drain(rt)
    assert ledger_invoice(rt, demo_company, usd_invoice.source_id)["status"] == "AUTHORISED"
    deliver(rt, _event("charge.dispute.closed", {**dispute, "status": "won"}, 32))
    _events_only(rt)
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == ("paid", 0)
    return row


def test_a_sync_before_a_won_disputes_restatement_lands_never_reopens_the_invoice(
    rt, demo_company, usd_invoice
):
    token = token_for(rt, usd_invoice)
    _won_dispute_waiting_to_be_restated(rt, demo_company, usd_invoice)
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn)  # the ledger still shows the payment voided: the invoice open in full
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == ("paid", 0)
    with pytest.raises(Rejected, match="paid"):
        start_checkout(rt, token)  # no second payment for a paid invoice
    drain(rt)
    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn)
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == ("paid", 0)
    assert ledger_invoice(rt, demo_company, usd_invoice.source_id)["status"] == "PAID"
    assert sorted(p["status"] for p in ledger_payments(rt, demo_company)) == [
        "POSTED",
        "VOIDED",
    ]


def test_a_sync_before_a_refunds_reversal_lands_keeps_the_invoice_owed(
    rt, demo_company, usd_invoice
):
    pay(rt, token_for(rt, usd_invoice))
    drain(rt)
    row = collected(rt)[0]
    simulated_stripe(rt).refund(row.payment_intent_id, None, "refund-race")
    _events_only(rt)
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == ("open", usd_invoice.open_balance_minor)
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn)  # the ledger still shows the payment: the invoice paid
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == ("open", usd_invoice.open_balance_minor)
    assert inv.id in open_invoice_ids(rt, demo_company)  # reminders chase it again
    drain(rt)
    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn)
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == ("open", usd_invoice.open_balance_minor)
    assert [p["status"] for p in ledger_payments(rt, demo_company)] == ["VOIDED"]


def open_invoice_ids(rt, company) -> list[int]:
    with rt.sessions() as s:
        return [inv.id for inv in open_invoices(s, company.id)]


@pytest.mark.parametrize("case", ["won dispute", "refund"])
def test_a_restatement_landing_between_the_syncs_read_and_save_keeps_arbridge_s_view(
    rt, demo_company, usd_invoice, case
):
    """The sync reads the ledger before the restatement, which lands before the sync saves:
    the invoice keeps what arbridge knows, and the next sync agrees with the ledger."""
    from arbridge.services.bootstrap import outbox_handlers
    from arbridge.sync.outbox import deliver as deliver_outbox
    from arbridge.sync.runner import sync_connection

    if case == "won dispute":
        _won_dispute_waiting_to_be_restated(rt, demo_company, usd_invoice)
        expected = ("paid", 0)
    else:
        pay(rt, token_for(rt, usd_invoice))
        drain(rt)
        simulated_stripe(rt).refund(collected(rt)[0].payment_intent_id, None, "r-race")
        _events_only(rt)
        expected = ("open", usd_invoice.open_balance_minor)
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    rt.clock.advance(timedelta(minutes=1))
    racing = WriteBackDuringTheRead(
        rt.connector_for(conn), lambda: deliver_outbox(rt.sessions, rt.clock, outbox_handlers(rt))
    )
    sync_connection(rt.sessions, conn.id, racing, rt.clock, full=True)
    with rt.sessions() as s:
        restated = s.scalar(
            select(OutboxMessage)
            .where(OutboxMessage.kind == "ledger_reversal")
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        )
        assert restated.status == "sent"  # it landed between the read and the save
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == expected
    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn)
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == expected
    ledger = ledger_invoice(rt, demo_company, usd_invoice.source_id)
    assert Money(Decimal(ledger["balance"]), "USD").minor == expected[1]


def test_a_sync_between_two_restatements_counts_what_the_first_one_posted(
    rt, demo_company, usd_invoice
):
    """Two partial refunds, the second before the first's restatement ran: the first posts what
    stands when it runs (after both), and a sync before the second lands counts that."""
    from arbridge.services.bootstrap import outbox_handlers
    from arbridge.sync.outbox import deliver as deliver_outbox

    pay(rt, token_for(rt, usd_invoice))
    drain(rt)
    row = collected(rt)[0]
    sim = simulated_stripe(rt)
    sim.refund(row.payment_intent_id, Money.from_minor(30000, "USD"), "refund-1")
    _events_only(rt)
    sim.refund(row.payment_intent_id, Money.from_minor(20000, "USD"), "refund-2")
    _events_only(rt)
    owed = (invoice(rt, usd_invoice.id).status, invoice(rt, usd_invoice.id).open_balance_minor)
    assert owed == ("open", 50000)
    restate = {"ledger_reversal": outbox_handlers(rt)["ledger_reversal"]}
    assert deliver_outbox(rt.sessions, rt.clock, restate, limit=1) == 1  # the first only
    ledger = ledger_invoice(rt, demo_company, usd_invoice.source_id)
    assert Money(Decimal(ledger["balance"]), "USD").minor == 50000  # both refunds in it
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn)
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == owed
    drain(rt)
    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn)
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == owed


def test_a_sync_before_a_reversal_lands_still_takes_what_the_bookkeeper_changed(
    rt, demo_company, usd_invoice
):
    """Only the refunded payment counts as arbridge says: a late fee the bookkeeper added to the
    same invoice in the ledger meanwhile lands with the same sync."""
    pay(rt, token_for(rt, usd_invoice))
    drain(rt)
    simulated_stripe(rt).refund(collected(rt)[0].payment_intent_id, None, "refund-fee")
    _events_only(rt)
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    ledger = rt.demo_ledger(conn.tenant_id)
    with ledger.change() as state:
        inv = ledger.find(state, "Invoice", usd_invoice.source_id)
        inv.update(
            total=str(Decimal(inv["total"]) + 25),
            balance=str(Decimal(inv["balance"]) + 25),
            status="AUTHORISED",
        )
        ledger.touch(state, inv)
    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn)
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == ("open", usd_invoice.open_balance_minor + 2500)
    drain(rt)
    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn)
    inv = invoice(rt, usd_invoice.id)
    assert (inv.status, inv.open_balance_minor) == ("open", usd_invoice.open_balance_minor + 2500)
