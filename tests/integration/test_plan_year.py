"""Installment plans walked through a year, day by day, on the demo company's ledger, with the
business's own Stripe account faked at the HTTP level (tests/stripe_http_fake.py): the real
StripeGateway, Checkout saving the method, off-session charges, and Stripe's signed events
delivered to the real /webhooks/stripe. Each day the clock moves, the worker drains (events,
the plans' pass, the outbox), Stripe's events for that day are delivered, and the demo ledger
is synced whenever it changed.

Each scenario checks, to the cent: what Stripe charged against the schedule (the date in the
company's timezone and the amount), that no charge ever went beyond what was owed, and that
each successful charge was written back to the ledger once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import responses
from sqlalchemy import select

from arbridge.clock import day_text, local_date, utc
from arbridge.collections.plans import add_months
from arbridge.connectors.base import PaymentLine, PaymentWriteBack
from arbridge.money import Money
from arbridge.services.payments import plans as svc
from arbridge.services.payments.accounts import connect_with_key
from arbridge.services.payments.checkout import start_checkout
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    CollectedPayment,
    Company,
    Customer,
    Invoice,
    MailMessage,
    OutboxMessage,
    Plan,
    PlanInstallment,
)
from arbridge.sync.store import (
    customer_email,
    issue_statement_token,
    ledger_connection,
    open_invoices,
)
from arbridge.worker import drain
from tests.conftest import sync_now
from tests.stripe_http_fake import (
    ACCOUNT,
    API,
    AUTHENTICATE,
    DECLINE,
    StripeHTTPFake,
    WorkerKilled,
    created_at,
)
from tests.web.conftest import parse


@dataclass
class World:
    rt: Any
    client: Any
    fake: StripeHTTPFake
    company: Company
    ledger_seen: int = 0  # when the demo ledger's file last changed, at the last sync
    taken: set[int] = field(default_factory=set)  # customers already on a plan here
    # Bank debits clear (or come back) this many days after they were made ...
    ach_days: int = 4
    # ... and the next debit of each of these installment numbers comes back (R01).
    ach_returns: set[str] = field(default_factory=set)

    @property
    def tz(self) -> str:
        return self.company.timezone

    def today(self) -> date:
        return local_date(self.rt.clock.now(), self.tz)

    def ledger(self):
        with self.rt.sessions() as s:
            conn = ledger_connection(s, self.company.id)
            s.expunge(conn)
        return conn, self.rt.demo_ledger(conn.tenant_id)

    def sync_if_changed(self) -> None:
        conn, ledger = self.ledger()
        changed = ledger.path.stat().st_mtime_ns
        if changed != self.ledger_seen:
            sync_now(self.rt, conn)
            self.ledger_seen = changed

    def work(self) -> None:
        """One worker pass, with Stripe's events for it delivered as they come."""
        for _ in range(4):
            drain(self.rt)
            if not self.fake.outbox:
                break
            assert set(self.fake.deliver(self.client.post)) == {200}
        self.sync_if_changed()

    def settle_bank_debits(self) -> None:
        due = self.rt.clock.now() - timedelta(days=self.ach_days)
        for intent in self.fake.charges(succeeded_only=False):
            if intent["status"] == "processing" and created_at(intent) <= due:
                number = intent["metadata"].get("arbridge_installment")
                returned = number in self.ach_returns
                self.ach_returns.discard(number)
                self.fake.settle(intent["id"], succeeded=not returned)

    def day(self, n: int = 1) -> None:
        for _ in range(n):
            self.rt.clock.advance(timedelta(days=1))
            self.settle_bank_debits()
            self.work()

    def until(self, when: date) -> None:
        while self.today() < when:
            self.day()


@pytest.fixture
def world(rt, settings, demo_company, request) -> Iterator[World]:
    """The demo company taking payments through its own Stripe key (faked at HTTP level)."""
    rt.settings = settings.with_(stripe_api_base=API)
    client = request.getfixturevalue("client")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = StripeHTTPFake(rsps, rt.clock)
        with transaction(rt.sessions) as s:
            company = s.get(Company, demo_company.id)
            assert connect_with_key(rt, s, company, "rk_test_51PlanYearOwnKey") == ACCOUNT
            s.expunge(company)
        w = World(rt, client, fake, company)
        w.ledger_seen = w.ledger()[1].path.stat().st_mtime_ns
        yield w


