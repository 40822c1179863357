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
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import responses
from sqlalchemy import select

from arbridge.clock import local_date
from arbridge.collections.plans import add_months
from arbridge.money import Money
from arbridge.services.payments import plans as svc
from arbridge.services.payments.accounts import connect_with_key
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    CollectedPayment,
    Company,
    Invoice,
    Plan,
    PlanInstallment,
)
from arbridge.sync.store import customer_email, ledger_connection, open_invoices
from arbridge.worker import drain
from tests.conftest import sync_now
from tests.stripe_http_fake import (
    API,
    StripeHTTPFake,
    created_at,
)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@dataclass
class World:
    rt: Any
    client: Any
    fake: StripeHTTPFake
    company: Company
    ledger_seen: int = 0  # when the demo ledger's file last changed, at the last sync
    taken: set[int] = field(default_factory=set)  # customers already on a plan here

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

    def day(self, n: int = 1) -> None:
        for _ in range(n):
            self.rt.clock.advance(timedelta(days=1))
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
            assert (
                connect_with_key(rt, s, company, "rk_test_51PlanYearOwnKey")
                == fake._account(None)[2].split('"id": "')[1].split('"')[0]
            )
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
    start_on: date | None = None,
    method: str = "pm_card_visa",
    invoice: Invoice | None = None,
) -> Made:
    """The owner offers a monthly plan; the customer agrees and pays its first amount in
    Checkout, which saves the method; Stripe's events arrive; the worker runs."""
    inv = invoice or pick_invoice(w)
    made = svc.make_offer(
        w.rt,
        company_id=w.company.id,
        invoice_ids=[inv.id],
        installments=installments,
        every="month",
        deposit_percent=Decimal(deposit),
        start_on=start_on,
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


def on_dates(made: Made, numbers: range | list[int] | None = None) -> list[tuple[date, int]]:
    return [(d, a) for n, d, a in made.schedule if numbers is None or n in numbers]


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
    with w.rt.sessions() as s:
        assert s.get(Invoice, made.invoice.id).open_balance_minor == 0
