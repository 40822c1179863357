"""Each week of the dashboard's cash forecast (and "later") links to the invoices list filtered
to the invoices expected in it; the list says what they are expected to bring, which is the
week's figure, and its CSV lists them with that amount (the hand-worked ledger of
tests/integration/test_insight.py)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from tests.integration.test_insight import ledger
from tests.web.conftest import parse, sign_in

WEEK_FIGURES = {"1": "$290.00", "3": "$210.84", "5": "$110.00", "later": "$133.84", "2": "$0.00"}


def test_each_forecast_week_links_to_the_invoices_behind_its_figure(client, rt):
    books = ledger().build(rt)
    sign_in(client, rt, books.company)
    for url in ("/c/insight/", "/c/insight/insight"):
        page = parse(client.get(url).data)
        links = {
            a.attrs["data-week"]: a.attrs["href"]
            for a in page.find_all("a")
            if "data-week" in a.attrs
        }
        assert links == {
            **{str(i): f"/c/insight/invoices?expected={i}" for i in range(1, 14)},
            "later": "/c/insight/invoices?expected=later",
        }, url
    for which, figure in WEEK_FIGURES.items():
        page = parse(client.get(f"/c/insight/invoices?expected={which}").data)
        assert page.by_id("expected-total").text == figure, which
        assert page.by_id("expected-figure").text == figure, which
        shown = [Decimal(td.attrs["data-value"]) for td in page.find_all("td", cls="expected")]
        assert f"${sum(shown, Decimal(0)):,.2f}" == figure, which
        rows = list(
            csv.reader(
                io.StringIO(
                    client.get(f"/c/insight/invoices.csv?expected={which}").get_data(as_text=True)
                )
            )
        )
        assert rows[0][-1] == "Expected that week (USD)"
        assert f"${sum((Decimal(r[-1]) for r in rows[1:]), Decimal(0)):,.2f}" == figure, which
    week3 = parse(client.get("/c/insight/invoices?expected=3").data)
    assert sorted(a.text for a in week3.find_all("td", cls="number")) == ["INV-E3", "INV-O1"]


def test_an_unknown_week_is_the_plain_list(client, rt):
    books = ledger().build(rt)
    sign_in(client, rt, books.company)
    page = parse(client.get("/c/insight/invoices?expected=14").data)
    assert page.by_id("expected-week") is None
    assert page.find_all("td", cls="expected") == []
