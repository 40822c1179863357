"""Day one at scale: a ledger with thousands of old overdue invoices. The onboarding choice's
dry run (tomorrow's reminders under the choice) shows them 50 a page with the day's totals and the
whole list as CSV, as the reminders page does, in a fixed number of statements."""

from __future__ import annotations

import csv
import io

from arbridge.sync.connections import hold_reminders_until_chosen
from arbridge.sync.db import transaction
from arbridge.sync.model import Company
from tests.builders import SmallCompany
from tests.web.conftest import parse, sign_in
from tests.web.test_query_counts import counted

BIG = 1500  # customers, each with two overdue invoices: 3,000 invoices


def _ledger(rt, slug: str, customers: int):
    books = SmallCompany(slug=slug, tenant_id=f"books-{slug}")
    for n in range(customers):
        books = books.customer(f"C{n:04}", f"Customer {n:04}")
        books = books.invoice(f"I{n:04}a", f"C{n:04}", "10.00", days_overdue=20)
        books = books.invoice(f"I{n:04}b", f"C{n:04}", "15.00", days_overdue=200)
    built = books.build(rt)
    with transaction(rt.sessions) as s:
        hold_reminders_until_chosen(s.get(Company, built.company.id))
    return built


def test_the_onboarding_dry_run_of_thousands_of_overdue_invoices_renders_them_all(client, rt):
    books = _ledger(rt, "old", BIG)
    sign_in(client, rt, books.company)
    page = client.get("/c/old/reminders/start?mode=first_step")
    assert page.status_code == 200
    doc = parse(page.data)
    rows = doc.by_id("plan").find_all("tr")[1:]
    assert len(rows) == 50 and "Customer 0000" in rows[0].text
    totals = doc.by_id("plan-totals").text
    assert f"{BIG} messages about {2 * BIG} invoices" in totals
    assert "Showing 1–50" in totals
    # The confirm form is still there under the first page.
    assert doc.find("form", id="start-confirm") is not None

    pager = doc.by_id("plan-pager")
    assert f"Page 1 of {-(-BIG // 50)}" in pager.text
    [nxt] = [a for a in pager.find_all("a") if a.attrs.get("rel") == "next"]
    assert "mode=first_step" in nxt.attrs["href"]
    second = parse(client.get(nxt.attrs["href"]).data)
    rows = second.by_id("plan").find_all("tr")[1:]
    assert len(rows) == 50 and "Customer 0050" in rows[0].text

    skip = parse(client.get("/c/old/reminders/start?mode=skip_older&days=100&plan_page=2").data)
    href = [a for a in skip.by_id("plan-pager").find_all("a") if a.attrs.get("rel") == "prev"]
    assert "days=100" in href[0].attrs["href"] and "mode=skip_older" in href[0].attrs["href"]

    download = client.get(doc.by_id("plan-csv").attrs["href"])
    assert download.status_code == 200 and download.mimetype == "text/csv"
    table = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    assert len(table) == 2 * BIG
    assert {r["state"] for r in table} == {"will send"}
    assert {r["step"] for r in table} == {rows[0].find_all("td")[2].text.strip()}


def test_the_onboarding_dry_run_costs_the_same_statements_for_60_or_1500_customers(client, rt):
    small = _ledger(rt, "few", 60)
    big = _ledger(rt, "many", BIG)
    costs = []
    for books in (small, big):
        sign_in(client, rt, books.company)
        with counted(rt) as statements:
            page = client.get(f"/c/{books.company.slug}/reminders/start?mode=first_step")
        assert page.status_code == 200
        costs.append(len(statements))
    assert costs[0] == costs[1], costs
