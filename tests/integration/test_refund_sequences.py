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
            if i.currency == "USD" and i.open_balance_minor == i.total_minor and i.id not in used
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


def _demo_checker(rt, company, invoices, before, strict=True):
    with rt.sessions() as s:
        conn = ledger_connection(s, company.id)
    ledger = rt.demo_ledger(conn.tenant_id)

    def check(charge: Charge) -> None:
        check_ours(rt, charge, before, strict)
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
        before = {i.id: i.open_balance_minor for i in invoices}
        charge = Charge(demo_company.id, [i.id for i in invoices], sum(before.values()) + over)
        charge.owed = sum(before.values())
        play(rt, charge, sequence, _demo_checker(rt, demo_company, invoices, before))

    run()


def test_two_partial_refunds_leave_one_live_payment_in_the_demo_ledger(rt, demo_company):
    """The case the property found first, kept as a plain example."""
    [inv] = _fresh_invoices(rt, demo_company, set(), False)
    charge = Charge(demo_company.id, [inv.id], inv.open_balance_minor)
    play(
        rt,
        charge,
        [("refund", 1000, False, True), ("refund", 500, False, True)],
        _demo_checker(rt, demo_company, [inv], {inv.id: inv.open_balance_minor}),
    )


def test_a_refund_a_won_dispute_and_more_refunds_leave_one_live_payment(rt, demo_company):
    """Partly refunded, disputed, won (both closing events, one of them twice), then refunded
    again, partly and in full: one live payment equal to the net after every step."""
    [inv, other] = _fresh_invoices(rt, demo_company, set(), True)
    before = {inv.id: inv.open_balance_minor, other.id: other.open_balance_minor}
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


def test_a_restatement_queued_again_after_a_later_one_landed_changes_nothing(rt, demo_company):
    """The first restatement gave up (say, the ledger's grant had died); the second walked past
    it and stated the net. When the first is queued again (the owner reconnected), it must not
    post its older amount as a second live payment."""
    from sqlalchemy import select, update

    from arbridge.services.bootstrap import webhook_handlers
    from arbridge.sync.db import transaction
    from arbridge.sync.model import OutboxMessage
    from arbridge.webhooks.dispatch import process_pending
    from arbridge.worker import drain
    from tests.payment_sequences import settle

    [inv] = _fresh_invoices(rt, demo_company, set(), False)
    charge = Charge(demo_company.id, [inv.id], inv.open_balance_minor)
    check = _demo_checker(rt, demo_company, [inv], {inv.id: inv.open_balance_minor}, strict=False)
    play(rt, charge, [], check)
    assert charge.refund(rt, 1000)
    process_pending(rt.sessions, rt.clock, webhook_handlers(rt))
    with transaction(rt.sessions) as s:
        first = s.scalar(select(OutboxMessage.key).where(OutboxMessage.kind == "ledger_reversal"))
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.key == first)
            .values(status="failed", last_error="AuthExpired: the grant is gone")
        )
    assert charge.refund(rt, charge.amount)  # the rest: nothing stands any more
    settle(rt)
    check(charge)
    with transaction(rt.sessions) as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.key == first)
            .values(status="pending", last_error=None, next_attempt_at=rt.clock.now())
        )
    drain(rt)
    check(charge)
    with rt.sessions() as s:
        assert s.scalar(select(OutboxMessage.status).where(OutboxMessage.key == first)) == "sent"
