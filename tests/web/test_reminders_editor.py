"""The reminders editor's preview endpoint, the mailbox's waiting list and sent emails, and the
owner's pages read for leaked internal names (step keys, wording keys, Message-ID)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import func, select

from arbridge.services.reminders.holds import record_hold
from arbridge.services.reminders.run import run_reminders
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Contact,
    Customer,
    Invoice,
    MailMessage,
    OutboxMessage,
    PayToken,
    ReminderSend,
)
from arbridge.worker import drain
from tests.web.conftest import csrf_token, fresh_company, parse

FETCH = {"X-Requested-With": "fetch"}
INTERNAL = re.compile(
    r"\b(before|after)-\d+\b|overdue_firm|overdue_friendly|final_notice|due_today|"
    r"notify_owner|call_guide|Message-ID"
)


def _token(owner_client) -> str:
    return csrf_token(owner_client.get("/c/demo/reminders").data)


def _count(rt, model) -> int:
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_the_preview_renders_the_typed_wording_with_a_real_invoice_and_inert_links(
    owner_client, rt
):
    tokens, outbox = _count(rt, PayToken), _count(rt, OutboxMessage)
    shown = owner_client.post(
        "/c/demo/reminders/preview",
        headers=FETCH,
        data={
            "csrf_token": _token(owner_client),
            "name": "overdue",
            "subject": "Still open: {{ invoice_number }}",
            "text": "Dear {{ greeting_name }},\n\n{{ invoice_list }}\nPay: {{ pay_link }}",
        },
    )
    assert shown.status_code == 200
    doc = parse(shown.data)
    assert doc.find("html") is None  # the preview part only, for the editor's script
    assert re.fullmatch(r"Still open: INV-\d+", doc.by_id("preview-subject").text)
    body = doc.by_id("preview-body").text
    assert f"Pay: {rt.settings.base_url}/sample-link" in body and "Pay online:" in body
    assert "/pay/" not in body and "/u/" not in body and "{{" not in body
    # Nothing saved, nothing queued, no live payment link minted.
    assert "templates" not in (fresh_company(rt, "demo").settings.get("reminders") or {})
    assert (_count(rt, PayToken), _count(rt, OutboxMessage)) == (tokens, outbox)


def test_a_wording_that_does_not_render_is_previewed_as_a_sentence_not_an_error_page(
    owner_client,
):
    token = _token(owner_client)
    for text, said in [
        ("Hello {{ nope }}", "the template does not render"),
        ("{% for %}", "the template does not render"),
        ("   ", "A wording needs a subject and a text."),
    ]:
        shown = owner_client.post(
            "/c/demo/reminders/preview",
            headers=FETCH,
            data={"csrf_token": token, "name": "overdue", "subject": "Hi", "text": text},
        )
        assert shown.status_code == 200
        assert said in parse(shown.data).by_id("preview-error").text
        assert "Traceback" not in shown.get_data(as_text=True)


def test_without_javascript_the_preview_button_shows_the_whole_page_with_the_draft(
    owner_client, rt
):
    shown = owner_client.post(
        "/c/demo/reminders/preview",
        data={
            "csrf_token": _token(owner_client),
            "name": "overdue_firm",
            "subject": "Draft {{ total_due }}",
            "text": "Draft body for {{ customer_name }}",
            "html": "",
        },
    )
    assert shown.status_code == 200
    doc = parse(shown.data)
    assert doc.by_id("draft-note") is not None
    assert doc.by_id("text").text == "Draft body for {{ customer_name }}"
    assert doc.by_id("preview-subject").text.startswith("Draft $")
    assert doc.find("option", value="overdue_firm", selected="") is not None
    assert "templates" not in (fresh_company(rt, "demo").settings.get("reminders") or {})


def test_the_preview_needs_the_form_token(owner_client):
    refused = owner_client.post(
        "/c/demo/reminders/preview",
        headers=FETCH,
        data={"name": "overdue", "subject": "Hi", "text": "x"},
    )
    assert refused.status_code == 400


def test_the_editor_offers_each_merge_field_as_a_button_and_as_a_list(owner_client):
    doc = parse(owner_client.get("/c/demo/reminders?template=overdue_friendly").data)
    chips = doc.by_id("merge-fields").find_all("button", cls="chip")
    inserts = [b.attrs["data-insert"] for b in chips]
    assert "{{ customer_name }}" in inserts and "{{ invoice_list }}" in inserts
    assert all("hidden" in b.attrs for b in chips)  # shown by the script
    listed = doc.by_id("merge-list").text
    assert "{{ customer_name }}Customer's name" in listed
    # The default wording needs no template logic; the syntax and the HTML sit under Advanced.
    assert "{%" not in doc.by_id("text").text
    advanced = doc.by_id("advanced")
    assert advanced.find("summary").text.startswith("Advanced") and "open" not in advanced.attrs
    assert advanced.find("textarea", id="html") is not None


def to_column(queued) -> set[str]:
    return {td.text for td in queued.find_all("td", data_label="To")}


def test_a_waiting_reminder_that_no_longer_applies_drops_out_of_the_mailbox(
    owner_client, rt, clock, demo_company
):
    clock.at = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # 03:00 in Chicago: they wait for 08:00
    run_reminders(rt, demo_company)
    with rt.sessions() as s:
        pending = list(s.scalars(select(OutboxMessage).where(OutboxMessage.status == "pending")))
        # Customers with a text waiting too stay in the list by that text: leave them out.
        texted = {m.payload.get("customer_id") for m in pending if m.kind == "sms"}
        single = [
            m
            for m in pending
            if m.payload.get("mail") == "reminder"
            and len(m.payload["invoices"]) == 1
            and m.payload["customer_id"] not in texted
        ][:4]
        paused, disputed, paid = (m.payload["invoices"][0]["id"] for m in single[:3])
        unsubscribed = single[3].payload["contact_id"]
    with rt.sessions() as s:
        names = {s.get(Customer, m.payload["customer_id"]).name for m in single}
    before = parse(owner_client.get("/c/demo/mailbox").data).by_id("queued")
    assert names <= to_column(before)
    assert before.by_id("queued-dropped") is None

    token = _token(owner_client)
    owner_client.post(f"/c/demo/invoices/{paused}/pause", data={"csrf_token": token})
    with transaction(rt.sessions) as s:
        record_hold(s, rt, s.get(Invoice, disputed), "dispute", message="Wrong quantity")
        inv = s.get(Invoice, paid)
        inv.ledger_balance_minor, inv.status = 0, "paid"  # as a sync of the payment leaves it
        s.get(Contact, unsubscribed).opted_out_at = clock.now()

    after = parse(owner_client.get("/c/demo/mailbox").data).by_id("queued")
    assert to_column(after) == to_column(before) - names  # the other reminders still wait
    assert after.by_id("queued-dropped").text == (
        "4 reminders no longer apply and will not be sent."
    )
    # And the re-check as they go out agrees: none of the four is sent.
    clock.at = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    drain(rt)
    with rt.sessions() as s:
        sent = set(s.scalars(select(MailMessage.outbox_key)))
        left = s.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.key.in_([w.key for w in single]), OutboxMessage.status == "pending"
            )
        )
    assert sent and left == 0  # the day's reminders went out...
    assert not sent & {w.key for w in single}  # ...but not these four


def test_a_sent_email_opens_with_its_html_version_and_no_internal_names(owner_client, rt):
    page = owner_client.get("/c/demo/reminders?template=overdue_firm")
    form = parse(page.data).find("form", action="/c/demo/reminders/test-send")
    owner_client.post(
        form.attrs["action"], data={"csrf_token": csrf_token(page.data), "template": "overdue_firm"}
    )
    drain(rt)
    with rt.sessions() as s:
        mail = s.scalars(select(MailMessage)).one()
    box = parse(owner_client.get("/c/demo/mailbox").data)
    [row] = box.by_id("mailbox").find("tbody").find_all("tr")
    assert row.attrs["data-href"] == f"/c/demo/mailbox/{mail.id}"
    assert "Test email" in row.text and "America/Chicago" in box.by_id("mailbox").text

    one = owner_client.get(f"/c/demo/mailbox/{mail.id}")
    doc = parse(one.data)
    assert not INTERNAL.search(doc.find("main").text)
    frame = doc.by_id("as-seen").find("iframe")
    assert (
        frame.attrs["src"] == f"/c/demo/mailbox/{mail.id}/email.html" and "sandbox" in frame.attrs
    )
    html = owner_client.get(frame.attrs["src"])
    assert html.status_code == 200 and html.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in html.headers["Content-Security-Policy"]
    assert "script-src" not in html.headers["Content-Security-Policy"]
    assert f'<a class="pay-button" href="{rt.settings.base_url}/sample-link"' in html.get_data(
        as_text=True
    )


def test_no_owner_page_shows_an_internal_step_or_wording_name(
    owner_client, rt, clock, demo_company
):
    clock.at = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    run_reminders(rt, demo_company)
    drain(rt)
    with rt.sessions() as s:
        mail_id = s.scalar(
            select(MailMessage.id).where(MailMessage.kind == "reminder").order_by(MailMessage.id)
        )
        reminded = s.scalar(select(ReminderSend.invoice_id).where(ReminderSend.status == "sent"))
    for url in (
        "/c/demo/",
        "/c/demo/reminders",
        "/c/demo/reminders?template=final_notice",
        "/c/demo/mailbox",
        f"/c/demo/mailbox/{mail_id}",
        "/c/demo/calls",
        f"/c/demo/invoices/{reminded}",
        "/c/demo/settings",
    ):
        page = owner_client.get(url)
        assert page.status_code == 200, url
        shown = parse(page.data).find("main").text
        assert not INTERNAL.search(shown), (url, INTERNAL.search(shown).group(0))


def test_the_preview_of_the_html_version_is_an_email_document_with_a_sample_pay_button(
    owner_client, rt
):
    data = {
        "csrf_token": _token(owner_client),
        "name": "overdue",
        "subject": "Hi",
        "text": "Dear {{ customer_name }},\n\n{{ invoice_list }}",
        "part": "html",
    }
    shown = owner_client.post("/c/demo/reminders/preview", data=data)
    assert shown.status_code == 200 and shown.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert shown.headers["Content-Security-Policy"].startswith("default-src 'none'")
    html = shown.get_data(as_text=True)
    assert f'<a class="pay-button" href="{rt.settings.base_url}/sample-link"' in html
    assert "/pay/" not in html and "/u/" not in html
    broken = owner_client.post("/c/demo/reminders/preview", data={**data, "text": "{{ nope }}"})
    assert broken.status_code == 200
    assert "the template does not render" in broken.get_data(as_text=True)


def test_a_waiting_text_says_it_is_a_text_and_its_step_not_sms_reminder(
    owner_client, rt, clock, demo_company
):
    # The demo's sequence texts a week after the due date; its waiting rows read "Sms reminder".
    clock.at = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # 03:00 in Chicago: they wait for 08:00
    run_reminders(rt, demo_company)
    queued = parse(owner_client.get("/c/demo/mailbox").data).by_id("queued")
    what = [td.text for td in queued.find_all("td", data_label="What")]
    assert "Text message: Friendly reminder (7 days after due)" in what
    assert not any("Sms" in w or "sms" in w for w in what)


def test_no_owner_page_ends_a_sentence_with_a_double_period(owner_client):
    # "Every email arbridge sent for Acme Supply Co.." on the mailbox page.
    for url in ("/c/demo/", "/c/demo/mailbox", "/c/demo/reminders", "/c/demo/calls"):
        shown = parse(owner_client.get(url).data).find("main").text
        assert "Co.." not in shown, url
