"""The dashboard shows the same numbers as `arbridge report --format json` (store.report_dict)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from arbridge.collections.aging import BUCKETS
from arbridge.sync.db import transaction
from arbridge.sync.store import aging_report, company_today, open_invoices, report_dict
from arbridge.web.owner import PAGE_SIZE
from tests.web.conftest import amount, fresh_company, parse


@pytest.fixture
def report(rt, demo_company) -> dict:
    company = fresh_company(rt, demo_company.slug)
    with rt.sessions() as s:
        return report_dict(company, aging_report(s, company, company_today(company, rt.clock)))


@pytest.fixture
def dashboard(owner_client):
    response = owner_client.get("/c/demo/")
    assert response.status_code == 200
    return parse(response.data)


def invoice_rows(client, url="/c/demo/"):
    """Every row of the open-invoice table, following the pager to the last page."""
    rows = []
    while url:
        doc = parse(client.get(url).data)
        rows += doc.by_id("invoices").find("tbody").find_all("tr")
        later = doc.find("a", rel="next")
        url = later.attrs["href"].replace("&amp;", "&") if later else None
    return rows


def test_open_and_overdue_balances_match_the_report(dashboard, report):
    assert report["as_of"] == "2026-11-24" and report["currency"] == "USD"
    assert Decimal(report["open_balance"]) > Decimal(report["overdue_balance"]) > 0
    assert amount(dashboard.by_id("open-balance").text) == Decimal(report["open_balance"])
    assert amount(dashboard.by_id("overdue-balance").text) == Decimal(report["overdue_balance"])
    assert f"{report['open_invoices']} open invoices" in dashboard.text
    assert f"{report['overdue_invoices']} overdue invoices" in dashboard.text


def test_each_aging_bucket_matches_the_report(dashboard, report):
    rows = dashboard.by_id("aging").find("tbody").find_all("tr")
    assert [r.attrs["data-bucket"] for r in rows] == list(BUCKETS)
    for row in rows:
        key = row.attrs["data-bucket"]
        cells = row.find_all("td")
        assert amount(row.find("td", cls="amount").text) == Decimal(report["aging"][key]), key
        assert int(cells[1].text) == report["aging_counts"][key], key
    footer = dashboard.by_id("aging").find("tfoot").find_all("th")
    assert int(footer[1].text) == report["open_invoices"]
    assert amount(footer[2].text) == Decimal(report["open_balance"])


def test_invoice_table_is_paged(dashboard, report):
    assert report["open_invoices"] > PAGE_SIZE
    assert len(dashboard.by_id("invoices").find("tbody").find_all("tr")) == PAGE_SIZE
    assert dashboard.find("a", rel="next") is not None and dashboard.find("a", rel="prev") is None


def test_invoice_table_lists_every_open_invoice_and_adds_up(owner_client, report):
    rows = invoice_rows(owner_client)
    assert len(rows) == report["open_invoices"]
    # Added up row by row from the page's home-currency column: an independent check.
    home = [amount(r.find("td", cls="home").text) for r in rows]
    assert sum(home) == Decimal(report["open_balance"])
    overdue = [h for h, r in zip(home, rows, strict=True) if r.attrs["data-bucket"] != "current"]
    assert sum(overdue) == Decimal(report["overdue_balance"])
    for key in BUCKETS:
        in_bucket = [h for h, r in zip(home, rows, strict=True) if r.attrs["data-bucket"] == key]
        assert len(in_bucket) == report["aging_counts"][key], key
        assert sum(in_bucket, Decimal(0)) == Decimal(report["aging"][key]), key


def test_foreign_currency_invoices_are_shown_in_home_currency_too(owner_client):
    rows = invoice_rows(owner_client)
    foreign = [r for r in rows if not r.find_all("td")[4].text.startswith("$")]
    assert foreign, "the demo ledger has EUR and CAD invoices"
    for r in foreign:
        assert r.find("td", cls="home").text.startswith("$")


@pytest.mark.parametrize("key", BUCKETS)
def test_bucket_filter_shows_only_that_bucket(owner_client, report, key):
    doc = parse(owner_client.get(f"/c/demo/?bucket={key}").data)
    rows = invoice_rows(owner_client, f"/c/demo/?bucket={key}")
    assert len(rows) == report["aging_counts"][key]
    assert {r.attrs["data-bucket"] for r in rows} == {key}
    assert doc.find("tr", cls="selected").attrs["data-bucket"] == key


def test_an_unknown_bucket_shows_everything(owner_client, report):
    doc = parse(owner_client.get("/c/demo/?bucket=<script>").data)
    assert len(invoice_rows(owner_client, "/c/demo/?bucket=<script>")) == report["open_invoices"]
    assert doc.find("tr", cls="selected") is None


def test_dashboard_follows_the_ledger_after_a_payment(owner_client, rt, report, demo_company):
    """Change the data underneath: the page must move with it (the numbers are not baked in)."""
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        paid = inv.balance.amount
        inv.ledger_balance_minor = 0
        inv.status = "paid"
    doc = parse(owner_client.get("/c/demo/").data)
    assert amount(doc.by_id("open-balance").text) == Decimal(report["open_balance"]) - paid
    rows = invoice_rows(owner_client)
    assert len(rows) == report["open_invoices"] - 1


@pytest.mark.parametrize("status", ["paid", "voided", "deleted"])
def test_an_invoice_that_is_not_open_is_not_listed_even_with_a_balance(
    owner_client, rt, report, demo_company, status
):
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        inv.status = status  # the balance is left as it was: a ledger that never zeroed it
        number, left = inv.number, inv.balance.amount
    doc = parse(owner_client.get("/c/demo/").data)
    rows = invoice_rows(owner_client)
    assert len(rows) == report["open_invoices"] - 1
    assert number not in {r.find("td").text for r in rows}
    assert amount(doc.by_id("open-balance").text) == Decimal(report["open_balance"]) - left


def test_the_pager_walks_back_the_way_it_came(owner_client):
    """Keyset paging: following "later" to the last page and "earlier" back to the first shows
    the same rows in the same order, and a bare `?page=N` link still shows page N."""
    pages, url = [], "/c/demo/"
    while url:
        doc = parse(owner_client.get(url).data)
        pages.append(
            [r.find("a").attrs["href"] for r in doc.by_id("invoices").find("tbody").find_all("tr")]
        )
        later = doc.find("a", rel="next")
        url = later.attrs["href"].replace("&amp;", "&") if later else None
    assert len(pages) >= 2
    back = []
    while True:
        earlier = doc.find("a", rel="prev")
        if earlier is None:
            break
        doc = parse(owner_client.get(earlier.attrs["href"].replace("&amp;", "&")).data)
        back.append(
            [r.find("a").attrs["href"] for r in doc.by_id("invoices").find("tbody").find_all("tr")]
        )
    assert back[::-1] == pages[:-1]
    second = parse(owner_client.get("/c/demo/?page=2").data)
    assert [
        r.find("a").attrs["href"] for r in second.by_id("invoices").find("tbody").find_all("tr")
    ] == pages[1]


@pytest.mark.parametrize(
    "cursor", ["x", "2026-13-01.5", "2026-01-01.", "2026-01-01.-1", "2026-01-01." + "9" * 40]
)
def test_a_page_cursor_that_is_not_one_is_404(owner_client, cursor):
    for name in ("after", "before"):
        assert owner_client.get(f"/c/demo/?{name}={cursor}").status_code == 404
