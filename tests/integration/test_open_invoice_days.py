"""The open invoices a company has due each day (`open_invoice_days`, kept by triggers since
migration 0032) always equal a straight count of its ledger, whatever wrote the invoices: a
sync and a later sync of voids, deletions and edits, payments collected here and their refunds,
edits through the ORM across every open-balance case, deletions. The dry run's counts are sums
over them, so it reads no invoice to count them (issue 14)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select, update

from arbridge.services.payments.simulated import simulated_stripe
from arbridge.services.reminders.preview import open_counts
from arbridge.sync.db import transaction
from arbridge.sync.model import Invoice, OpenInvoiceDay
from arbridge.sync.store import ledger_connection, open_invoices
from arbridge.worker import drain
from tests.builders import SmallCompany
from tests.conftest import sync_now
from tests.integration.test_payments import (  # noqa: F401 (usd_invoice: a fixture)
    collected,
    pay,
    token_for,
    usd_invoice,
)
from tests.unit.sync.test_invoice_balance import CASES
from tests.web.test_query_counts import counted


def _counted_days(s, company_id: int) -> dict:
    """Open invoices by due date, counted in the ledger."""
    return dict(
        s.execute(
            select(Invoice.due_on, func.count())
            .where(Invoice.company_id == company_id, Invoice.is_open)
            .group_by(Invoice.due_on)
        ).all()
    )


def _kept_days(s, company_id: int) -> dict:
    rows = s.execute(
        select(OpenInvoiceDay.due_on, OpenInvoiceDay.open_invoices).where(
            OpenInvoiceDay.company_id == company_id
        )
    ).all()
    assert all(n >= 0 for _, n in rows), rows
    return {day: n for day, n in rows if n}


def assert_days_agree(rt, company_id: int) -> int:
    """The kept days equal the ledger's count, and so do the dry run's two figures on either side
    of every due date; returns the number of open invoices."""
    with rt.sessions() as s:
        counted_days = _counted_days(s, company_id)
        assert _kept_days(s, company_id) == counted_days
        for day in sorted(counted_days)[:: max(1, len(counted_days) // 8)]:
            for after in (day - timedelta(days=1), day):
                later = sum(n for d, n in counted_days.items() if d > after)
                assert open_counts(s, company_id, after) == (sum(counted_days.values()), later)
    return sum(counted_days.values())


def _conn(rt, company):
    with rt.sessions() as s:
        return ledger_connection(s, company.id)


def test_the_days_equal_the_ledger_s_count_after_the_demo_sync_and_read_no_invoice(
    rt, demo_company
):
    assert assert_days_agree(rt, demo_company.id) > 50
    with rt.sessions() as s, counted(rt) as statements:
        open_counts(s, demo_company.id, rt.clock.now().date())
    assert len(statements) == 1
    assert "FROM open_invoice_days" in statements[0], statements
    assert " invoices" not in statements[0], statements


def test_the_days_follow_a_sync_of_voids_deletions_edits_and_new_invoices(rt, demo_company, clock):
    conn = _conn(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    with rt.sessions() as s:
        opened = [i.source_id for i in open_invoices(s, demo_company.id)][:6]
    before = assert_days_agree(rt, demo_company.id)
    ledger.void_invoice(opened[0])
    ledger.delete_invoice(opened[1])
    with ledger.change() as state:
        for inv in state["Invoice"]:
            if inv["id"] == opened[2]:  # pushed back a month
                inv["dueDate"] = (
                    ledger.clock.now().date() + timedelta(days=31 + len(inv["dueDate"]))
                ).isoformat()
                ledger.touch(state, inv)
            if inv["id"] == opened[3]:  # paid in the ledger
                inv.update(status="PAID", balance="0.00")
                ledger.touch(state, inv)
            if inv["id"] == opened[4]:  # part paid: still open, same day
                inv["balance"] = "1.00"
                ledger.touch(state, inv)
        template = next(i for i in state["Invoice"] if i["id"] == opened[5])
    ledger.add_invoice(
        **{k: v for k, v in template.items() if k not in ("id", "seq", "version", "updatedAt")}
    )
    clock.advance(timedelta(minutes=20))
    sync_now(rt, conn)
    assert assert_days_agree(rt, demo_company.id) == before - 3 + 1
    clock.advance(timedelta(minutes=20))
    sync_now(rt, conn, full=True)  # the same readings again: nothing changes
    assert assert_days_agree(rt, demo_company.id) == before - 3 + 1


def test_the_days_follow_a_payment_collected_here_and_its_refund(
    rt,
    demo_company,
    usd_invoice,  # noqa: F811
):
    before = assert_days_agree(rt, demo_company.id)
    pay(rt, token_for(rt, usd_invoice))
    drain(rt)  # recorded: unposted, then the write-back lands
    assert assert_days_agree(rt, demo_company.id) == before - 1
    sync_now(rt, _conn(rt, demo_company), full=True)
    assert assert_days_agree(rt, demo_company.id) == before - 1

    simulated_stripe(rt).refund(collected(rt)[0].payment_intent_id, None, "refund-days")
    drain(rt)
    assert assert_days_agree(rt, demo_company.id) == before
    sync_now(rt, _conn(rt, demo_company), full=True)
    assert assert_days_agree(rt, demo_company.id) == before


def test_the_days_follow_every_open_balance_case_moved_days_and_deleted_invoices(rt):
    books = SmallCompany(slug="days", tenant_id="days").customer("C", "Customer")
    statuses = ("open", "paid", "voided")
    combos = [(figures, status) for figures, _ in CASES for status in statuses]
    for n in range(len(combos) + 4):
        books = books.invoice(f"I{n}", "C", "100.00", days_overdue=n % 5 - 2)
    books = books.build(rt)
    company_id = books.company.id
    assert assert_days_agree(rt, company_id) == len(combos) + 4
    with transaction(rt.sessions) as s:  # one ORM flush: an UPDATE per invoice
        invoices = s.scalars(
            select(Invoice).where(Invoice.company_id == company_id).order_by(Invoice.id)
        ).all()
        for inv, ((ledger, unposted, total), status) in zip(invoices, combos, strict=False):
            inv.ledger_balance_minor, inv.unposted_minor = ledger, unposted
            inv.total_minor, inv.status = total, status
        expected = sum(1 for inv in invoices if inv.is_open)
    assert assert_days_agree(rt, company_id) == expected
    with transaction(rt.sessions) as s:  # one statement over many rows: days move, some reopen
        s.execute(
            update(Invoice)
            .where(Invoice.company_id == company_id, Invoice.id % 2 == 0)
            .values(due_on=Invoice.issued_on)
        )
        s.execute(
            update(Invoice)
            .where(Invoice.company_id == company_id, Invoice.id % 3 == 0)
            .values(status="open", unposted_minor=0, ledger_balance_minor=5_00)
        )
    assert assert_days_agree(rt, company_id) > expected
    with transaction(rt.sessions) as s:
        s.execute(delete(Invoice).where(Invoice.company_id == company_id, Invoice.id % 4 == 1))
    assert assert_days_agree(rt, company_id) > 0
    with transaction(rt.sessions) as s:
        s.execute(delete(Invoice).where(Invoice.company_id == company_id))
    assert assert_days_agree(rt, company_id) == 0
    with rt.sessions() as s:
        assert open_counts(s, company_id, rt.clock.now().date()) == (0, 0)
