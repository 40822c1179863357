"""Issue 12's per-customer figures on the customers list and a customer's page: average days to
pay and on-time rate (invoices closed in the last 365 days), the credit limit (their own, else
the default) with their payment terms, and the insight's flags with their reasons; the list
sorts by each (the hand-worked ledger of tests/integration/test_insight.py, T = 2026-11-24)."""

from __future__ import annotations

from sqlalchemy import update

from arbridge.sync.db import transaction
from arbridge.sync.model import Customer
from tests.integration.test_insight import ledger
from tests.web.conftest import parse, sign_in


def build(rt):
    """C1 Harbor Bakery closed A1 (issued T-130, closed T-90: 40 days, 10 late), A2 (T-90 ->
    T-55: 35, 5 late), A3 (T-70 -> T-34: 36, 6 late): 37.00 days to pay, on time 0 of 3.
    C2 Cedar Studio closed E1 (T-230 -> T-180: 50, late) in the year (E0 before): 50.00, 0.00.
    C4 Elm Goods closed F1 (T-50 -> T-23: 27, early), F2 (T-40 -> T-12: 28, early): 27.50, 1.00.
    C3 Dune Supply closed nothing: n/a. Limits: C1 1000.00 of its own (owes 450.00), the
    default 100.00 for the others: C2 owes 144.68 (over), C3 110.00 (over), C4 40.00."""
    books = ledger()
    books.settings = {"credit": {"default_limit": "100.00"}}
    built = books.build(rt)
    with transaction(rt.sessions) as s:
        s.execute(
            update(Customer)
            .where(Customer.company_id == built.company.id, Customer.source_id == "C1")
            .values(credit_limit_minor=100000)
        )
    return built


def rows(client, query=""):
    table = parse(client.get(f"/c/insight/customers{query}").data).by_id("customers")
    return [
        {
            td.attrs["data-label"]: td.text.strip()
            for td in tr.find_all("td")
            if "data-label" in td.attrs
        }
        for tr in table.find("tbody").find_all("tr")
    ]


def test_the_customers_list_shows_and_sorts_by_days_to_pay_on_time_rate_limit_and_flags(client, rt):
    books = build(rt)
    sign_in(client, rt, books.company)
    found = {" ".join(r["Customer"].split()[:2]): r for r in rows(client)}
    assert found["Harbor Bakery"]["Days to pay"] == "37.00"
    assert found["Harbor Bakery"]["On time"] == "0.00"
    assert found["Harbor Bakery"]["Limit"] == "$1,000.00"
    assert found["Elm Goods"]["Days to pay"] == "27.50"
    assert found["Elm Goods"]["On time"] == "1.00"
    assert found["Elm Goods"]["Limit"] == "$100.00 (default)"
    assert found["Dune Supply"]["Days to pay"] == "n/a"
    assert "Over credit limit" in found["Cedar Studio"]["Flags"]
    assert "Over credit limit" in found["Dune Supply"]["Flags"]
    assert "credit limit" not in found["Elm Goods"]["Flags"]

    def order(sort, direction="asc"):
        return [r["Customer"].split(" ")[0] for r in rows(client, f"?sort={sort}&dir={direction}")]

    # Days to pay: Elm 27.50, Harbor 37.00, Cedar 50.00; Dune (none) last either way.
    assert order("days_to_pay") == ["Elm", "Harbor", "Cedar", "Dune"]
    assert order("days_to_pay", "desc") == ["Cedar", "Harbor", "Elm", "Dune"]
    # On time: Elm 1.00, then Harbor and Cedar 0.00; Dune (none) last.
    assert order("on_time", "desc")[0] == "Elm" and order("on_time", "desc")[-1] == "Dune"
    assert order("limit", "desc")[0] == "Harbor"
    assert set(order("flags", "desc")[:2]) == {"Cedar", "Dune"}


def test_the_customer_page_shows_terms_limit_days_to_pay_on_time_rate_and_flags(client, rt):
    books = build(rt)
    sign_in(client, rt, books.company)
    cedar = books.customer("C2").id
    page = parse(client.get(f"/c/insight/customers/{cedar}").data)
    assert page.by_id("customer-days-to-pay").text == "50.00"
    assert page.by_id("customer-on-time").text == "0.00"
    assert page.by_id("customer-limit").text == "$100.00"
    assert page.by_id("customer-terms").text.strip() != ""
    flags = page.by_id("customer-insight-flags").text
    assert "Over credit limit" in flags and "owes $144.68" in flags
