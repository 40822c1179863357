"""The reminders page at scale (issue 14): a day with many messages shows them a page at a time,
with the totals, a link to the whole list as CSV and one CSRF token for the table's buttons; the
customer list pages too."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from arbridge.sync.model import Customer, Invoice
from tests.builders import SmallCompany
from tests.web.conftest import parse, sign_in

CUSTOMERS = 120  # more than two pages of messages (50 a page) and of customers


def _busy(rt):
    books = SmallCompany(slug="busy", tenant_id="books-busy")
    for n in range(CUSTOMERS):
        books = books.customer(f"C{n:03}", f"Customer {n:03}")
        # Two invoices a customer due for a step today (one email lists both).
        books = books.invoice(f"I{n:03}a", f"C{n:03}", "10.00", days_overdue=3)
        books = books.invoice(f"I{n:03}b", f"C{n:03}", "15.00", days_overdue=10)
    return books.build(rt)


def test_a_day_with_many_messages_shows_fifty_a_page_with_totals_and_the_whole_list_as_csv(
    client, rt
):
    books = _busy(rt)
    sign_in(client, rt, books.company)
    page = client.get("/c/busy/reminders")
    assert page.status_code == 200
    doc = parse(page.data)
    rows = doc.by_id("plan").find_all("tr")[1:]
    assert len(rows) == 50 and "Customer 000" in rows[0].text
    totals = doc.by_id("plan-totals").text
    assert f"{CUSTOMERS} messages about {2 * CUSTOMERS} invoices" in totals
    assert "Showing 1–50" in totals
    # One token for the whole table: its buttons post through one form.
    assert doc.by_id("plan").find_all("input", name="csrf_token") == []
    [form] = [f for f in doc.find_all("form") if f.attrs.get("id") == "plan-actions"]
    assert form.find_all("input", name="csrf_token")
    pause = rows[0].find_all("button")[0]
    assert pause.attrs["form"] == "plan-actions" and "/pause" in pause.attrs["formaction"]
    summary = doc.by_id("preview-summary").text
    assert f"{2 * CUSTOMERS} open invoices; {2 * CUSTOMERS} due for a step on this day." in summary

    last = parse(client.get("/c/busy/reminders?plan_page=3").data)
    rows = last.by_id("plan").find_all("tr")[1:]
    assert len(rows) == CUSTOMERS - 100 and "Customer 100" in rows[0].text
    assert "Page 3 of 3" in last.by_id("plan-pager").text

    href = doc.by_id("plan-csv").attrs["href"]
    download = client.get(href)
    assert download.status_code == 200 and download.mimetype == "text/csv"
    table = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    assert len(table) == 2 * CUSTOMERS
    with rt.sessions() as s:
        numbers = set(
            s.scalars(select(Invoice.number).where(Invoice.company_id == books.company.id))
        )
    assert {r["invoice"] for r in table} == numbers
    assert {r["balance"] for r in table} == {"10.00", "15.00"}
    assert {r["state"] for r in table} == {"will send"}


def test_the_pause_button_of_a_row_pauses_that_invoice(client, rt):
    books = _busy(rt)
    sign_in(client, rt, books.company)
    doc = parse(client.get("/c/busy/reminders").data)
    token = doc.by_id("plan-actions").find_all("input", name="csrf_token")[0].attrs["value"]
    button = doc.by_id("plan").find_all("tr")[1].find_all("button")[0]
    assert client.post(button.attrs["formaction"], data={"csrf_token": token}).status_code == 302
    with rt.sessions() as s:
        paused = s.scalars(select(Invoice.number).where(Invoice.paused.is_(True))).all()
    assert len(paused) == 1 and paused[0] in doc.by_id("plan").find_all("tr")[1].text


def test_the_customer_list_pages_fifty_at_a_time(client, rt):
    books = _busy(rt)
    sign_in(client, rt, books.company)
    seen = []
    url = "/c/busy/reminders"
    for _ in range(3):
        doc = parse(client.get(url).data)
        seen += [
            r.find_all("td")[0].text for r in doc.by_id("customer-sequences").find_all("tr")[1:]
        ]
        nxt = [
            a for a in doc.by_id("customers-pager").find_all("a") if a.attrs.get("rel") == "next"
        ]
        if not nxt:
            break
        url = nxt[0].attrs["href"]
    with rt.sessions() as s:
        names = sorted(
            s.scalars(select(Customer.name).where(Customer.company_id == books.company.id))
        )
    assert seen == names
