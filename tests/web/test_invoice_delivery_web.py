"""Invoices issued but never sent, through the owner's pages: the dashboard's list and its Send
buttons, the invoices list's filter and bulk Send, the invoice page, and the setting that sends
every new invoice the day it appears."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from arbridge.readmodels.delivery import unsent_invoices
from arbridge.services.bootstrap import outbox_handlers
from arbridge.sync.model import Invoice, OutboxMessage
from arbridge.sync.outbox import deliver
from tests.web.conftest import csrf_token, form_fields, fresh_company, parse

DASHBOARD = "/c/demo/"


def unsent_ids(rt, company_id, limit=100):
    with rt.sessions() as s:
        return [r.invoice.id for r in unsent_invoices(s, company_id, limit=limit).rows]


def sends(rt):
    with rt.sessions() as s:
        return s.scalar(select(func.count()).where(OutboxMessage.kind == "invoice_send"))


def test_the_dashboard_lists_unsent_invoices_and_sends_one_once(owner_client, rt, demo_company):
    ids = unsent_ids(rt, demo_company.id)
    page = owner_client.get(DASHBOARD)
    doc = parse(page.data)
    section = doc.by_id("unsent")
    assert f"{len(ids)} invoices" in section.text
    rows = section.find("table").find("tbody").find_all("tr")
    assert [int(r.attrs["data-invoice"]) for r in rows] == ids[:10]  # the oldest first
    assert doc.by_id("unsent-all").attrs["href"] == "/c/demo/invoices?delivery=unsent"

    first = ids[0]
    form = section.find("form", action=f"/c/demo/invoices/{first}/send")
    response = owner_client.post(form.attrs["action"], data=form_fields(form))
    assert response.status_code == 303 and response.headers["Location"].endswith("/c/demo/#unsent")
    again = owner_client.post(form.attrs["action"], data=form_fields(form))  # a double click
    assert again.status_code == 303
    assert sends(rt) == 1
    row = (
        parse(owner_client.get(DASHBOARD).data)
        .by_id("unsent")
        .find("tr", **{"data-invoice": str(first)})
    )
    assert "Sending…" in row.text

    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1
    after = parse(owner_client.get(DASHBOARD).data).by_id("unsent")
    assert f"{len(ids) - 1} invoices" in after.text
    assert after.find("tr", **{"data-invoice": str(first)}) is None
    invoice_page = parse(owner_client.get(f"/c/demo/invoices/{first}").data)
    # When, in the business's timezone (15:00 UTC is 09:00 in Chicago).
    assert (
        "sent to the customer by arbridge Nov 24, 2026, 09:00 CST"
        in invoice_page.by_id("sent").text
    )


def test_send_all_queues_every_unsent_invoice_once(owner_client, rt, demo_company):
    ids = unsent_ids(rt, demo_company.id)
    token = csrf_token(owner_client.get(DASHBOARD).data)
    for _ in range(2):
        response = owner_client.post("/c/demo/invoices/send-unsent", data={"csrf_token": token})
        assert response.status_code == 303
    assert sends(rt) == len(ids)
    page = parse(owner_client.get(DASHBOARD).data).by_id("unsent")
    assert page.text.count("Sending…") == min(len(ids), 10)


def test_the_invoices_list_filters_unsent_and_sends_the_ticked_ones(owner_client, rt, demo_company):
    ids = unsent_ids(rt, demo_company.id)
    doc = parse(owner_client.get("/c/demo/invoices?delivery=unsent").data)
    rows = doc.by_id("invoices").find("tbody").find_all("tr")
    assert sorted(int(r.attrs["data-invoice"]) for r in rows) == sorted(ids)
    assert all("not sent" in r.find("td", cls="status").text for r in rows)
    with rt.sessions() as s:
        sent_already = s.scalar(
            select(Invoice.id).where(Invoice.is_open, Invoice.ledger_sent.is_(True)).limit(1)
        )
    token = csrf_token(owner_client.get("/c/demo/invoices").data)
    response = owner_client.post(
        "/c/demo/invoices/bulk",
        data={
            "csrf_token": token,
            "action": "send",
            "invoice_id": [str(ids[0]), str(ids[1]), str(sent_already)],
        },
    )
    assert response.status_code == 303
    assert sends(rt) == 2
    flashed = owner_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "2 invoices on their way to your customers" in flashed
    assert "1 sent before, paid or voided: not sent again" in flashed


def test_the_invoice_page_offers_send_for_an_unsent_invoice(owner_client, rt, demo_company):
    first = unsent_ids(rt, demo_company.id)[0]
    doc = parse(owner_client.get(f"/c/demo/invoices/{first}").data)
    assert "not sent to the customer yet" in doc.by_id("sent").text
    button = doc.by_id("send-invoice")
    assert button is not None
    form = doc.find("form", action=f"/c/demo/invoices/{first}/send")
    response = owner_client.post(form.attrs["action"], data=form_fields(form))
    assert response.headers["Location"].endswith(f"/c/demo/invoices/{first}")
    assert sends(rt) == 1


def test_sending_another_companys_invoice_is_a_404(owner_client, rt, other_company):
    token = csrf_token(owner_client.get(DASHBOARD).data)
    response = owner_client.post(
        f"/c/demo/invoices/{other_company.invoice_ids[0]}/send", data={"csrf_token": token}
    )
    assert response.status_code == 404
    assert sends(rt) == 0


def test_the_automatic_sending_setting_saves_from_today_and_keeps_its_day(owner_client, rt):
    url = "/c/demo/settings"
    form = form_fields(parse(owner_client.get(url).data).find("form", action=f"{url}/delivery"))
    assert "delivery-auto_send" not in form  # off by default
    form["delivery-auto_send"] = "y"
    assert owner_client.post(f"{url}/delivery", data=form).status_code == 302
    saved = fresh_company(rt, "demo").settings["delivery"]
    assert saved == {"auto_send": True, "auto_send_since": "2026-11-24"}
    page = parse(owner_client.get(url).data).by_id("delivery")
    assert "On since 2026-11-24" in page.text
    # Saved again another day: still on since the first day.
    rt.clock.advance(timedelta(days=3))
    owner_client.post(f"{url}/delivery", data=form)
    assert fresh_company(rt, "demo").settings["delivery"]["auto_send_since"] == "2026-11-24"
    # Turned off.
    form.pop("delivery-auto_send")
    owner_client.post(f"{url}/delivery", data=form)
    assert fresh_company(rt, "demo").settings["delivery"] == {
        "auto_send": False,
        "auto_send_since": None,
    }
