"""Money collected through arbridge on a Xero company, through the service layer end to end (the
issue's write-back promise): Stripe's signed events go through the same ingestion and worker as
for QuickBooks (tests/payment_sequences.py), Xero is the local HTTP fake, and Stripe's own API
(for the owner's refund) is faked at its HTTP boundary.

- paid twice: the first payment becomes a Xero Payment once; the second is not forced into Xero
  but shown to the owner as an overpayment, and the owner's refund of it works; the same when
  the other payment was recorded in Xero itself (Xero refuses more than is outstanding: what
  fits is posted, the rest offered back), also for a payment spread over two requests;
- a refund, or an ACH payment returned (Stripe opens a dispute for a bank failure after success),
  deletes the Xero payment exactly once however often Stripe repeats itself, and the next sync
  shows the invoice open again in the model and in `arbridge report`;
- a refund that arrives before the write-back ran leaves no live payment in Xero;
- refunds and disputes in any order leave Xero holding exactly the net collected (the same
  property tests/contract/quickbooks/test_refund_sequences.py proves for QuickBooks)."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
import responses
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select

from arbridge.connectors.base import PaymentLine, PaymentWriteBack
from arbridge.money import Money
from arbridge.services.payments.refunds import refund_status
from arbridge.sync.model import Activity, CollectedPayment, Company, Invoice, OutboxMessage
from arbridge.sync.outbox_kinds import ledger_payment_key, owner_mail_key
from tests.conftest import sync_now
from tests.contract.xero.conftest import TODAY
from tests.contract.xero.test_end_to_end import assert_report_matches
from tests.contract.xero.test_outbox_write_back import connected
from tests.payment_sequences import (
    Charge,
    check_ours,
    deliver,
    fixture,
    play,
    redeliver,
    settle,
    steps,
)
from tests.web.conftest import csrf_token, parse, sign_in

pytestmark = [
    # `arbridge report` runs in-process: its runtime's engine is left for the garbage collector.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

STRIPE_API = "http://stripe.test"
DELETE = re.compile(r"^/api\.xro/2\.0/Payments/[0-9a-f-]{36}$")


@pytest.fixture
def books(rt, settings, config, fake):
    """A Xero company taking payments through the install's Stripe key (Stripe faked with
    `responses`: Xero's fake is a real server that urllib3 reaches, untouched by it), connected
    with the owner's choice of bank account for collected payments, and synced."""
    rt.settings = rt.settings.with_(
        stripe_secret_key="sk_test_51XeroMoney",
        stripe_webhook_secret="whsec_xero_money",
        stripe_api_base=STRIPE_API,
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as stripe_api:
        conn, ids = connected(rt, settings, config, fake)
        yield conn, ids, stripe_api


def ours(rt, source_id: str) -> Invoice:
    with rt.sessions() as s:
        inv = s.scalar(select(Invoice).where(Invoice.source_id == source_id))
        s.expunge(inv)
    return inv


def collected(rt, payment_intent: str) -> CollectedPayment:
    with rt.sessions() as s:
        row = s.scalar(
            select(CollectedPayment).where(CollectedPayment.payment_intent_id == payment_intent)
        )
        assert row.allocations is not None  # loaded before the session closes
        s.expunge(row)
    return row


def in_xero(fake, payment_intent: str) -> list[dict]:
    """The live Xero payments arbridge wrote for this Stripe payment."""
    return [p for p in fake.live_payments() if p["Reference"] == payment_intent]


def puts(fake) -> list[dict]:
    return [
        r for r in fake.requests if r["method"] == "PUT" and r["path"] == "/api.xro/2.0/Payments"
    ]


def deletes(fake) -> list[str]:
    """The Xero payment ids arbridge asked Xero to delete, once per request."""
    found = []
    for r in fake.requests:
        if r["method"] == "POST" and DELETE.match(r["path"]):
            assert json.loads(r["body"]) == {"Status": "DELETED"}
            found.append(r["path"].rsplit("/", 1)[1])
    return found


def gave_up(rt) -> list[tuple[str, str | None]]:
    with rt.sessions() as s:
        return [
            (m.key, m.last_error)
            for m in s.scalars(
                select(OutboxMessage).where(OutboxMessage.status.in_(("failed", "dead")))
            )
        ]


def synced_again(rt, conn, fake) -> None:
    """Xero's clock moves on, then an incremental sync reads what changed."""
    fake.tick()
    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn)