def pick_invoice(w: World, minimum: int = 50000) -> Invoice:
    """A USD invoice nobody has paid any of, of a customer with an email and no plan here."""
    with w.rt.sessions() as s:
        for inv in sorted(open_invoices(s, w.company.id), key=lambda i: i.id):
            if (
                inv.currency == "USD"
                and inv.open_balance_minor == inv.total_minor >= minimum
                and inv.customer_id not in w.taken
                and customer_email(s, inv.customer_id)
            ):
                w.taken.add(inv.customer_id)
                s.expunge(inv)
                return inv
    raise AssertionError("no invoice fits")


@dataclass
class Made:
    plan_id: int
    invoice: Invoice
    schedule: list[tuple[int, date, int]]  # (number, due_on, amount_minor)
    token: str


def offer_and_pay(
    w: World,
    installments: int,
    *,
    deposit: int = 0,
    method: str = "pm_card_visa",
) -> Made:
    """The owner offers a monthly plan; the customer agrees and pays its first amount in
    Checkout, which saves the method; Stripe's events arrive; the worker runs."""
    inv = pick_invoice(w)
    made = svc.make_offer(
        w.rt,
        company_id=w.company.id,
        invoice_ids=[inv.id],
        installments=installments,
        every="month",
        deposit_percent=Decimal(deposit),
    )
    token = made.link.rsplit("/pay/", 1)[1].split("/")[0]
    with w.rt.sessions() as s:
        version = s.get(Plan, made.plan_id).agreement_version
    url = svc.agree_to_offer(
        w.rt, token, made.plan_id, agreed=True, version=version, ip="198.51.100.7", user_agent="t"
    )
    sid = url.rsplit("/", 1)[1]
    asked = w.fake.session_setup(sid)
    assert asked["setup_future_usage"] == "off_session"
    assert w.fake.sessions[sid]["customer"] in w.fake.customers
    w.fake.pay_session(sid, method)
    w.work()
    schedule = [(i.number, i.due_on, i.amount.minor) for i in made.proposal.installments]
    assert sum(a for *_, a in schedule) == inv.open_balance_minor  # no fee configured
    with w.rt.sessions() as s:
        plan = s.get(Plan, made.plan_id)
        assert plan.status == "current", plan.status
        assert plan.payment_method_id in w.fake.methods
    return Made(made.plan_id, inv, schedule, token)


# --- What the checks read ---------------------------------------------------------------------
def stripe_charges(w: World, made: Made, *, succeeded_only: bool = True) -> list[dict]:
    return [
        i
        for i in w.fake.charges(succeeded_only)
        if i["metadata"].get("arbridge_plan") == str(made.plan_id)
    ]


def charged(w: World, made: Made) -> list[tuple[date, int]]:
    """What Stripe took for the plan: (the day in the company's timezone, amount)."""
    return [(local_date(created_at(i), w.tz), i["amount"]) for i in stripe_charges(w, made)]


def plan_state(w: World, made: Made) -> tuple[str, list[tuple[int, str, int]]]:
    with w.rt.sessions() as s:
        plan = s.get(Plan, made.plan_id)
        rows = s.scalars(
            select(PlanInstallment)
            .where(PlanInstallment.plan_id == made.plan_id)
            .order_by(PlanInstallment.number)
        ).all()
        return plan.status, [(r.number, r.status, r.amount_minor) for r in rows]


def ledger_payments(w: World, made: Made) -> dict[str, Decimal]:
    """The demo ledger's payments for the plan's charges, by Stripe reference."""
    _, ledger = w.ledger()
    ours = {i["id"] for i in stripe_charges(w, made, succeeded_only=False)}
    found: dict[str, Decimal] = {}
    for p in ledger.read()["Payment"]:
        if p.get("reference") in ours and p["status"] == "POSTED":
            assert p["reference"] not in found, f"{p['reference']} posted twice"
            found[p["reference"]] = Decimal(p["amount"])
    return found


def check_books(w: World, made: Made, *, owed: int | None = None) -> None:
    """Each successful charge is in the ledger once, with its amount; nothing else is; the
    charges never add up to more than was owed; arbridge's own record agrees with Stripe."""
    took = stripe_charges(w, made)
    expected = {i["id"]: Money.from_minor(i["amount"], "USD").amount for i in took}
    assert ledger_payments(w, made) == expected
    total = sum(i["amount"] for i in took)
    assert total <= (owed if owed is not None else made.invoice.total_minor)
    with w.rt.sessions() as s:
        rows = s.scalars(
            select(CollectedPayment).where(CollectedPayment.status == "succeeded")
        ).all()
        mine = {
            r.payment_intent_id: r.amount_minor for r in rows if r.payment_intent_id in expected
        }
        assert mine == {i["id"]: i["amount"] for i in took}
        inv = s.get(Invoice, made.invoice.id)
        assert inv.open_balance_minor >= 0


