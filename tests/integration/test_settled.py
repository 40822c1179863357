"""The figures stored at sync for the insight (collections.settled, sync.settled_store) agree
with a computation from scratch over the raw rows, after a first sync, a partial payment, a
credit note, voids, a second currency, a restatement that reopens an invoice, and resyncs.

From scratch: the receivables on a day D are, per the definition, the sum over the invoices
that count issued on or before D of home(total - what live allocations dated on or before D
applied), each converted at its own rate and rounded once; an invoice's closing day is the one
`store.allocations_to` (running sums in SQL) finds.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from arbridge.collections.insight import home_minor
from arbridge.collections.kpis import Receivables, receivables_on
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, CreditNote, Invoice, Payment, PaymentAllocation
from arbridge.sync.settled_store import issued_by_day, settled_by_day
from arbridge.sync.store import allocations_to
from tests.integration.test_kpis import T, ledger

GONE = ("voided", "deleted")
FAR = T + timedelta(days=400)


def _live_allocations(s, company: Company) -> list[tuple[int, date, int]]:
    """(invoice id, date, amount) of every allocation whose payment or credit note counts."""
    rows = s.execute(
        select(
            PaymentAllocation.invoice_id,
            func.coalesce(PaymentAllocation.applied_on, Payment.received_on, CreditNote.issued_on),
            PaymentAllocation.amount_minor,
        )
        .outerjoin(Payment, Payment.id == PaymentAllocation.payment_id)
        .outerjoin(CreditNote, CreditNote.id == PaymentAllocation.credit_note_id)
        .where(
            PaymentAllocation.company_id == company.id,
            func.coalesce(Payment.status, "closed").not_in(GONE),
            func.coalesce(CreditNote.status, "open").not_in(GONE),
        )
    ).all()
    return [tuple(row) for row in rows]


def _from_scratch(s, company: Company, days: list[date]) -> list[Receivables]:
    invoices = s.execute(
        select(
            Invoice.id,
            Invoice.issued_on,
            Invoice.due_on,
            Invoice.currency,
            Invoice.exchange_rate,
            Invoice.total_minor,
        ).where(Invoice.company_id == company.id, Invoice.status.not_in(GONE))
    ).all()
    allocations = s.execute(
        select(
            PaymentAllocation.invoice_id,
            func.coalesce(PaymentAllocation.applied_on, Payment.received_on, CreditNote.issued_on),
            PaymentAllocation.amount_minor,
            Payment.status,
            CreditNote.status,
        )
        .outerjoin(Payment, Payment.id == PaymentAllocation.payment_id)
        .outerjoin(CreditNote, CreditNote.id == PaymentAllocation.credit_note_id)
        .where(PaymentAllocation.company_id == company.id)
    ).all()
    out = []
    for day in days:
        total = current = 0
        for invoice_id, issued_on, due_on, currency, rate, amount in invoices:
            if issued_on > day:
                continue
            applied = sum(
                a
                for i, on, a, pay, credit in allocations
                if i == invoice_id and on <= day and pay not in GONE and credit not in GONE
            )
            owed = home_minor(amount - applied, currency, Decimal(rate), company.home_currency)
            total += owed
            current += owed if due_on >= day else 0
        out.append(Receivables(total, current))
    return out


def _check(rt, slug_company: Company) -> None:
    days = [T - timedelta(days=k) for k in range(0, 200, 3)] + [T + timedelta(days=5)]
    days.sort()
    with rt.sessions() as s:
        company = s.get(Company, slug_company.id)
        stored = receivables_on(
            days,
            issued_by_day(s, company.id, FAR),
            settled_by_day(s, company.id, FAR),
        )
        assert stored == _from_scratch(s, company, days)
        live = _live_allocations(s, company)
        # Each invoice's closing, against the running sums of store.allocations_to.
        done = allocations_to(company.id, FAR, FAR)
        closings = dict(
            s.execute(
                select(done.c.invoice_id, done.c.closing)
                .join(Invoice, Invoice.id == done.c.invoice_id)
                .where(done.c.by_end >= Invoice.total_minor)
            ).all()
        )
        for inv in s.scalars(select(Invoice).where(Invoice.company_id == company.id)):
            if inv.status in GONE:
                assert (inv.home_total_minor, inv.closed_on) == (None, None), inv.source_id
                continue
            assert inv.home_total_minor == home_minor(
                inv.total_minor, inv.currency, inv.exchange_rate, company.home_currency
            )
            mine = [(on, amount) for i, on, amount in live if i == inv.id]
            applied = sum(amount for _on, amount in mine)
            assert (
                inv.applied_minor,
                inv.settled_days,
                inv.last_settled_on,
                inv.home_left_minor,
            ) == (
                applied,
                len({on for on, _a in mine}),
                max((on for on, _a in mine), default=None),
                home_minor(
                    inv.total_minor - applied,
                    inv.currency,
                    inv.exchange_rate,
                    company.home_currency,
                ),
            ), inv.source_id
            if inv.closing_irregular:
                assert inv.closed_on is None
                continue
            assert inv.closed_on == closings.get(inv.id), inv.source_id
            if inv.closed_on is not None:
                assert inv.days_to_pay == (inv.closed_on - inv.issued_on).days
                assert inv.days_late == (inv.closed_on - inv.due_on).days


def test_stored_figures_agree_with_the_ledger_from_scratch_after_syncs_and_changes(rt):
    books = ledger().build(rt)
    company = books.company
    _check(rt, company)
    with rt.sessions() as s:
        assert (
            s.scalar(
                select(func.count()).where(
                    Invoice.company_id == company.id, Invoice.closed_on.is_not(None)
                )
            )
            == 3
        )  # I1 (T-60), I2 (T-25), I5 (by CN1, T-5)

    # The ledger voids I1's second payment and I3, and takes a part payment on I4 (EUR):
    # I1 reopens (its closing is gone), I3 leaves the receivables.
    state = books.ledger.read()
    second = next(
        p
        for p in state["Payment"]
        if p["applied"][0]["invoiceId"] == "I1" and p["amount"] == "600.00"
    )
    books.ledger.void_payment(second["id"])
    books.ledger.void_invoice("I3")
    books.sync()
    _check(rt, company)
    assert books.invoice("I1").closed_on is None
    assert books.invoice("I3").home_total_minor is None

    # A restatement recorded through the ORM: I2's payment is cut by 100.00 (it reopens after
    # closing), then a new allocation closes it again: its closing now depends on the day.
    with transaction(rt.sessions) as s:
        i2 = s.scalar(
            select(Invoice).where(Invoice.company_id == company.id, Invoice.source_id == "I2")
        )
        s.add(
            PaymentAllocation(
                company_id=company.id,
                invoice_id=i2.id,
                credit_note_id=s.scalar(
                    select(CreditNote.id).where(
                        CreditNote.company_id == company.id, CreditNote.source_id == "CN1"
                    )
                ),
                amount_minor=-100_00,
                applied_on=T - timedelta(days=20),
            )
        )
    _check(rt, company)
    with transaction(rt.sessions) as s:
        paid_i2 = s.scalar(
            select(PaymentAllocation.payment_id).where(
                PaymentAllocation.invoice_id == books.invoice("I2").id,
                PaymentAllocation.payment_id.is_not(None),
            )
        )
        s.add(
            PaymentAllocation(
                company_id=company.id,
                invoice_id=books.invoice("I2").id,
                payment_id=s.scalar(
                    select(Payment.id)
                    .where(Payment.company_id == company.id, Payment.id != paid_i2)
                    .limit(1)
                ),
                amount_minor=100_00,
                applied_on=T - timedelta(days=10),
            )
        )
    assert books.invoice("I2").closing_irregular
    _check(rt, company)

    # A payment voided through the ORM (as a reversal records it): its invoice's figures follow.
    with transaction(rt.sessions) as s:
        eur = s.scalar(
            select(Payment).where(Payment.company_id == company.id, Payment.currency == "EUR")
        )
        eur.status = "voided"
    _check(rt, company)
    # A full resync states every payment and credit note again.
    books.sync(full=True)
    _check(rt, company)


def test_an_invoice_read_again_with_new_dates_moves_its_allocations_figures(rt):
    """The figures go in with the invoice's upsert (settled_store.settle_rows): an invoice
    already stored and settled, read again with a later issue date and another due date,
    takes its allocations' figures along (each counts from max(its date, the new issue date),
    under the new due date)."""
    books = ledger().build(rt)
    company = books.company
    i1 = books.invoice("I1")
    with books.ledger.change() as state:
        raw = books.ledger.find(state, "Invoice", "I1")
        raw["date"] = (i1.issued_on + timedelta(days=40)).isoformat()
        raw["dueDate"] = (i1.due_on + timedelta(days=45)).isoformat()
        books.ledger.touch(state, raw)
    books.sync()
    _check(rt, company)
    moved = books.invoice("I1")
    assert moved.issued_on == i1.issued_on + timedelta(days=40)
    with rt.sessions() as s:
        figures = s.execute(
            select(
                func.coalesce(PaymentAllocation.applied_on, Payment.received_on),
                PaymentAllocation.counted_on,
                PaymentAllocation.due_on,
            )
            .join(Payment, Payment.id == PaymentAllocation.payment_id)
            .where(PaymentAllocation.invoice_id == moved.id, Payment.status.not_in(GONE))
        ).all()
    assert figures
    for on, counted_on, due_on in figures:
        assert (counted_on, due_on) == (max(on, moved.issued_on), moved.due_on)