def owner_refunds(client, rt, company_id: int, payment_id: int, overpaid: Money) -> None:
    """The owner signs in, sees the overpayment on the dashboard, and presses its refund."""
    with rt.sessions() as s:
        company = s.get(Company, company_id)
        s.expunge(company)
    sign_in(client, rt, company)
    dashboard = client.get(f"/c/{company.slug}/")
    row = parse(dashboard.data).by_id("payments").find("tr", **{"data-payment": str(payment_id)})
    assert "overpaid" in row.text and f"Refund {overpaid.format()}" in row.text
    answer = client.post(
        f"/c/{company.slug}/payments/{payment_id}/refund",
        data={"csrf_token": csrf_token(dashboard.data)},
    )
    assert answer.status_code == 302


def test_a_customer_who_pays_twice_is_written_back_once_and_offered_the_refund(
    rt, settings, config, client, fake, books
):
    conn, ids, stripe_api = books
    inv = ours(rt, ids[2])
    first = Charge(conn.company_id, [inv.id], inv.open_balance_minor, currency="nzd")
    first.pay(rt)
    settle(rt)
    [payment] = in_xero(fake, first.pi)
    assert payment["Amount"] == inv.balance.amount and payment["Account"] == {
        "AccountID": fake.bank_accounts["090"]
    }
    assert fake.store["Invoices"][ids[2]]["Status"] == "PAID"

    # The customer pays the same invoice again (a second tab, an older reminder's link).
    second = Charge(conn.company_id, [inv.id], inv.open_balance_minor, currency="nzd")
    second.pay(rt)
    settle(rt)
    assert in_xero(fake, second.pi) == [] and len(puts(fake)) == 1  # not forced into Xero
    row = collected(rt, second.pi)
    assert (row.status, row.unapplied_minor) == ("succeeded", inv.open_balance_minor)
    assert sum(a.amount_minor for a in row.allocations) == 0
    with rt.sessions() as s:
        written = s.scalar(
            select(OutboxMessage).where(OutboxMessage.key == ledger_payment_key(second.pi))
        )
        [flag] = s.scalars(
            select(Activity.message).where(
                Activity.kind == "payment.overpaid", Activity.company_id == conn.company_id
            )
        ).all()
        told = s.scalar(
            select(OutboxMessage).where(
                OutboxMessage.key == owner_mail_key(conn.company_id, f"overpaid:{second.pi}")
            )
        )
    assert f"{Money.from_minor(inv.open_balance_minor, 'NZD').format()} is an overpayment" in flag
    assert "Refund it" in flag and told is not None and written is None

    # The owner chooses to refund it: the refund goes to Stripe, Stripe's event comes back.
    stripe_api.post(
        f"{STRIPE_API}/v1/refunds",
        json={
            **fixture("refund"),
            "id": "re_3XeroMoneyTwice",
            "amount": second.amount,
            "currency": "nzd",
            "payment_intent": second.pi,
        },
    )
    owner_refunds(client, rt, conn.company_id, row.id, Money.from_minor(second.amount, "NZD"))
    settle(rt)
    [call] = [c for c in stripe_api.calls if c.request.url.startswith(f"{STRIPE_API}/v1/refunds")]
    sent = parse_qs(call.request.body)
    assert sent["payment_intent"] == [second.pi] and sent["amount"] == [str(second.amount)]
    assert second.refund(rt, second.amount)  # charge.refunded, for the whole second charge
    settle(rt)
    row = collected(rt, second.pi)
    assert (row.status, row.refunded_minor) == ("refunded", second.amount)
    with rt.sessions() as s:
        assert refund_status(s, row).state == "done"

    # Xero still holds the first payment and nothing else; the invoice stays paid.
    assert deletes(fake) == [] and len(puts(fake)) == 1
    assert [p["PaymentID"] for p in fake.live_payments()] == [payment["PaymentID"]]
    synced_again(rt, conn, fake)
    assert (ours(rt, ids[2]).status, ours(rt, ids[2]).open_balance_minor) == ("paid", 0)
    assert gave_up(rt) == []
    assert_report_matches(settings, config, "harbor-nz", fake)