def end_of(made: Made) -> date:
    """A few days past the plan's last date: long enough for anything late to show."""
    return made.schedule[-1][1] + timedelta(days=10)


def on_dates(made: Made, numbers: range | list[int] | None = None) -> list[tuple[date, int]]:
    return [(d, a) for n, d, a in made.schedule if numbers is None or n in numbers]


def check_outbox_clean(w: World) -> None:
    """Nothing was given up on or left unsure along the way."""
    with w.rt.sessions() as s:
        stuck = s.scalars(
            select(OutboxMessage).where(
                OutboxMessage.status.in_(("failed", "dead", "maybe_sent", "sending"))
            )
        ).all()
        assert [(m.kind, m.key, m.status, m.last_error) for m in stuck] == []


def plan_mails(w: World, made: Made) -> list[MailMessage]:
    with w.rt.sessions() as s:
        customer_id = s.get(Plan, made.plan_id).customer_id
        mails = s.scalars(
            select(MailMessage)
            .where(MailMessage.kind == "plan", MailMessage.customer_id == customer_id)
            .order_by(MailMessage.id)
        ).all()
        s.expunge_all()
        return list(mails)


def inst_row(w: World, made: Made, number: int) -> PlanInstallment:
    with w.rt.sessions() as s:
        row = s.scalar(
            select(PlanInstallment).where(
                PlanInstallment.plan_id == made.plan_id, PlanInstallment.number == number
            )
        )
        s.expunge(row)
        return row


# --- 1. On time, for a year -------------------------------------------------------------------
def test_twelve_monthly_installments_are_charged_on_their_dates_to_the_cent(world):
    w = world
    made = offer_and_pay(w, 12, deposit=10)
    assert len(made.schedule) == 13 and made.schedule[0][0] == 0  # the deposit, then 12
    start = w.today()
    assert [d for _, d, _ in made.schedule[1:]] == [add_months(start, k) for k in range(1, 13)]
    w.until(start + timedelta(days=366))
    # The deposit on the day of agreeing (Checkout), then each installment on its own date.
    assert charged(w, made) == [(start, made.schedule[0][2]), *on_dates(made, range(1, 13))]
    assert sum(a for _, a in charged(w, made)) == made.invoice.total_minor
    status, insts = plan_state(w, made)
    assert status == "completed" and {s for _, s, _ in insts} == {"paid"}
    check_books(w, made)
    # The off-session charges were sent with one key per installment and attempt.
    keys = [k for m, p, k in w.fake.calls if m == "POST" and p == "/v1/payment_intents"]
    assert len(keys) == len(set(keys)) == 12 and all(k.startswith("plan_charge:") for k in keys)
    # A notice three days before each charge, with its amount and date.
    notices = [m for m in plan_mails(w, made) if "next installment" in m.subject]
    assert [local_date(utc(m.created_at), w.tz) for m in notices] == [
        d - timedelta(days=3) for _, d, _ in made.schedule[1:]
    ]
    for m, (_, d, a) in zip(notices, made.schedule[1:], strict=True):
        # The date as every page and email writes it ("Jan 27, 2027"), not ISO 8601's.
        assert Money.from_minor(a, "USD").format() in m.subject and day_text(d) in m.subject
    with w.rt.sessions() as s:
        assert s.get(Invoice, made.invoice.id).open_balance_minor == 0


