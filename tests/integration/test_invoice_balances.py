"""An invoice's two figures (the ledger's balance, what arbridge collected that the ledger does
not show yet) through a real payment, and the one open balance and open test inside queries."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from arbridge.services.bootstrap import outbox_handlers, webhook_handlers
from arbridge.services.payments.checkout import start_checkout
from arbridge.services.payments.simulated import simulated_stripe
from arbridge.sync.db import transaction
from arbridge.sync.model import Invoice
from arbridge.sync.outbox import deliver
from arbridge.sync.store import issue_pay_token, ledger_connection, open_invoices
from arbridge.webhooks.dispatch import process_pending
from tests.conftest import sync_now
from tests.unit.sync.test_invoice_balance import CASES


def _figures(rt, invoice_id) -> tuple[int, int, int, str]:
    with rt.sessions() as s:
        inv = s.get(Invoice, invoice_id)
        return inv.ledger_balance_minor, inv.unposted_minor, inv.open_balance_minor, inv.status


def test_a_payment_collected_here_is_unposted_until_the_ledger_shows_it(rt, demo_company):
    with transaction(rt.sessions) as s:
        inv = next(
            i
            for i in open_invoices(s, demo_company.id)
            if i.currency == "USD" and i.open_balance_minor == i.total_minor
        )
        owed, invoice_id = inv.open_balance_minor, inv.id
        token = issue_pay_token(s, rt.clock, inv)
        conn = ledger_connection(s, demo_company.id)
    assert _figures(rt, invoice_id) == (owed, 0, owed, "open")

    url = start_checkout(rt, token)
    simulated_stripe(rt).complete(url.rsplit("/", 1)[-1], "card", "succeed")
    process_pending(rt.sessions, rt.clock, webhook_handlers(rt))  # recorded; write-back waits
    # The ledger's figure is what it said; the payment is arbridge's, not yet posted.
    assert _figures(rt, invoice_id) == (owed, owed, 0, "paid")

    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn, full=True)  # the ledger still shows the invoice owed in full
    assert _figures(rt, invoice_id) == (owed, owed, 0, "paid")

    deliver(rt.sessions, rt.clock, outbox_handlers(rt))  # the write-back lands
    rt.clock.advance(timedelta(minutes=1))
    sync_now(rt, conn, full=True)
    assert _figures(rt, invoice_id) == (0, 0, 0, "paid")


def test_queries_see_the_same_open_balance_and_open_test_as_a_loaded_invoice(rt, demo_company):
    statuses = ("open", "paid", "voided")
    combos = [(figures, status) for figures, _ in CASES for status in statuses]
    with transaction(rt.sessions) as s:
        invoices = s.scalars(
            select(Invoice).where(Invoice.company_id == demo_company.id).limit(len(combos))
        ).all()
        for inv, ((ledger, unposted, total), status) in zip(invoices, combos, strict=True):
            inv.ledger_balance_minor, inv.unposted_minor = ledger, unposted
            inv.total_minor, inv.status = total, status
        expected = {inv.id: (inv.open_balance_minor, inv.is_open) for inv in invoices}
    with rt.sessions() as s:
        found = s.execute(
            select(Invoice.id, Invoice.open_balance_minor, Invoice.is_open).where(
                Invoice.id.in_(expected)
            )
        ).all()
        opened = set(s.scalars(select(Invoice.id).where(Invoice.id.in_(expected), Invoice.is_open)))
    assert {i: (balance, bool(is_open)) for i, balance, is_open in found} == expected
    assert opened == {i for i, (_, is_open) in expected.items() if is_open}