@pytest.mark.parametrize(("elsewhere", "fits"), [("all", None), ("100.00", "part")])
def test_paid_in_xero_meanwhile_the_write_back_is_not_forced_and_the_rest_is_offered_back(
    rt, settings, config, client, fake, books, elsewhere, fits
):
    """The customer paid twice: once by bank transfer that the bookkeeper recorded in Xero, once
    through arbridge before a sync showed it. Xero refuses more than is outstanding; arbridge
    posts what still fits (or nothing), and the rest is the owner's overpayment to refund."""
    conn, ids, stripe_api = books
    inv = ours(rt, ids[2])
    recorded = inv.balance.amount if elsewhere == "all" else Decimal(elsewhere)
    rt.connector_for(conn).post_payment(
        PaymentWriteBack(
            idempotency_key="bookkeeper-transfer",
            customer_source_id=fake.store["Invoices"][ids[2]]["Contact"]["ContactID"],
            currency="NZD",
            amount=recorded,
            received_on=TODAY,
            reference="Bank transfer 4417",
            lines=[PaymentLine(ids[2], recorded)],
        )
    )
    charge = Charge(conn.company_id, [inv.id], inv.open_balance_minor, currency="nzd")
    charge.pay(rt)
    settle(rt)
    fit = inv.balance.amount - recorded
    assert [p["Amount"] for p in in_xero(fake, charge.pi)] == ([fit] if fits else [])
    assert fake.store["Invoices"][ids[2]]["AmountDue"] == 0
    over = Money.from_minor(charge.amount, "NZD") - Money(fit, "NZD")
    row = collected(rt, charge.pi)
    assert row.unapplied_minor == over.minor
    with rt.sessions() as s:
        [flag] = s.scalars(select(Activity.message).where(Activity.kind == "payment.overpaid"))
    assert f"{over.format()} is an overpayment" in flag

    stripe_api.post(
        f"{STRIPE_API}/v1/refunds",
        json={
            **fixture("refund"),
            "amount": over.minor,
            "currency": "nzd",
            "payment_intent": charge.pi,
        },
    )
    owner_refunds(client, rt, conn.company_id, row.id, over)
    settle(rt)
    assert charge.refund(rt, over.minor)
    settle(rt)
    assert collected(rt, charge.pi).refunded_minor == over.minor
    assert deletes(fake) == []  # the refund took back the overpayment, not the payment
    assert [p["Amount"] for p in in_xero(fake, charge.pi)] == ([fit] if fits else [])
    synced_again(rt, conn, fake)
    assert (ours(rt, ids[2]).status, ours(rt, ids[2]).open_balance_minor) == ("paid", 0)
    assert gave_up(rt) == []
    assert_report_matches(settings, config, "harbor-nz", fake)


def test_a_payment_over_more_than_fifty_invoices_refused_in_its_second_request_is_not_counted_twice(
    rt, settings, config, fake, books
):
    """A statement paid in one go: 55 invoices, so two PUT /Payments. The bookkeeper recorded
    part of one invoice of the second request in Xero meanwhile, so Xero refuses that request
    after it took the first. What the first created must not stay in Xero unknown to arbridge
    while the refit counts it as an overpayment too: collected = in Xero + overpaid, to the
    cent, and the write-back names every payment of it that Xero holds (a refund deletes those)."""
    conn, _ids, _stripe = books
    contact = fake.add_contact("Summit Logistics")
    many = [
        fake.add_invoice(contact, f"{20 + n}.10", issued=TODAY, due=TODAY + timedelta(days=30))
        for n in range(55)
    ]
    synced_again(rt, conn, fake)
    invoices = [ours(rt, i) for i in many]
    # The payment goes to its invoices oldest first (due date, then our id): the last of
    # them is in the second request.
    last = max(invoices, key=lambda i: (i.due_on, i.id)).source_id
    rt.connector_for(conn).post_payment(
        PaymentWriteBack(
            idempotency_key="bookkeeper-cheque",
            customer_source_id=contact,
            currency="NZD",
            amount=Decimal("10.00"),
            received_on=TODAY,
            reference="CHK 5120",
            lines=[PaymentLine(last, Decimal("10.00"))],
        )
    )
    amount = sum(i.open_balance_minor for i in invoices)
    charge = Charge(conn.company_id, [i.id for i in invoices], amount, currency="nzd")
    charge.pay(rt)
    settle(rt)
    live = in_xero(fake, charge.pi)
    row = collected(rt, charge.pi)
    in_ledger = sum((p["Amount"] for p in live), Decimal(0))
    assert row.unapplied_minor == 1000
    assert Money(in_ledger, "NZD").minor + row.unapplied_minor == amount
    assert all(fake.store["Invoices"][i]["AmountDue"] == 0 for i in many)
    with rt.sessions() as s:
        written = s.scalar(
            select(OutboxMessage).where(OutboxMessage.key == ledger_payment_key(charge.pi))
        )
    assert written.status == "sent", written.last_error
    # A refund later deletes what the write-back names: every one of them, and only them.
    assert sorted(written.provider_ref.split(",")) == sorted(p["PaymentID"] for p in live)
    assert max(Counter(deletes(fake)).values()) == 1
    synced_again(rt, conn, fake)
    assert gave_up(rt) == []
    assert_report_matches(settings, config, "harbor-nz", fake)


