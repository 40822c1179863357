"""The report's flags (issue 12): slowing customers, growing partial payments, and customers
near or over their credit limit, on customers whose behaviour changes at a known date and on
customers who must not be flagged. Worked out by hand; T is 2026-11-24.

`invoice(days_overdue=X)` is due T-X (issued 30 days before); `payment(days_ago=Y)` applies on
T-Y, so an invoice paid in full that way closed X - Y days late.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select, update

from arbridge.sync.db import transaction
from arbridge.sync.insight_store import insight, insight_dict
from arbridge.sync.model import Customer
from arbridge.sync.store import get_company, kpi_report
from tests.builders import SmallCompany

T = date(2026, 11, 24)


def closings(books: SmallCompany, customer: str, prefix: str, paid: list[tuple[int, int]]):
    """Invoices of 100.00 each due T-X and paid in full on T-Y, for each (X, Y)."""
    for n, (due_ago, paid_ago) in enumerate(paid):
        books.invoice(f"{prefix}{n}", customer, "100.00", days_overdue=due_ago)
        books.payment(f"{prefix}{n}", "100.00", days_ago=paid_ago)


def ledger() -> SmallCompany:
    books = SmallCompany(slug="flags", settings={"credit": {"default_limit": "2000.00"}})
    for cid, name, currency in [
        ("S1", "Slow Co", "USD"),
        ("S2", "Steady Ltd", "USD"),
        ("S3", "Almost Inc", "USD"),
        ("P1", "Parts & Co", "USD"),
        ("L1", "Near Co", "USD"),
        ("L2", "Over GmbH", "EUR"),
        ("L3", "Roomy Co", "USD"),
        ("N1", "New Co", "USD"),
    ]:
        books.customer(cid, name, currency=currency)
    # S1 slows down: 2, 4, 6 days late (closed T-198, T-176, T-154), then 15, 18, 21 (closed
    # T-85, T-62, T-39). Last 3: (15 + 18 + 21) / 3 = 18; before: (2 + 4 + 6) / 3 = 4.
    closings(
        books, "S1", "S1-", [(200, 198), (180, 176), (160, 154), (100, 85), (80, 62), (60, 39)]
    )
    # S2 pays 5 days late every time: never slowing.
    closings(books, "S2", "S2-", [(d, d - 5) for d in (200, 170, 140, 110, 80, 50)])
    # S3: on time, then 10, 10, 9 late: (29 / 3 = 9.67) - 0 < 10, not slowing.
    closings(books, "S3", "S3-", [(200, 200), (170, 170), (140, 140), (90, 80), (70, 60), (50, 41)])
    # P1: three invoices paid in one go, then three paid in part: P1-3 in two payments (closed),
    # P1-4 half paid (open 50.00), P1-5 not paid at all (open 100.00, not in part).
    closings(books, "P1", "P1-", [(150, 150), (130, 130), (110, 110)])
    books.invoice("P1-3", "P1", "100.00", days_overdue=40)
    books.payment("P1-3", "60.00", days_ago=45).payment("P1-3", "40.00", days_ago=40)
    books.invoice("P1-4", "P1", "100.00", days_overdue=20).payment("P1-4", "50.00", days_ago=20)
    books.invoice("P1-5", "P1", "100.00", days_overdue=-5)
    # Limits (set below): L1 owes 950.00 against 1000.00; L2 EUR 1000.00 = 1084.20 against
    # 1000.00; L3 899.99 against 1000.00; N1 1900.00 against the default 2000.00.
    books.invoice("L1-0", "L1", "950.00", days_overdue=-10)
    books.invoice("L2-0", "L2", "1000.00", days_overdue=-10)
    books.invoice("L3-0", "L3", "899.99", days_overdue=-10)
    books.invoice("N1-0", "N1", "1000.00", days_overdue=5)
    books.invoice("N1-1", "N1", "900.00", days_overdue=-5)
    return books


def build(rt):
    books = ledger().build(rt)
    with transaction(rt.sessions) as s:
        s.execute(
            update(Customer)
            .where(
                Customer.company_id == books.company.id,
                Customer.source_id.in_(["L1", "L2", "L3"]),
            )
            .values(credit_limit_minor=100000)
        )
    return books


def report_flags(rt, as_of: date = T) -> list[dict]:
    with rt.sessions() as s:
        company = get_company(s, "flags")
        return insight_dict(insight(s, company, as_of, kpi_report(s, company, as_of, 90)))["flags"]


def test_flags_on_a_ledger_with_changes_and_customers_that_must_not_be_flagged(rt):
    build(rt)
    assert report_flags(rt) == [
        {
            "customer": "Near Co",
            "customer_id": "L1",
            "kind": "near_limit",
            # 950.00 >= 90% of 1000.00 = 900.00, and not over it
            "reason": "owes 950.00 USD on open invoices against a limit of 1000.00",
        },
        {
            "customer": "New Co",
            "customer_id": "N1",
            "kind": "near_limit",
            # 1000.00 + 900.00 = 1900.00 >= 90% of the default 2000.00 = 1800.00
            "reason": "owes 1900.00 USD on open invoices against a limit of 2000.00",
        },
        {
            "customer": "Over GmbH",
            "customer_id": "L2",
            "kind": "over_limit",
            # EUR 1000.00 x 1.0842 = 1084.20 > 1000.00
            "reason": "owes 1084.20 USD on open invoices against a limit of 1000.00",
        },
        {
            "customer": "Parts & Co",
            "customer_id": "P1",
            "kind": "partials_growing",
            # last 3 issued: P1-3 (two payments), P1-4 (half paid), P1-5 (unpaid): 2 in part;
            # before: P1-0..2 each paid in one go: 0 of 3. 2/3 - 0 >= 1/3.
            "reason": "paid 2 of the last 3 invoices in part, against 0 of 3 before",
        },
        {
            "customer": "Slow Co",
            "customer_id": "S1",
            "kind": "slowing",
            # (15 + 18 + 21) / 3 = 18 against (2 + 4 + 6) / 3 = 4: 14 more, >= 10
            "reason": "paid the last 3 invoices 18 days late on average, against 4 before",
        },
    ]
    # Not flagged: Steady Ltd (5 late throughout), Almost Inc (9.67 more), Roomy Co (899.99 is
    # under 90% of 1000.00), and Parts & Co's limit (owes 150.00 of the default 2000.00).


def test_a_slowing_customer_is_not_flagged_before_the_change_shows(rt):
    build(rt)
    # On T-50 Slow Co had closed 5: last 3 (6 + 15 + 18) / 3 = 13, earlier only 2: no flag.
    # On T-39 the sixth closes: 18 against 4.
    assert "S1" not in {f["customer_id"] for f in report_flags(rt, T - timedelta(days=50))}
    assert "S1" in {f["customer_id"] for f in report_flags(rt, T - timedelta(days=39))}
    # Parts & Co's partials grow only once P1-4 takes its part payment (T-20): on T-21 the last
    # 3 issued are P1-3 (paid in part), P1-4 (nothing paid yet) and P1-5 (issued T-25): 1 of 3.
    assert "P1" not in {f["customer_id"] for f in report_flags(rt, T - timedelta(days=21))}


def test_the_daily_run_tells_the_owner_of_customers_over_or_near_their_limit_once_a_day(rt):
    from arbridge.services.insight.limits import tell_limits
    from arbridge.sync.model import MailMessage, OutboxMessage
    from arbridge.worker import drain

    books = build(rt)
    with rt.sessions() as s:
        company = get_company(s, "flags")
        s.expunge(company)
    assert tell_limits(rt, company) == 3  # Near Co, New Co, Over GmbH
    assert tell_limits(rt, company) == 3  # the same day again: queued once
    with rt.sessions() as s:
        keys = s.scalars(
            select(OutboxMessage.key).where(OutboxMessage.key.like("owner:credit-limits:%"))
        ).all()
    assert len(keys) == 1
    drain(rt)
    with rt.sessions() as s:
        mail = s.scalars(
            select(MailMessage).where(MailMessage.subject.like("%credit limit%"))
        ).one()
    assert mail.subject == "1 customer over their credit limit"
    assert "Over GmbH: owes 1084.20 USD" in mail.text_body and "Near Co" in mail.text_body
    assert "Parts & Co" not in mail.text_body  # partials, not limits
    del books


def test_no_limits_no_limit_email(rt):
    from arbridge.services.insight.limits import tell_limits

    books = (
        SmallCompany(slug="nolimits")
        .customer("C1", "Plain Co")
        .invoice("I1", "C1", "5000.00", days_overdue=3)
        .build(rt)
    )
    assert tell_limits(rt, books.company) == 0