# --- 2. A decline, then the retry pays --------------------------------------------------------
@pytest.mark.parametrize(
    ("outcome", "words"),
    [(DECLINE, "insufficient funds"), (AUTHENTICATE, "requires authentication")],
    ids=["declined", "authentication required"],
)
def test_a_declined_installment_is_paid_by_its_first_retry_and_the_plan_goes_on(
    world, outcome, words
):
    """The card is declined (or its bank wants the holder there) once; the first retry pays.
    The worker runs late in the evening here (22:30 in Chicago, already tomorrow in UTC):
    every date is still the company's own."""
    w = world
    w.rt.clock.advance(timedelta(hours=13, minutes=30))
    assert w.rt.clock.now().date() > w.today()
    made = offer_and_pay(w, 6)
    start = w.today()
    third = made.schedule[2]
    w.until(third[1] - timedelta(days=1))
    w.fake.next_outcomes = [outcome]  # this once
    w.day()
    failed = inst_row(w, made, 3)
    assert (failed.status, failed.failures) == ("failed", 1)
    assert failed.next_retry_on == third[1] + timedelta(days=3)
    [told] = [m for m in plan_mails(w, made) if "did not go through" in m.subject]
    assert words in told.text_body and "/pay/" in told.text_body
    assert f"again on {day_text(failed.next_retry_on)}." in told.text_body
    assert f"{words}.\n" in told.text_body and "..\n" not in told.text_body  # one full stop
    w.day(2)
    assert inst_row(w, made, 3).status == "failed"  # no charge before the retry's day
    w.until(end_of(made))
    expected = [(start, made.schedule[0][2]), *on_dates(made, range(2, 3))]
    expected += [(third[1] + timedelta(days=3), third[2]), *on_dates(made, range(4, 7))]
    assert charged(w, made) == expected
    declined = [
        i for i in stripe_charges(w, made, succeeded_only=False) if i["status"] != "succeeded"
    ]
    assert len(declined) == 1 and declined[0]["amount"] == third[2]
    assert plan_state(w, made)[0] == "completed"
    assert sum(a for _, a in charged(w, made)) == made.invoice.total_minor
    check_books(w, made)
    check_outbox_clean(w)


def test_a_card_declined_on_every_retry_defaults_the_plan_and_nothing_more_is_charged(world):
    """Declined on its date and on each retry, 3, 5 and 7 days after the first failure: the
    plan defaults, the customer and the owner are told, nothing more is ever charged."""
    w = world
    made = offer_and_pay(w, 4)
    second = made.schedule[1]
    w.until(second[1] - timedelta(days=1))
    with w.rt.sessions() as s:
        w.fake.behaviour[s.get(Plan, made.plan_id).payment_method_id] = DECLINE
    w.until(end_of(made))
    tries = stripe_charges(w, made, succeeded_only=False)[1:]
    assert [(local_date(created_at(i), w.tz), i["amount"]) for i in tries] == [
        (second[1] + timedelta(days=d), second[2]) for d in (0, 3, 5, 7)
    ]
    assert {i["status"] for i in tries} == {"requires_payment_method"}
    status, insts = plan_state(w, made)
    assert status == "defaulted"
    # The installment it defaulted on stays "failed"; the rest are cancelled.
    assert [s for _, s, _ in insts] == ["paid", "failed", "cancelled", "cancelled"]
    assert inst_row(w, made, 2).failures == 4
    assert any("has ended" in m.subject for m in plan_mails(w, made))
    with w.rt.sessions() as s:
        owner = s.scalars(select(MailMessage).where(MailMessage.kind == "owner")).all()
        assert any("defaulted" in m.subject for m in owner)
    check_books(w, made)
    check_outbox_clean(w)


# --- 3. A bank debit comes back four days later ------------------------------------------------
def test_a_bank_debit_returned_four_days_later_is_retried_and_clears(world):
    w = world
    made = offer_and_pay(w, 6, method="pm_usBankAccount")
    start = w.today()
    assert inst_row(w, made, 1).status == "processing"  # the first debit is clearing
    w.day(4)
    assert inst_row(w, made, 1).status == "paid"
    second = made.schedule[1]
    w.ach_returns.add("2")
    w.until(second[1])
    assert inst_row(w, made, 2).status == "processing"
    w.day(3)
    assert inst_row(w, made, 2).status == "processing"  # nothing is known yet
    w.day()  # four days on, the bank returns it
    returned = inst_row(w, made, 2)
    assert (returned.status, returned.failures) == ("failed", 1)
    assert returned.first_failed_on == second[1] + timedelta(days=4)
    [told] = [m for m in plan_mails(w, made) if "did not go through" in m.subject]
    assert "not enough money in the account" in told.text_body
    w.until(end_of(made))
    expected = [(start, made.schedule[0][2])]
    # Debited again three days after the return was reported (then clearing four days).
    expected += [(second[1] + timedelta(days=7), second[2]), *on_dates(made, range(3, 7))]
    assert [(d, a) for d, a in charged(w, made)] == expected
    assert plan_state(w, made)[0] == "completed"
    assert sum(a for _, a in charged(w, made)) == made.invoice.total_minor
    check_books(w, made)
    check_outbox_clean(w)


