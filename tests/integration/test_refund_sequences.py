"""Refunds and disputes in any order leave one live payment in the demo ledger, equal to the net
collected (or none), however often Stripe repeats itself (issue 8, finding 3)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arbridge.sync.model import Invoice
from arbridge.sync.store import ledger_connection, open_invoices
from tests.payment_sequences import Charge, check_ours, one_live, play, steps

RUN = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _fresh_invoices(rt, company, used: set[int], two: bool) -> list[Invoice]:
    with rt.sessions() as s:
        free = [
            i
            for i in open_invoices(s, company.id)
            if i.currency == "USD" and i.balance_minor == i.total_minor and i.id not in used
        ]
        first = free[0]
        picked = [first]
        if two:
            more = [i for i in free[1:] if i.customer_id == first.customer_id]
            picked += more[:1]
        for i in picked:
            s.expunge(i)
    used.update(i.id for i in picked)
    return picked


def _demo_checker(rt, company, invoices, before):
    with rt.sessions() as s:
        conn = ledger_connection(s, company.id)
    ledger = rt.demo_ledger(conn.tenant_id)

    def check(charge: Charge) -> None:
        check_ours(rt, charge, before)
        state = ledger.read()
        live = [
            Decimal(p["amount"])
            for p in state["Payment"]
            if p.get("reference") == charge.pi and p["status"] == "POSTED"
        ]
        one_live(live, charge)
        paid = sum(
            Decimal(ledger.find(state, "Invoice", i.source_id)["total"])
            - Decimal(ledger.find(state, "Invoice", i.source_id)["balance"])
            for i in invoices
        )
        assert paid == Decimal(charge.net).scaleb(-2), (paid, charge)

    return check


def test_refunds_and_disputes_in_any_order_leave_one_live_payment_in_the_demo_ledger(
    rt, demo_company
):
    used: set[int] = set()

    @RUN
    @given(
        sequence=steps(),
        two=st.booleans(),
        over=st.one_of(st.just(0), st.integers(min_value=1, max_value=5000)),
    )
    def run(sequence, two, over):
        invoices = _fresh_invoices(rt, demo_company, used, two)
        before = {i.id: i.balance_minor for i in invoices}
        charge = Charge(demo_company.id, [i.id for i in invoices], sum(before.values()) + over)
        charge.owed = sum(before.values())
        play(rt, charge, sequence, _demo_checker(rt, demo_company, invoices, before))

    run()


def test_two_partial_refunds_leave_one_live_payment_in_the_demo_ledger(rt, demo_company):
    """The case the property found first, kept as a plain example."""
    [inv] = _fresh_invoices(rt, demo_company, set(), False)
    charge = Charge(demo_company.id, [inv.id], inv.balance_minor)
    play(
        rt,
        charge,
        [("refund", 1000, False, True), ("refund", 500, False, True)],
        _demo_checker(rt, demo_company, [inv], {inv.id: inv.balance_minor}),
    )


def test_a_refund_a_won_dispute_and_more_refunds_leave_one_live_payment(rt, demo_company):
    """Partly refunded, disputed, won (both closing events, one of them twice), then refunded
    again, partly and in full: one live payment equal to the net after every step."""
    [inv, other] = _fresh_invoices(rt, demo_company, set(), True)
    before = {inv.id: inv.balance_minor, other.id: other.balance_minor}
    charge = Charge(demo_company.id, [inv.id, other.id], sum(before.values()))
    play(
        rt,
        charge,
        [
            ("refund", 1000, False, True),
            ("dispute", 1, True, True),
            ("win", 1, True, True),
            ("refund", 500, True, True),
            ("refund_all", 1, False, True),
        ],
        _demo_checker(rt, demo_company, [inv, other], before),
    )
