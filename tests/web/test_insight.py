"""The customers and cash page: flags with each customer's payment terms, a higher credit limit
proposed after a run of on-time payments and approved or declined in one click (CSRF-checked),
a customer's own limit, the dashboard's credit warning, and the credit settings."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

from sqlalchemy import select, update

from arbridge.collections.policy import policy
from arbridge.sync.db import transaction
from arbridge.sync.model import Activity, Company, Customer
from tests.builders import SmallCompany
from tests.integration.test_flags import closings
from tests.web.conftest import csrf_token, form_fields, parse, sign_in

T = date(2026, 11, 24)
URL = "/c/credit/insight"


def build(rt):
    """R1 Reliable Co: 6 invoices each paid on or before its due date, own limit 1000.00:
      1000.00 + 25% = 1250.00 proposed.
    R2 Prompt Ltd: 6 on time, no limit of its own: the default 500.00 + 25% = 625.00.
    R3 Mostly Co: 7 closings, the 4th newest 3 days late: a run of 3, nothing proposed.
    X1 Over Co: owes 600.00 against the default 500.00: over its limit."""
    books = SmallCompany(slug="credit", settings={"credit": {"default_limit": "500.00"}})
    for cid, name in [
        ("R1", "Reliable Co"),
        ("R2", "Prompt Ltd"),
        ("R3", "Mostly Co"),
        ("X1", "Over Co"),
    ]:
        books.customer(cid, name)
    closings(books, "R1", "R1-", [(d, d + 2) for d in (200, 170, 140, 110, 80, 50)])
    closings(books, "R2", "R2-", [(d, d) for d in (190, 160, 130, 100, 70, 40)])
    closings(
        books,
        "R3",
        "R3-",
        [(210, 210), (180, 180), (150, 150), (120, 117), (90, 90), (60, 60), (30, 30)],
    )
    books.invoice("X1-0", "X1", "600.00", days_overdue=3)
    built = books.build(rt)
    with transaction(rt.sessions) as s:
        s.execute(
            update(Customer)
            .where(Customer.company_id == built.company.id, Customer.source_id == "R1")
            .values(credit_limit_minor=100000)
        )
    return built


def customer(rt, source_id: str) -> Customer:
    with rt.sessions() as s:
        row = s.scalar(select(Customer).where(Customer.source_id == source_id))
        s.expunge(row)
        return row


def signed_in(client, rt):
    books = build(rt)
    sign_in(client, rt, books.company)
    return books


def test_proposals_after_a_run_of_on_time_payments_with_terms(client, rt):
    signed_in(client, rt)
    page = client.get(URL)
    assert page.status_code == 200
    doc = parse(page.data)
    rows = {
        r.attrs["data-customer"]: [td.text.strip() for td in r.find_all("td")][:5]
        for r in doc.by_id("proposals").find_all("tr")
        if "data-customer" in r.attrs
    }
    assert rows == {
        "R1": ["Reliable Co", "Net 30", "6", "$1,000.00", "$1,250.00"],
        "R2": ["Prompt Ltd", "Net 30", "6", "$500.00", "$625.00"],
    }
    # Over Co owes 600.00 against the default 500.00; its terms are shown beside it.
    flag = doc.by_id("flags").find("tr", **{"data-customer": "X1"})
    assert flag is not None and flag.attrs["data-kind"] == "over_limit"
    assert "Net 30" in flag.text
    # As money on the page (it read "owes 600.00 USD ... a limit of 500.00"); the report's
    # JSON keeps plain decimals.
    assert "owes $600.00 on open invoices against a limit of $500.00" in flag.text


def _button_form(client, action: str) -> dict[str, str]:
    doc = parse(client.get(URL).data)
    form = doc.find("form", action=action)
    assert form is not None, action
    return form_fields(form)


def test_approving_raises_the_limit_once_and_logs_it(client, rt):
    signed_in(client, rt)
    r1 = customer(rt, "R1")
    action = f"{URL}/customers/{r1.id}/limit/approve"
    response = client.post(action, data=_button_form(client, action))
    assert response.status_code == 302
    after = customer(rt, "R1")
    assert after.credit_limit_minor == 125000 and after.limit_reviewed_on == T
    # The run counts only payments after the review: nothing is proposed again.
    doc = parse(client.get(URL).data)
    assert doc.by_id("proposals").find("tr", **{"data-customer": "R1"}) is None
    # A second click (a stale page) changes nothing and says so.
    again = client.post(action, data={"csrf_token": csrf_token(client.get(URL).data)})
    assert again.status_code == 302
    assert customer(rt, "R1").credit_limit_minor == 125000
    assert "No higher limit is proposed for Reliable Co" in client.get(URL).get_data(as_text=True)
    with rt.sessions() as s:
        kinds = s.scalars(select(Activity.kind).where(Activity.customer_id == r1.id)).all()
    assert kinds == ["credit_limit.approved"]


def test_declining_keeps_the_limit_and_waits_for_a_new_run(client, rt):
    signed_in(client, rt)
    r2 = customer(rt, "R2")
    action = f"{URL}/customers/{r2.id}/limit/decline"
    assert client.post(action, data=_button_form(client, action)).status_code == 302
    after = customer(rt, "R2")
    assert after.credit_limit_minor is None and after.limit_reviewed_on == T
    doc = parse(client.get(URL).data)
    assert doc.by_id("proposals").find("tr", **{"data-customer": "R2"}) is None


def test_approve_without_the_csrf_token_is_refused(client, rt):
    signed_in(client, rt)
    r1 = customer(rt, "R1")
    response = client.post(f"{URL}/customers/{r1.id}/limit/approve", data={})
    assert response.status_code == 400
    assert customer(rt, "R1").credit_limit_minor == 100000


def test_setting_a_customers_own_limit_and_a_bad_amount(client, rt):
    signed_in(client, rt)
    x1 = customer(rt, "X1")
    action = f"{URL}/customers/{x1.id}/limit"
    data = _button_form(client, action)
    bad = client.post(action, data={**data, "limit": "12,5e3"}, follow_redirects=True)
    assert bad.status_code == 200 and "Traceback" not in bad.get_data(as_text=True)
    assert customer(rt, "X1").credit_limit_minor is None
    client.post(action, data={**data, "limit": "700"})
    assert customer(rt, "X1").credit_limit_minor == 70000
    # 600.00 against 700.00 is under 90% (630.00): no flag left.
    doc = parse(client.get(URL).data)
    assert doc.by_id("flags").find("tr", **{"data-customer": "X1"}) is None
    client.post(action, data={**data, "limit": ""})
    assert customer(rt, "X1").credit_limit_minor is None  # back to the default


def test_the_dashboard_warns_of_customers_at_their_limit(client, rt):
    signed_in(client, rt)
    doc = parse(client.get("/c/credit/").data)
    warning = doc.by_id("credit-warnings")
    assert warning is not None
    assert [li.attrs["data-customer"] for li in warning.find_all("li")] == ["X1"]
    assert "Over Co is over their limit" in " ".join(warning.text.split())


def test_the_dashboards_warning_links_to_the_customers_invoices_and_follows_a_new_limit(client, rt):
    """The dashboard's insight is stored between views: a limit the owner raises (an ORM
    write) shows on the next view, and each warned customer links to their open invoices."""
    signed_in(client, rt)
    x1 = customer(rt, "X1")
    link = parse(client.get("/c/credit/").data).by_id("credit-warnings").find("li").find("a")
    assert link.attrs["href"] == f"/c/credit/customers/{x1.id}#open-invoices"
    assert client.get(link.attrs["href"]).status_code == 200
    action = f"{URL}/customers/{x1.id}/limit"
    client.post(action, data={**_button_form(client, action), "limit": "100000"})
    assert parse(client.get("/c/credit/").data).by_id("credit-warnings") is None


def test_another_companys_customer_is_not_found(client, rt, other_company):
    signed_in(client, rt)
    with rt.sessions() as s:
        theirs = s.scalar(
            select(Customer.id).where(Customer.company_id == other_company.company.id)
        )
    token = csrf_token(client.get(URL).data)
    response = client.post(f"{URL}/customers/{theirs}/limit", data={"csrf_token": token})
    assert response.status_code == 404


def test_the_credit_settings_are_saved(client, rt):
    books = signed_in(client, rt)
    settings = "/c/credit/settings"
    form = parse(client.get(settings).data).find("form", action=f"{settings}/credit")
    data = form_fields(form)
    assert data["credit-credit_default_limit"] == "500.00"
    assert data["credit-credit_on_time_run"] == "6"
    data.update(
        {
            "credit-credit_default_limit": "800",
            "credit-credit_on_time_run": "4",
            "credit-credit_raise_percent": "10",
        }
    )
    assert client.post(f"{settings}/credit", data=data).status_code == 302
    with rt.sessions() as s:
        stored = s.get(Company, books.company.id).settings
    pol = policy(stored)
    assert (pol.credit_default_limit, pol.credit_on_time_run, pol.credit_raise_percent) == (
        800,
        4,
        10,
    )
    bad = client.post(f"{settings}/credit", data={**data, "credit-credit_on_time_run": "0"})
    assert bad.status_code == 400


def _csv_rows(client, name: str) -> list[list[str]]:
    response = client.get(f"/c/credit/export/{name}.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="credit-{name}-2026-11-24.csv"'
    )
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_csv_exports_linked_from_the_dashboard_with_formulas_neutralised(client, rt):
    books = signed_in(client, rt)
    with transaction(rt.sessions) as s:
        s.execute(
            update(Customer)
            .where(Customer.company_id == books.company.id, Customer.source_id == "X1")
            .values(name='=HYPERLINK("http://evil.example","Over Co")')
        )
    links = parse(client.get("/c/credit/").data).by_id("exports").find_all("a")
    assert [a.attrs["href"] for a in links] == [
        "/c/credit/export/aging-by-customer.csv",
        "/c/credit/export/flagged-customers.csv",
        "/c/credit/export/forecast.csv",
        "/c/credit/export/kpis-by-month.csv",
    ]
    aging = _csv_rows(client, "aging-by-customer")
    assert aging[0] == [
        "Customer",
        "Ledger id",
        "Payment terms",
        "Not yet due (USD)",
        "1–30 days (USD)",
        "31–60 days (USD)",
        "61–90 days (USD)",
        "Over 90 days (USD)",
        "Total (USD)",
        "Open invoices",
    ]
    # Only Over Co owes: 600.00, 3 days overdue.
    assert aging[1][:3] == ['\'=HYPERLINK("http://evil.example","Over Co")', "X1", "Net 30"]
    assert aging[1][3:] == ["0.00", "600.00", "0.00", "0.00", "0.00", "600.00", "1"]
    flagged = _csv_rows(client, "flagged-customers")
    assert flagged[1][0].startswith("'=HYPERLINK") and flagged[1][3] == "over_limit"
    forecast = _csv_rows(client, "forecast")
    # Over Co has closed nothing (lateness 0) and was due T-3: expected today, week 1.
    assert forecast[1] == ["Week 1", "2026-11-24", "2026-11-30", "600.00"]
    assert forecast[-1] == ["Later", "2027-02-23", "", "0.00"]
    months = _csv_rows(client, "kpis-by-month")
    assert len(months) == 13 and months[0][:4] == ["Month", "Start", "End", "Days"]
    assert months[-1][:4] == ["2026-10", "2026-10-01", "2026-10-31", "31"]
    assert client.get("/c/credit/export/other.csv").status_code == 404


def test_a_sync_keeps_the_limits_the_owner_set(client, rt):
    books = signed_in(client, rt)
    r1 = customer(rt, "R1")
    action = f"{URL}/customers/{r1.id}/limit/approve"
    client.post(action, data=_button_form(client, action))
    books.sync(full=True)  # the ledger knows nothing of limits: they stay arbridge's
    after = customer(rt, "R1")
    assert (after.credit_limit_minor, after.limit_reviewed_on) == (125000, T)


def test_the_credit_form_submitted_unchanged_keeps_the_defaults(client, rt):
    books = SmallCompany(slug="plain").customer("C1", "Harbor Bakery").build(rt)
    sign_in(client, rt, books.company)
    settings = "/c/plain/settings"
    form = form_fields(parse(client.get(settings).data).find("form", action=f"{settings}/credit"))
    assert client.post(f"{settings}/credit", data=form).status_code == 302
    with rt.sessions() as s:
        pol = policy(s.get(Company, books.company.id).settings)
    assert (pol.credit_default_limit, pol.credit_on_time_run, pol.credit_raise_percent) == (
        policy({}).credit_default_limit,
        6,
        Decimal(25),
    )