# --- 4. The balance falls under the plan ---------------------------------------------------------
@pytest.mark.parametrize("part", ["shrinks", "pays off"])
def test_a_payment_entered_in_the_ledger_shrinks_the_last_installments(world, part):
    """A cheque entered straight in the books after the third installment: the excess comes
    off the last installments (the plan finishes early), or nothing more is charged at all."""
    w = world
    made = offer_and_pay(w, 6)
    start = w.today()
    w.until(made.schedule[2][1] + timedelta(days=1))
    assert [n for n, s, _ in plan_state(w, made)[1] if s == "paid"] == [1, 2, 3]
    left = [a for n, _, a in made.schedule if n > 3]
    # A cheque for one and a half installments, or for everything left.
    cheque = sum(left) if part == "pays off" else left[-1] + left[-2] // 2
    _conn, ledger = w.ledger()
    ledger.post_payment(
        PaymentWriteBack(
            idempotency_key="cheque-1042",
            customer_source_id=customer_source(w, made),
            currency="USD",
            amount=Money.from_minor(cheque, "USD").amount,
            received_on=w.today(),
            reference="Cheque 1042",
            lines=(PaymentLine(made.invoice.source_id, Money.from_minor(cheque, "USD").amount),),
        )
    )
    w.work()  # the sync sees it
    w.until(end_of(made))
    # Expected, worked out by hand: from the last installment back, whole ones dropped, then
    # the last one kept gives up the rest; the earlier dates and amounts stay as agreed.
    excess, kept = cheque, list(made.schedule[3:])
    while kept and excess >= kept[-1][2]:
        excess -= kept.pop()[2]
    if excess:
        n, d, a = kept[-1]
        kept[-1] = (n, d, a - excess)
    expected = [(start, made.schedule[0][2]), *on_dates(made, range(2, 4))]
    expected += [(d, a) for _, d, a in kept]
    assert charged(w, made) == expected
    assert sum(a for _, a in charged(w, made)) + cheque == made.invoice.total_minor
    status, insts = plan_state(w, made)
    assert status == "completed"
    dropped = [n for n, s, _ in insts if s == "dropped"]
    assert dropped == ([4, 5, 6] if part == "pays off" else [6])
    if part == "shrinks":
        assert kept[-1][0] == 5 and 0 < kept[-1][2] < made.schedule[4][2]
    check_books(w, made, owed=made.invoice.total_minor - cheque)
    check_outbox_clean(w)
    with w.rt.sessions() as s:
        assert s.get(Invoice, made.invoice.id).open_balance_minor == 0


def customer_source(w: World, made: Made) -> str:
    with w.rt.sessions() as s:
        return s.get(Customer, made.invoice.customer_id).source_id


# --- 5. The invoice is voided --------------------------------------------------------------------
def test_a_voided_invoice_cancels_its_plan_and_nothing_more_is_charged(world):
    w = world
    made = offer_and_pay(w, 6)
    start = w.today()
    w.until(made.schedule[2][1] + timedelta(days=2))
    _conn, ledger = w.ledger()
    ledger.void_invoice(made.invoice.source_id)
    w.until(end_of(made))
    assert charged(w, made) == [(start, made.schedule[0][2]), *on_dates(made, range(2, 4))]
    assert len(stripe_charges(w, made, succeeded_only=False)) == 3
    status, insts = plan_state(w, made)
    assert status == "cancelled"
    assert [s for _, s, _ in insts] == ["paid"] * 3 + ["cancelled"] * 3
    check_books(w, made)
    check_outbox_clean(w)
    # No notice went out for an installment after the void.
    notices = [m for m in plan_mails(w, made) if "next installment" in m.subject]
    assert len(notices) == 2


