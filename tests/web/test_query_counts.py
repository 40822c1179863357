"""The owner's pages cost a fixed number of queries, whatever the number of rows they list: no
query per invoice, customer or payment in a loop."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event, select

from arbridge.sync.db import transaction
from arbridge.sync.model import CollectedAllocation, CollectedPayment, Invoice
from arbridge.sync.outbox import enqueue


@contextmanager
def counted(rt):
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(rt.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(rt.engine, "before_cursor_execute", count)


def _pay(rt, inv_id: int, n: int, refunded: bool = False) -> None:
    """n payments through arbridge, each applied in part to the invoice (and, when `refunded`,
    each with an overpayment refund waiting in the outbox)."""
    now = rt.clock.now()
    with transaction(rt.sessions) as s:
        inv = s.get(Invoice, inv_id)
        for i in range(n):
            p = CollectedPayment(
                company_id=inv.company_id,
                customer_id=inv.customer_id,
                payment_intent_id=f"pi_count_{inv_id}_{i}_{n}",
                method="card",
                currency=inv.currency,
                amount_minor=100,
                status="succeeded",
                created_at=now,
                updated_at=now,
                succeeded_at=now,
            )
            s.add(p)
            s.flush()
            s.add(
                CollectedAllocation(collected_payment_id=p.id, invoice_id=inv.id, amount_minor=100)
            )
            if refunded:
                p.amount_minor, p.unapplied_minor = 150, 50
                p.refund_key = f"stripe_refund:{p.payment_intent_id}:overpayment:1"
                enqueue(
                    s,
                    rt.clock,
                    company_id=inv.company_id,
                    kind="stripe_refund",
                    key=p.refund_key,
                    payload={"amount_minor": 50, "currency": inv.currency},
                )


def _get(owner_client, rt, path: str) -> int:
    with counted(rt) as statements:
        assert owner_client.get(path).status_code == 200
    return len(statements)


def test_the_invoice_page_costs_the_same_with_one_payment_or_six(owner_client, rt, demo_company):
    with rt.sessions() as s:
        one, six = s.scalars(
            select(Invoice.id)
            .where(Invoice.company_id == demo_company.id, Invoice.status == "open")
            .order_by(Invoice.id)
            .limit(2)
        ).all()
    _pay(rt, one, 1)
    _pay(rt, six, 6)
    owner_client.get(f"/c/demo/invoices/{one}")  # warm: the same first-request work for both
    assert _get(owner_client, rt, f"/c/demo/invoices/{one}") == _get(
        owner_client, rt, f"/c/demo/invoices/{six}"
    )


def test_refunds_cost_one_query_for_the_table_not_one_per_payment(owner_client, rt, demo_company):
    with rt.sessions() as s:
        one, six = s.scalars(
            select(Invoice.id)
            .where(Invoice.company_id == demo_company.id, Invoice.status == "open")
            .order_by(Invoice.id)
            .limit(2)
        ).all()
    _pay(rt, one, 1, refunded=True)
    _pay(rt, six, 6, refunded=True)
    page = owner_client.get(f"/c/demo/invoices/{six}").data.decode()
    assert page.count("waiting to go to Stripe") == 6
    assert _get(owner_client, rt, f"/c/demo/invoices/{one}") == _get(
        owner_client, rt, f"/c/demo/invoices/{six}"
    )
    owner_client.get("/c/demo/")
    with_seven = _get(owner_client, rt, "/c/demo/")  # seven refunds in the recent payments
    with transaction(rt.sessions) as s:
        for p in s.scalars(select(CollectedPayment)):
            p.refund_key = None
    assert _get(owner_client, rt, "/c/demo/") == with_seven - 1  # the one query for them all


def test_the_dashboard_lists_a_page_of_invoices_in_a_few_queries(owner_client, rt):
    owner_client.get("/c/demo/")
    full = _get(owner_client, rt, "/c/demo/")  # 100 invoices on the page
    few = _get(owner_client, rt, "/c/demo/?bucket=over_90")
    assert full == few
    assert full < 30


def test_the_reminders_page_read_the_sms_account_and_ledger_connection_twice(owner_client, rt):
    """Issue 14: under 20 statements. The text wording's box needs no database, and the sample
    invoice's customer and contact are one read: 23 statements before, the Twilio account and
    the ledger connection each read twice and the text replies read for a box that shows none."""
    owner_client.get("/c/demo/reminders")
    with counted(rt) as statements:
        assert owner_client.get("/c/demo/reminders").status_code == 200
    assert sum("FROM sms_accounts" in st for st in statements) <= 1
    assert sum("FROM connections" in st for st in statements) <= 1
    assert not any(st.startswith("SELECT sms_replies.id") for st in statements)  # a count is
    assert len(statements) < 20


def test_a_forecast_weeks_invoices_cost_the_same_queries_whatever_their_number(owner_client, rt):
    """Issue 14: the list filtered to a week of the forecast reads what the forecast reads, in
    a fixed number of statements, none per invoice listed."""
    owner_client.get("/c/demo/")  # today's insight, as the dashboard's links find it
    owner_client.get("/c/demo/invoices?expected=1")
    listed, counts = {}, {}
    for which in ("1", "2", "3", "later"):
        with counted(rt) as statements:
            page = owner_client.get(f"/c/demo/invoices?expected={which}")
        assert page.status_code == 200
        listed[which] = page.get_data(as_text=True).count("num expected")
        counts[which] = len(statements)
        # None per invoice: no statement run again for each row listed.
        assert max(statements.count(st) for st in statements) <= 2, which
    # Weeks listing different numbers of invoices (an empty one skips the page's holds).
    listing = {w for w, n in listed.items() if n}
    assert len({listed[w] for w in listing}) > 1, listed
    assert len({counts[w] for w in listing}) == 1, (counts, listed)
    assert counts["1"] < 25, counts
