"""Refunds and disputes in any order leave one live Payment in QuickBooks (the HTTP fake), equal
to the net collected (or none), however often Stripe repeats itself (issue 8, finding 3)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from arbridge.services.bootstrap import webhook_handlers
from arbridge.services.ledger.writebacks import reverse_ledger_payment
from arbridge.sync.db import transaction
from arbridge.sync.model import Invoice, OutboxMessage
from arbridge.sync.outbox import LEASE
from arbridge.webhooks.dispatch import process_pending
from arbridge.worker import drain
from tests.contract.quickbooks.conftest import seed_ledger, sync
from tests.payment_sequences import Charge, check_ours, one_live, play, settle, steps

RUN = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _books(rt, fake, connected, settings_):
    rt.settings = settings_.with_(stripe_webhook_secret="whsec_sequences")
    seed_ledger(fake, invoices=40)
    sync(rt, connected.conn)


def _fresh_invoices(rt, company_id, used: set[int], two: bool) -> list[Invoice]:
    with rt.sessions() as s:
        free = [
            i
            for i in s.scalars(
                select(Invoice)
                .where(
                    Invoice.company_id == company_id,
                    Invoice.status == "open",
                    Invoice.currency == "USD",
                    Invoice.open_balance_minor > 0,
                )
                .order_by(Invoice.id)
            )
            if i.id not in used
        ]
        picked = [free[0]]
        if two:
            picked += [i for i in free[1:] if i.customer_id == free[0].customer_id][:1]
        for i in picked:
            s.expunge(i)
    used.update(i.id for i in picked)
    return picked


def _checker(rt, fake, invoices, before):
    ledger_before = {i.source_id: fake.records["Invoice"][i.source_id]["Balance"] for i in invoices}

    def check(charge: Charge) -> None:
        check_ours(rt, charge, before)
        live = [p["TotalAmt"] for p in fake.payments_with_reference(charge.pi)]
        one_live(live, charge)
        paid = sum(
            ledger_before[i.source_id] - fake.records["Invoice"][i.source_id]["Balance"]
            for i in invoices
        )
        assert paid == Decimal(charge.net).scaleb(-2), (paid, charge)

    return check


def test_refunds_and_disputes_in_any_order_leave_one_live_payment_in_quickbooks(
    rt, fake, connected, settings
):
    _books(rt, fake, connected, settings)
    used: set[int] = set()

    @RUN
    @given(
        sequence=steps(),
        two=st.booleans(),
        over=st.one_of(st.just(0), st.integers(min_value=1, max_value=5000)),
    )
    def run(sequence, two, over):
        invoices = _fresh_invoices(rt, connected.company.id, used, two)
        before = {i.id: i.open_balance_minor for i in invoices}
        charge = Charge(connected.company.id, [i.id for i in invoices], sum(before.values()) + over)
        charge.owed = sum(before.values())
        play(rt, charge, sequence, _checker(rt, fake, invoices, before))

    run()


def test_two_partial_refunds_leave_one_live_payment_in_quickbooks(rt, fake, connected, settings):
    _books(rt, fake, connected, settings)
    [inv] = _fresh_invoices(rt, connected.company.id, set(), False)
    charge = Charge(connected.company.id, [inv.id], inv.open_balance_minor)
    play(
        rt,
        charge,
        [("refund", 1000, False, True), ("refund", 500, True, True)],
        _checker(rt, fake, [inv], {inv.id: inv.open_balance_minor}),
    )


def test_a_restatement_whose_answers_are_lost_voids_and_posts_once(rt, fake, connected, settings):
    """The void's answer and then the repost's answer are lost on the wire: each is retried with
    its own requestid, so QuickBooks still holds one live payment equal to the net."""
    _books(rt, fake, connected, settings)
    [inv] = _fresh_invoices(rt, connected.company.id, set(), False)
    charge = Charge(connected.company.id, [inv.id], inv.open_balance_minor)
    check = _checker(rt, fake, [inv], {inv.id: inv.open_balance_minor})
    play(rt, charge, [("refund", 700, False, True)], check)
    fake.drop_after_write()  # the void's answer
    fake.drop_after_write()  # the repost's answer
    assert charge.refund(rt, 300)
    settle(rt)
    check(charge)
    voided = [p for p in fake.live("Payment") if str(p.get("PrivateNote")).startswith("Voided")]
    assert len(voided) == 2  # the original and the first restatement, each voided once


def test_a_worker_that_dies_after_restating_leaves_one_live_payment(rt, fake, connected, settings):
    """The worker voided and re-posted, then died before recording it: after the lease the row
    is retried with the same keys, and QuickBooks answers with what it already did."""
    _books(rt, fake, connected, settings)
    [inv] = _fresh_invoices(rt, connected.company.id, set(), False)
    charge = Charge(connected.company.id, [inv.id], inv.open_balance_minor)
    check = _checker(rt, fake, [inv], {inv.id: inv.open_balance_minor})
    play(rt, charge, [], check)
    assert charge.refund(rt, 900)
    process_pending(rt.sessions, rt.clock, webhook_handlers(rt))  # recorded, restatement queued
    with rt.sessions() as s:
        restatement = s.scalar(select(OutboxMessage).where(OutboxMessage.kind == "ledger_reversal"))
    reverse_ledger_payment(rt, restatement)  # it reached QuickBooks ...
    with transaction(rt.sessions) as s:  # ... and the worker died before recording it
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == restatement.id)
            .values(status="sending", attempts=1, next_attempt_at=rt.clock.now())
        )
    rt.clock.advance(LEASE + timedelta(minutes=1))
    drain(rt)
    settle(rt)
    check(charge)