# --- 6. The worker dies between Stripe's answer and our record ----------------------------------
@pytest.mark.parametrize(
    ("crash", "first", "back_after"),
    [
        ("killed", "the retry", timedelta(minutes=20)),
        ("killed", "the retry", timedelta(days=2)),
        ("lost", "the retry", timedelta(minutes=20)),
        ("lost", "Stripe's event", timedelta(minutes=20)),
    ],
    ids=["killed", "killed, back after Stripe forgot the key", "lost", "lost, event first"],
)
def test_a_charge_whose_answer_never_reached_us_is_not_made_twice(world, crash, first, back_after):
    """The charge is made at Stripe; then the worker dies waiting for the answer (the outbox
    row is left `sending`), or the connection drops on every try (the row waits to be retried).
    Whichever comes first, the retry with the same key or Stripe's own event, the installment
    is paid once, with one PaymentIntent, and written to the ledger once; also when the worker
    comes back only after Stripe has forgotten the key (24 hours)."""
    w = world
    made = offer_and_pay(w, 3)
    start = w.today()
    second = made.schedule[1]
    w.until(second[1] - timedelta(days=1))
    w.fake.after_next_charge = crash
    w.rt.clock.advance(timedelta(days=1))
    if crash == "killed":
        with pytest.raises(WorkerKilled):
            drain(w.rt)
        with w.rt.sessions() as s:
            [row] = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "plan_charge"))
            assert (row.status, row.attempts) == ("sending", 1)
    else:
        drain(w.rt)
        with w.rt.sessions() as s:
            rows = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "plan_charge"))
            [row] = [r for r in rows if r.status != "sent"]
            assert row.status == "pending" and "connect" in (row.last_error or "").lower()
    assert len(stripe_charges(w, made, succeeded_only=False)) == 2  # Stripe did charge
    held = list(w.fake.outbox)
    w.fake.outbox.clear()
    if first == "Stripe's event":
        w.fake.outbox.extend(held)
        w.work()
        assert inst_row(w, made, 2).status == "paid"
    w.rt.clock.advance(back_after)  # past the lease of a row left sending
    w.work()
    assert inst_row(w, made, 2).status == "paid"
    w.fake.outbox.extend(held)  # Stripe's event, late: changes nothing
    w.until(start + timedelta(days=70))
    assert charged(w, made) == [(start, made.schedule[0][2]), *on_dates(made, range(2, 4))]
    assert len(stripe_charges(w, made, succeeded_only=False)) == 3
    keys = [k for m, p, k in w.fake.calls if m == "POST" and p == "/v1/payment_intents"]
    assert len(set(keys)) == 2  # the lost one's retries all carried its key
    assert plan_state(w, made)[0] == "completed"
    check_books(w, made)
    check_outbox_clean(w)


# --- 7. Month ends and a leap year ---------------------------------------------------------------
def test_plans_from_31_january_and_29_february_2028_keep_their_month_ends(world):
    w = world
    w.rt.clock.at = datetime(2028, 1, 31, 15, tzinfo=UTC)  # 09:00 in the company's timezone
    assert w.today() == date(2028, 1, 31)
    january = offer_and_pay(w, 12)
    assert [d for _, d, _ in january.schedule] == [
        date(2028, 1, 31),
        date(2028, 2, 29),
        date(2028, 3, 31),
        date(2028, 4, 30),
        date(2028, 5, 31),
        date(2028, 6, 30),
        date(2028, 7, 31),
        date(2028, 8, 31),
        date(2028, 9, 30),
        date(2028, 10, 31),
        date(2028, 11, 30),
        date(2028, 12, 31),
    ]
    w.until(date(2028, 2, 29))
    leap = offer_and_pay(w, 13)
    assert [d for _, d, _ in leap.schedule] == [
        *(date(2028, m, 29) for m in range(2, 13)),
        date(2029, 1, 29),
        date(2029, 2, 28),
    ]
    w.until(date(2029, 3, 2))
    assert charged(w, january) == on_dates(january)
    assert charged(w, leap) == on_dates(leap)
    for made in (january, leap):
        assert plan_state(w, made)[0] == "completed"
        assert sum(a for _, a in charged(w, made)) == made.invoice.total_minor
        check_books(w, made)
    check_outbox_clean(w)