@pytest.mark.parametrize("refunded", ["all", "part"])
def test_a_refund_after_the_write_back_deletes_the_xero_payment_once_and_reopens_the_invoice(
    rt, settings, config, fake, books, refunded
):
    conn, ids, _stripe = books
    inv = ours(rt, ids[3])
    charge = Charge(conn.company_id, [inv.id], inv.open_balance_minor, currency="nzd")
    charge.pay(rt)
    settle(rt)
    [payment] = in_xero(fake, charge.pi)
    back = charge.amount if refunded == "all" else 5025

    assert charge.refund(rt, back)
    redeliver(rt, charge.sent[-1])  # the same event again
    settle(rt)
    deliver(rt, "charge.refunded", charge.charge())  # Stripe says it again, as a new event
    redeliver(rt, charge.sent[-1])
    settle(rt)

    assert deletes(fake) == [payment["PaymentID"]]
    assert fake.store["Payments"][payment["PaymentID"]]["Status"] == "DELETED"
    left = [p["Amount"] for p in in_xero(fake, charge.pi)]
    assert left == (
        [] if refunded == "all" else [Money.from_minor(charge.amount - back, "NZD").amount]
    )
    owed = Money.from_minor(back, "NZD").amount
    assert fake.store["Invoices"][ids[3]]["AmountDue"] == owed
    assert fake.store["Invoices"][ids[3]]["Status"] == "AUTHORISED"
    assert (ours(rt, ids[3]).status, ours(rt, ids[3]).open_balance_minor) == ("open", back)

    synced_again(rt, conn, fake)
    inv = ours(rt, ids[3])
    assert (inv.status, inv.open_balance_minor, inv.ledger_balance_minor, inv.unposted_minor) == (
        "open",
        back,
        back,
        0,
    )
    assert gave_up(rt) == []
    assert_report_matches(settings, config, "harbor-nz", fake)


def test_an_ach_payment_returned_after_the_write_back_deletes_the_xero_payment_once(
    rt, settings, config, fake, books
):
    conn, ids, _stripe = books
    inv = ours(rt, ids[1])
    charge = Charge(conn.company_id, [inv.id], inv.open_balance_minor, currency="nzd")
    bank = {**charge.session(), "payment_method_types": ["us_bank_account"]}
    deliver(rt, "checkout.session.completed", {**bank, "payment_status": "unpaid"})
    settle(rt)
    assert puts(fake) == []  # nothing goes to Xero while the bank payment clears
    assert collected(rt, charge.pi).status == "pending"
    deliver(rt, "checkout.session.async_payment_succeeded", bank)
    settle(rt)
    [payment] = in_xero(fake, charge.pi)
    assert collected(rt, charge.pi).method == "us_bank_account"

    # The bank returns the debit after Stripe marked it succeeded: Stripe opens a dispute.
    charge.dispute = "open"
    returned = {
        **charge.dispute_obj("needs_response"),
        "reason": "debit_not_authorized",
        "payment_method_details": None,
    }
    event = deliver(rt, "charge.dispute.created", returned)
    redeliver(rt, event)
    settle(rt)
    redeliver(rt, event)
    settle(rt)
    assert deletes(fake) == [payment["PaymentID"]] and in_xero(fake, charge.pi) == []
    assert fake.store["Invoices"][ids[1]]["AmountDue"] == inv.balance.amount
    # ACH disputes are final: it closes lost, and that changes nothing more in Xero.
    deliver(rt, "charge.dispute.closed", {**returned, "status": "lost"})
    settle(rt)
    assert deletes(fake) == [payment["PaymentID"]] and len(puts(fake)) == 1
    assert collected(rt, charge.pi).status == "disputed"

    synced_again(rt, conn, fake)
    assert (ours(rt, ids[1]).status, ours(rt, ids[1]).open_balance_minor) == (
        "open",
        inv.open_balance_minor,
    )
    assert gave_up(rt) == []
    assert_report_matches(settings, config, "harbor-nz", fake)