# --- 8. The customer pays a failed installment through their link -------------------------------
@pytest.mark.parametrize("card", ["the same card", "a new card"])
def test_a_failed_installment_paid_through_the_link_while_its_retry_is_due_is_charged_once(
    world, card
):
    w = world
    made = offer_and_pay(w, 4)
    start = w.today()
    second = made.schedule[1]
    w.until(second[1] - timedelta(days=1))
    with w.rt.sessions() as s:
        old_method = s.get(Plan, made.plan_id).payment_method_id
    if card == "a new card":
        w.fake.behaviour[old_method] = DECLINE  # from now on: the card was cancelled
    else:
        w.fake.next_outcomes = [DECLINE]
    w.day()
    assert inst_row(w, made, 2).status == "failed"
    [told] = [m for m in plan_mails(w, made) if "did not go through" in m.subject]
    link = next(word for word in told.text_body.split() if "/pay/" in word)
    token = link.rsplit("/pay/", 1)[1].split("/")[0]
    retry_on = inst_row(w, made, 2).next_retry_on
    assert retry_on == second[1] + timedelta(days=3)
    # The retry's day: the customer opens the link from the email before the worker's pass.
    w.rt.clock.advance(timedelta(days=3))
    page = w.client.get(link.removeprefix(w.rt.settings.base_url))
    assert page.status_code == 200
    url = svc.installment_checkout(w.rt, token, made.plan_id, 2)
    sid = url.rsplit("/", 1)[1]
    assert w.fake.session_setup(sid)["setup_future_usage"] == "off_session"
    w.work()  # the worker leaves the installment to the customer, who is paying it
    assert inst_row(w, made, 2).status == "failed"
    assert len(stripe_charges(w, made, succeeded_only=False)) == 2
    paid = w.fake.pay_session(sid, "pm_card_visa")
    w.work()
    assert inst_row(w, made, 2).status == "paid"
    # The card used there is the plan's from now on (the link's Checkout saved it).
    new_method = w.fake.intents[paid["payment_intent"]]["payment_method"]
    with w.rt.sessions() as s:
        assert s.get(Plan, made.plan_id).payment_method_id == new_method != old_method
    w.until(start + timedelta(days=130))
    expected = [(start, made.schedule[0][2]), (retry_on, second[2])]
    expected += on_dates(made, range(3, 5))
    assert charged(w, made) == expected
    later = stripe_charges(w, made, succeeded_only=False)
    assert len(later) == 5  # one declined
    assert {i["payment_method"] for i in later[-2:]} == {new_method}
    assert plan_state(w, made)[0] == "completed"
    check_books(w, made)
    check_outbox_clean(w)


# --- 9. The whole balance paid through the ordinary link ------------------------------------------
@pytest.mark.parametrize("method", ["pm_card_visa", "pm_usBankAccount"], ids=["card", "bank"])
def test_the_whole_balance_paid_through_the_pay_link_under_the_plan_is_not_charged_again(
    world, method
):
    """Two days before the third installment the customer pays everything left through the
    ordinary pay link, by card or by bank debit (four days to clear): the plan charges nothing
    while it clears, and nothing after; they never pay more than they owed."""
    w = world
    made = offer_and_pay(w, 4)
    third = made.schedule[2]
    w.until(third[1] - timedelta(days=2))
    url = start_checkout(w.rt, made.token)
    paid = w.fake.pay_session(url.rsplit("/", 1)[1], method)
    w.work()
    with w.rt.sessions() as s:
        assert s.get(Invoice, made.invoice.id).payment_pending == (method == "pm_usBankAccount")
    w.until(end_of(made))
    took = w.fake.charges()
    assert sum(i["amount"] for i in took) == made.invoice.total_minor
    assert [i["id"] for i in took][-1] == paid["payment_intent"]
    assert charged(w, made) == [(d, a) for d, a in on_dates(made, range(1, 3))]
    assert plan_state(w, made)[0] == "completed"
    check_books(w, made)
    _conn, ledger = w.ledger()
    [posted] = [p for p in ledger.read()["Payment"] if p["reference"] == paid["payment_intent"]]
    assert Money(Decimal(posted["amount"]), "USD").minor == paid["amount_total"]
    check_outbox_clean(w)


def test_a_statement_link_said_the_whole_balance_was_on_a_plan_that_covers_one_invoice(world):
    w = world
    made = offer_and_pay(w, 3)
    with transaction(w.rt.sessions) as s:
        customer = s.get(Customer, made.invoice.customer_id)
        others = [
            i.number
            for i in open_invoices(s, w.company.id)
            if i.customer_id == customer.id and i.id != made.invoice.id
        ]
        token = issue_statement_token(s, w.rt.clock, customer)
    page = parse(w.client.get(f"/pay/{token}").data)
    said = page.by_id("on-plan").text
    assert "for this balance" not in said
    assert f"{made.invoice.number} is on your payment plan" in said
    assert not any(number in said for number in others)