@pytest.mark.parametrize("order", ["refund after the success", "refund before the success"])
def test_a_refund_before_the_write_back_ran_leaves_nothing_live_in_xero(
    rt, settings, config, fake, books, order
):
    conn, ids, _stripe = books
    inv = ours(rt, ids[0])
    charge = Charge(conn.company_id, [inv.id], inv.open_balance_minor, currency="nzd")
    if order == "refund before the success":
        charge.refunded = charge.amount
        deliver(rt, "charge.refunded", charge.charge())  # it overtook the success
        charge.refunded = 0
    charge.pay(rt)
    if order == "refund after the success":
        assert charge.refund(rt, charge.amount)
    assert puts(fake) == []  # the worker has not run yet
    settle(rt)
    # As for QuickBooks (the same services): the write-back may have landed just before the
    # refund's restatement, which then deleted it; either way nothing of it stays live.
    created = [
        p["PaymentID"] for p in fake.store["Payments"].values() if p["Reference"] == charge.pi
    ]
    assert len(puts(fake)) <= 1 and deletes(fake) == created
    assert in_xero(fake, charge.pi) == []
    assert fake.store["Invoices"][ids[0]]["AmountDue"] == inv.balance.amount
    assert collected(rt, charge.pi).status == "refunded"
    synced_again(rt, conn, fake)
    assert (ours(rt, ids[0]).status, ours(rt, ids[0]).open_balance_minor) == (
        "open",
        inv.open_balance_minor,
    )
    assert gave_up(rt) == []
    assert_report_matches(settings, config, "harbor-nz", fake)


# --- Any sequence, as for QuickBooks (tests/contract/quickbooks/test_refund_sequences.py) --------
RUN = hypothesis_settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _checker(rt, fake, invoices, before):
    due_before = {i.source_id: fake.store["Invoices"][i.source_id]["AmountDue"] for i in invoices}

    def check(charge: Charge) -> None:
        check_ours(rt, charge, before)
        live = in_xero(fake, charge.pi)
        # Xero settles one invoice per payment: what stands is one payment per invoice at most,
        # together the net collected.
        assert all(n == 1 for n in Counter(p["Invoice"]["InvoiceID"] for p in live).values())
        net = Decimal(charge.net).scaleb(-2)
        assert sum((p["Amount"] for p in live), Decimal(0)) == net, (live, charge)
        paid = sum(
            due_before[i.source_id] - fake.store["Invoices"][i.source_id]["AmountDue"]
            for i in invoices
        )
        assert paid == net, (paid, charge)

    return check


def test_refunds_and_disputes_in_any_order_leave_the_net_in_xero(rt, fake, books):
    conn, _ids, _stripe = books
    contact = fake.add_contact("Cedar Studio")
    for n in range(40):
        fake.add_invoice(
            contact,
            f"{80 + 13 * n}.40",
            issued=TODAY - timedelta(days=n),
            due=TODAY + timedelta(days=30),
        )
    synced_again(rt, conn, fake)
    with rt.sessions() as s:
        fresh = list(
            s.scalars(
                select(Invoice)
                .where(Invoice.customer.has(name="Cedar Studio"), Invoice.status == "open")
                .order_by(Invoice.id)
            )
        )
        for i in fresh:
            s.expunge(i)

    @RUN
    @given(
        sequence=steps(),
        two=st.booleans(),
        over=st.one_of(st.just(0), st.integers(min_value=1, max_value=5000)),
    )
    def run(sequence, two, over):
        invoices = [fresh.pop(0)] + ([fresh.pop(0)] if two else [])
        before = {i.id: i.open_balance_minor for i in invoices}
        charge = Charge(
            conn.company_id, [i.id for i in invoices], sum(before.values()) + over, currency="nzd"
        )
        charge.owed = sum(before.values())
        play(rt, charge, sequence, _checker(rt, fake, invoices, before))

    run()
