"""Reminders on the web: unsubscribe links, the customer's replies on the pay page, and the
owner's reminders page, mailbox and call list."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from arbridge.demo import DEMO_REMINDERS
from arbridge.services.reminders.run import run_reminders
from arbridge.services.reminders.unsubscribe import unsubscribe_token
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Activity,
    CallTask,
    Company,
    Contact,
    CustomerReminderSettings,
    Invoice,
    InvoiceHold,
    MailMessage,
    OutboxMessage,
    ReminderSend,
)
from arbridge.sync.outbox import enqueue
from arbridge.sync.store import company_today, issue_pay_token, open_invoices
from arbridge.wording import counted
from arbridge.worker import drain
from tests.web.conftest import (
    assert_friendly_error,
    csrf_token,
    form_fields,
    fresh_company,
    parse,
)


@pytest.fixture
def customer(app):
    """The customer's browser: never signed in."""
    return app.test_client()


@pytest.fixture
def contact(rt, demo_company) -> Contact:
    with rt.sessions() as s:
        c = s.scalars(select(Contact).order_by(Contact.id)).first()
        s.expunge(c)
        return c


@pytest.fixture
def overdue(rt, demo_company) -> Invoice:
    today = company_today(demo_company, rt.clock)
    with rt.sessions() as s:
        inv = next(
            i
            for i in open_invoices(s, demo_company.id)
            if i.due_on < today - timedelta(days=5) and i.currency == "USD"
        )
        s.expunge(inv)
        return inv


@pytest.fixture
def pay_token(rt, overdue) -> str:
    with transaction(rt.sessions) as s:
        return issue_pay_token(s, rt.clock, s.get(Invoice, overdue.id))


def count(rt, model, *where) -> int:
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


# Unsubscribe -------------------------------------------------------------------------------


def test_the_unsubscribe_link_asks_first_and_a_post_unsubscribes(customer, rt, contact):
    token = unsubscribe_token(rt.settings.secret_key, contact.id)
    page = customer.get(f"/u/{token}")
    assert page.status_code == 200
    doc = parse(page.data)
    assert doc.by_id("confirm") is not None and contact.email in doc.text
    with rt.sessions() as s:
        assert s.get(Contact, contact.id).opted_out_at is None  # a prefetch changes nothing
    # RFC 8058 one-click: the mail client POSTs "List-Unsubscribe=One-Click", no CSRF token.
    done = customer.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert "will no longer get payment reminders" in parse(done.data).by_id("state").text
    with rt.sessions() as s:
        assert s.get(Contact, contact.id).opted_out_at == rt.clock.now()
    assert customer.post(f"/u/{token}").status_code == 200  # twice is fine


@pytest.mark.parametrize(
    "token", ["1.deadbeef", "abc", "1", "99999.0123456789abcdef0123456789abcdef"]
)
def test_a_forged_unsubscribe_link_is_a_calm_404(customer, rt, contact, token):
    response = customer.get(f"/u/{token}")
    assert response.status_code == 404
    assert_friendly_error(response.get_data(as_text=True))
    assert customer.post(f"/u/{token}").status_code == 404


# The customer's replies on the pay page ----------------------------------------------------


def test_a_promise_to_pay_pauses_reminders_and_tells_the_owner(customer, rt, pay_token, overdue):
    page = customer.get(f"/pay/{pay_token}")
    doc = parse(page.data)
    form = doc.by_id("promise-form")
    assert form is not None and doc.by_id("dispute-form") is not None
    data = form_fields(form)
    data["promised_on"] = "2026-12-04"
    response = customer.post(form.attrs["action"], data=data)
    assert response.status_code == 302
    after = parse(customer.get(response.headers["Location"]).data)
    assert "You told us you will pay by Dec 4, 2026" in after.by_id("hold-promise").text
    # The thank-you says the day as every page does, not as ISO "2026-12-04".
    assert "We have noted that you will pay by Dec 4, 2026." in after.text
    assert after.by_id("promise-form") is None
    with rt.sessions() as s:
        hold = s.scalars(select(InvoiceHold)).one()
        assert (hold.kind, hold.invoice_id, str(hold.promised_on)) == (
            "promise",
            overdue.id,
            "2026-12-04",
        )
        owner_mail = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")).one()
        assert "promised to pay" in owner_mail.payload["subject"]


def test_a_dispute_needs_a_message_and_then_pauses_reminders(customer, rt, pay_token):
    page = customer.get(f"/pay/{pay_token}")
    form = parse(page.data).by_id("dispute-form")
    data = form_fields(form)
    empty = customer.post(form.attrs["action"], data={**data, "message": "  "})
    assert "Please tell us" in customer.get(empty.headers["Location"]).get_data(as_text=True)
    assert count(rt, InvoiceHold) == 0
    customer.post(form.attrs["action"], data={**data, "message": "<b>Wrong</b> quantity"})
    with rt.sessions() as s:
        assert s.scalars(select(InvoiceHold)).one().message == "<b>Wrong</b> quantity"
    body = customer.get(f"/pay/{pay_token}").get_data(as_text=True)
    assert "We have your question" in body


@pytest.mark.parametrize("promised", ["", "next week", "2026-11-01", "2027-06-01"])
def test_a_promise_date_must_be_a_date_within_sixty_days(customer, rt, pay_token, promised):
    form = parse(customer.get(f"/pay/{pay_token}").data).by_id("promise-form")
    response = customer.post(
        form.attrs["action"], data={**form_fields(form), "promised_on": promised}
    )
    assert response.status_code == 302
    assert count(rt, InvoiceHold) == 0


def test_replies_need_the_csrf_token(customer, rt, pay_token):
    response = customer.post(
        f"/pay/{pay_token}/respond", data={"kind": "promise", "promised_on": "2026-12-01"}
    )
    assert response.status_code == 400
    assert count(rt, InvoiceHold) == 0


def test_replies_to_an_unknown_link_are_404(customer, rt, pay_token):
    page = customer.get(f"/pay/{pay_token}")
    data = {"csrf_token": csrf_token(page.data), "kind": "dispute", "message": "x"}
    assert customer.post("/pay/not-a-real-token/respond", data=data).status_code == 404


# The owner's pages -------------------------------------------------------------------------


def test_the_reminders_page_previews_the_day_and_the_email_with_a_real_invoice(owner_client):
    page = owner_client.get("/c/demo/reminders?template=overdue_firm")
    assert page.status_code == 200
    doc = parse(page.data)
    assert doc.by_id("plan") is not None
    assert "open invoices" in doc.by_id("preview-summary").text
    subject = doc.by_id("preview-subject").text
    assert subject.startswith("Action needed:") and "Acme Supply Co." in subject
    assert "/sample-link" in doc.by_id("preview-body").text
    html = owner_client.get("/c/demo/reminders/email.html?template=overdue_firm")
    assert (
        html.status_code == 200 and "default-src 'none'" in html.headers["Content-Security-Policy"]
    )


def test_saving_a_sequence_and_refusing_a_bad_one(owner_client, rt):
    page = owner_client.get("/c/demo/reminders")
    form = parse(page.data).find("form", action="/c/demo/reminders/sequence")
    data = form_fields(form)
    data.update(offset_days="5", channel="email", template="overdue", min_balance="")
    response = owner_client.post(form.attrs["action"], data=data)
    assert response.status_code == 302
    steps = fresh_company(rt, "demo").settings["reminders"]["sequences"]["default"]
    assert [s["offset_days"] for s in steps] == [5]
    # Two steps on one day: refused with a sentence, nothing changed.
    bad = owner_client.post(
        form.attrs["action"],
        data={
            "csrf_token": data["csrf_token"],
            "offset_days": ["3", "3"],
            "channel": ["email", "email"],
            "template": ["overdue", "overdue"],
            "min_balance": ["", ""],
            "escalation": ["none", "none"],
            "weekdays": ["mon"],
        },
    )
    assert bad.status_code == 400
    assert "Not saved: two steps fall on the same day" in parse(bad.data).by_id("steps-error").text
    assert fresh_company(rt, "demo").settings["reminders"]["sequences"]["default"] == steps
    # The settings page's own Reminders form keeps the sequence when it saves.
    settings = owner_client.get("/c/demo/settings")
    rform = parse(settings.data).find("form", action="/c/demo/settings/reminders")
    owner_client.post(rform.attrs["action"], data=form_fields(rform))
    assert fresh_company(rt, "demo").settings["reminders"]["sequences"]["default"] == steps


def save_wording(client, subject: str, text: str, name: str = "overdue"):
    """Post the wording form as the reminders page's editor does."""
    token = csrf_token(client.get(f"/c/demo/reminders?template={name}").data)
    return client.post(
        "/c/demo/reminders/template",
        data={"csrf_token": token, "name": name, "subject": subject, "text": text},
    )


def test_a_template_that_does_not_render_is_refused(owner_client, rt):
    bad = save_wording(owner_client, "{{ nope }}", "x")
    # The page again, the wording as typed in the editor and the reason beside it.
    assert bad.status_code == 400
    doc = parse(bad.data)
    assert doc.by_id("wording-error").text.startswith("Not saved")
    assert doc.by_id("subject").attrs["value"] == "{{ nope }}"
    assert "templates" not in (fresh_company(rt, "demo").settings.get("reminders") or {})
    save_wording(owner_client, "Please pay {{ invoice_number }}", "Dear {{ customer_name }}")
    page = owner_client.get("/c/demo/reminders?template=overdue")
    assert parse(page.data).by_id("preview-subject").text.startswith("Please pay INV-")


def test_a_test_send_goes_to_the_owner_and_lands_in_the_mailbox(owner_client, rt):
    page = owner_client.get("/c/demo/reminders")
    form = parse(page.data).find("form", action="/c/demo/reminders/test-send")
    owner_client.post(form.attrs["action"], data=form_fields(form))
    drain(rt)
    with rt.sessions() as s:
        m = s.scalars(select(MailMessage)).one()
    assert m.to_addr == "owner@acme-supply.example" and m.subject.startswith("[Test] ")
    box = parse(owner_client.get("/c/demo/mailbox").data)
    assert m.subject in box.by_id("mailbox").text
    one = parse(owner_client.get(f"/c/demo/mailbox/{m.id}").data)
    assert one.by_id("to").text == "owner@acme-supply.example"


def test_a_preview_or_test_email_carries_no_live_unsubscribe_or_pay_link(owner_client, rt):
    """The owner's preview and test email show a real invoice, but a click on their links must
    not unsubscribe that customer or open their payment page: the links are inert samples."""
    page = owner_client.get("/c/demo/reminders?template=overdue")
    body = parse(page.data).by_id("preview-body").text
    html = owner_client.get("/c/demo/reminders/email.html?template=overdue").get_data(as_text=True)
    form = parse(page.data).find("form", action="/c/demo/reminders/test-send")
    owner_client.post(form.attrs["action"], data=form_fields(form))
    drain(rt)
    with rt.sessions() as s:
        sent = s.scalars(select(MailMessage)).one()
    for shown in (body, html, sent.text_body, sent.html_body or ""):
        assert "/u/" not in shown and "/pay/" not in shown
        assert "/sample-link" in shown
    assert "List-Unsubscribe" not in (sent.headers or {})
    sample = owner_client.get("/sample-link")
    assert sample.status_code == 200 and "sample" in sample.get_data(as_text=True)


def test_counts_and_call_tasks_count_emails_that_went_out_not_claims(
    owner_client, rt, demo_company
):
    def shown() -> str:
        return parse(owner_client.get("/c/demo/settings").data).by_id("reminders-sent").text

    result = run_reminders(rt, demo_company)
    assert result.emails > 1 and result.calls > 0
    assert shown().startswith("0 reminder emails")  # claimed and queued, nothing sent yet
    # The first run's call tasks say what was really sent before them: nothing.
    with rt.sessions() as s:
        reasons = set(s.scalars(select(CallTask.reason)))
    assert reasons and all(r.endswith("no reminder email sent yet") for r in reasons)
    drain(rt)
    with rt.sessions() as s:
        mails = s.scalar(
            select(func.count())
            .select_from(MailMessage)
            .where(MailMessage.kind == "reminder", MailMessage.channel == "email")
        )
    assert mails == result.emails
    assert shown().startswith(counted(result.emails, "reminder email"))


def test_the_mailbox_and_call_list_after_a_daily_run(owner_client, rt, demo_company):
    result = run_reminders(rt, demo_company)
    drain(rt)
    with rt.sessions() as s:
        mails = s.scalar(select(func.count()).select_from(MailMessage))
        task = s.scalars(select(CallTask).order_by(CallTask.id)).first()
    assert mails >= result.emails > 0
    assert task is not None
    calls = parse(owner_client.get("/c/demo/calls").data)
    assert "the cheque is in the post" in calls.by_id("calls").text.lower()
    form = calls.find("form", action=f"/c/demo/calls/{task.id}/done")
    data = {**form_fields(form), "outcome": "reached", "note": "Paying Friday"}
    owner_client.post(form.attrs["action"], data=data)
    with rt.sessions() as s:
        done = s.get(CallTask, task.id)
        assert done.done_at == rt.clock.now() and done.outcome == "reached: Paying Friday"
    # Refer the account to an agency: reminders stop, the case file downloads.
    calls = parse(owner_client.get("/c/demo/calls").data)
    agency = calls.find("form")
    assert agency is not None
    token = csrf_token(owner_client.get("/c/demo/calls").data)
    owner_client.post(
        f"/c/demo/customers/{task.customer_id}/agency",
        data={"csrf_token": token, "confirmed": "yes"},
    )
    with rt.sessions() as s:
        pref = s.scalars(select(CustomerReminderSettings)).one()
        assert pref.referred_to_agency_at == rt.clock.now()
    case = owner_client.get(f"/c/demo/customers/{task.customer_id}/case-file.json")
    data = json.loads(case.data)
    assert data["invoices"] and "messages_sent" in data and "replies" in data
    assert "attachment" in case.headers["Content-Disposition"]


def test_referring_to_an_agency_asks_first_and_can_be_undone(owner_client, rt, overdue):
    customer = overdue.customer_id
    url = f"/c/demo/customers/{customer}/agency"

    def referred():
        with rt.sessions() as s:
            pref = s.scalar(
                select(CustomerReminderSettings).where(
                    CustomerReminderSettings.customer_id == customer
                )
            )
            return pref is not None and pref.referred_to_agency_at is not None

    token = csrf_token(owner_client.get("/c/demo/calls").data)
    # A press without the confirmation step refers nobody: it asks.
    asked = owner_client.post(url, data={"csrf_token": token})
    assert asked.status_code in (302, 303) and asked.headers["Location"].endswith(url)
    assert not referred()
    page = owner_client.get(url)
    assert page.status_code == 200 and not referred()  # the question changes nothing
    form = parse(page.data).find("form", action=url)
    assert "automatic reminders stop" in page.get_data(as_text=True).lower()
    owner_client.post(url, data=form_fields(form))
    assert referred()
    calls = parse(owner_client.get("/c/demo/calls").data)
    undo = calls.find("form", action=f"{url}/undo")
    assert undo is not None
    owner_client.post(undo.attrs["action"], data=form_fields(undo))
    assert not referred()
    with rt.sessions() as s:
        kinds = [a.kind for a in s.scalars(select(Activity).order_by(Activity.id))]
    assert kinds[-2:] == ["reminders.agency", "reminders.agency_undone"]


def test_pausing_an_invoice_and_do_not_chase_from_the_preview(owner_client, rt, overdue):
    token = csrf_token(owner_client.get("/c/demo/reminders").data)
    owner_client.post(f"/c/demo/invoices/{overdue.id}/pause", data={"csrf_token": token})
    with rt.sessions() as s:
        assert s.get(Invoice, overdue.id).paused is True
    owner_client.post(
        f"/c/demo/customers/{overdue.customer_id}/do-not-chase", data={"csrf_token": token}
    )
    from arbridge.sync.model import Customer

    with rt.sessions() as s:
        assert s.get(Customer, overdue.customer_id).do_not_chase is True


def test_another_companys_mail_calls_and_invoices_are_404(owner_client, rt, other_company):
    with transaction(rt.sessions) as s:
        other = s.get(Company, other_company.company.id)
        m = MailMessage(
            company_id=other.id,
            kind="owner",
            to_addr="x@borealis.example",
            subject="Borealis secret",
            text_body="x",
            message_id="<x@y>",
            headers={},
            transport="mailbox",
            created_at=rt.clock.now(),
        )
        s.add(m)
        s.flush()
        mail_id = m.id
    token = csrf_token(owner_client.get("/c/demo/reminders").data)
    assert owner_client.get(f"/c/demo/mailbox/{mail_id}").status_code == 404
    assert owner_client.get("/c/borealis/mailbox").status_code == 404
    inv_id = other_company.invoice_ids[0]
    assert (
        owner_client.post(f"/c/demo/invoices/{inv_id}/pause", data={"csrf_token": token})
    ).status_code == 404
    assert "Borealis secret" not in owner_client.get("/c/demo/mailbox").get_data(as_text=True)


def test_the_settings_page_links_to_the_reminders_pages(owner_client):
    doc = parse(owner_client.get("/c/demo/settings").data)
    links = doc.by_id("reminders-links")
    assert links is not None
    hrefs = {a.attrs["href"] for a in links.find_all("a")}
    assert hrefs == {"/c/demo/reminders", "/c/demo/mailbox", "/c/demo/calls"}


def test_a_named_sequence_for_one_customer(owner_client, rt, overdue):
    page = owner_client.get("/c/demo/reminders")
    form = parse(page.data).find("form", action="/c/demo/reminders/sequence")
    data = form_fields(form)
    data.update(sequence_name="gentle", offset_days="14", channel="email", template="overdue")
    response = owner_client.post(form.attrs["action"], data=data)
    assert response.headers["Location"].endswith("/c/demo/reminders?sequence=gentle#sequence")
    stored = fresh_company(rt, "demo").settings["reminders"]["sequences"]
    assert [s["offset_days"] for s in stored["gentle"]] == [14]
    # The default sequence is untouched (the demo's own: the default with a text step).
    assert stored["default"] == DEMO_REMINDERS["sequences"]["default"]
    page = parse(owner_client.get("/c/demo/reminders?sequence=gentle").data)
    action = f"/c/demo/customers/{overdue.customer_id}/sequence"
    form = page.find("form", action=action)
    owner_client.post(action, data={**form_fields(form), "sequence": "gentle"})
    with rt.sessions() as s:
        pref = s.scalars(select(CustomerReminderSettings)).one()
        assert (pref.customer_id, pref.sequence) == (overdue.customer_id, "gentle")
    bad = owner_client.post(action, data={**form_fields(form), "sequence": "nope"})
    assert "no sequence called" in owner_client.get(bad.headers["Location"]).get_data(as_text=True)
    owner_client.post(action, data={**form_fields(form), "sequence": "default"})
    with rt.sessions() as s:
        assert s.scalars(select(CustomerReminderSettings)).one().sequence is None


def test_the_mailbox_shows_reminders_waiting_for_the_sending_window(
    owner_client, rt, clock, demo_company
):
    from datetime import UTC, datetime

    from arbridge.services.reminders.run import run_reminders

    clock.at = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # 03:00 in Chicago: they wait for 08:00
    run_reminders(rt, demo_company)
    page = owner_client.get("/c/demo/mailbox")
    doc = parse(page.data)
    queued = doc.by_id("queued")
    assert queued is not None
    rows = queued.find("tbody").find_all("tr")
    assert len(rows) > 5
    assert all(r.find("td").text.endswith("08:00 CST") for r in rows if "reminder" in r.text)


BURNER = "{% for a in range(9999) %}{% for b in range(9999) %}{% endfor %}{% endfor %}"


@pytest.mark.usefixtures("short_template_time_limit")
def test_a_template_that_burns_cpu_is_refused_on_save_with_the_reason(owner_client, rt):
    bad = save_wording(owner_client, "Pay", BURNER)
    assert bad.status_code == 400
    assert (
        "Not saved: the template takes too long to render"
        in parse(bad.data).by_id("wording-error").text
    )
    assert parse(bad.data).by_id("text").text == BURNER
    assert "templates" not in (fresh_company(rt, "demo").settings.get("reminders") or {})


@pytest.mark.usefixtures("short_template_time_limit")
def test_a_stored_template_that_burns_cpu_shows_the_reason_in_the_preview(owner_client, rt):
    with transaction(rt.sessions) as s:
        company = s.scalar(select(Company).where(Company.slug == "demo"))
        stored = dict(company.settings or {})
        stored["reminders"] = {
            **(stored.get("reminders") or {}),
            "templates": {"overdue": {"subject": "Pay", "text": BURNER}},
        }
        company.settings = stored
    page = owner_client.get("/c/demo/reminders?template=overdue")
    assert page.status_code == 200
    assert "the template takes too long to render" in page.get_data(as_text=True)
    html = owner_client.get("/c/demo/reminders/email.html?template=overdue")
    assert html.status_code == 400 and "too long" in html.get_data(as_text=True)


def _owner_reply_mails(rt) -> list[OutboxMessage]:
    with rt.sessions() as s:
        rows = s.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "email").order_by(OutboxMessage.id)
        ).all()
        return [r for r in rows if r.payload.get("mail") == "owner"]


def test_twenty_dispute_posts_from_one_link_are_limited_and_fold_into_one_owner_email(
    customer, rt, pay_token
):
    form = parse(customer.get(f"/pay/{pay_token}").data).by_id("dispute-form")
    data = form_fields(form)
    codes = [
        customer.post(form.attrs["action"], data={**data, "message": f"Complaint {n}"}).status_code
        for n in range(20)
    ]
    accepted = codes.count(302)
    assert 1 <= accepted <= 5 and codes[accepted:] == [429] * (20 - accepted)
    assert count(rt, InvoiceHold) == accepted
    over = customer.post(form.attrs["action"], data={**data, "message": "one more"})
    body = over.get_data(as_text=True)
    assert over.status_code == 429 and "try again in an hour" in body
    assert_friendly_error(body)
    # One owner email lists every accepted reply.
    [mail] = _owner_reply_mails(rt)
    for n in range(accepted):
        assert f"Complaint {n}" in mail.payload["text"]
    assert "one more" not in mail.payload["text"]


def test_replies_are_limited_per_customer_across_links(customer, rt, overdue):
    with transaction(rt.sessions) as s:
        tokens = [issue_pay_token(s, rt.clock, s.get(Invoice, overdue.id)) for _ in range(6)]
    codes = []
    for token in tokens:
        csrf = csrf_token(customer.get(f"/pay/{token}").data)
        for n in range(3):
            data = {"csrf_token": csrf, "kind": "dispute", "message": f"m{n}"}
            codes.append(customer.post(f"/pay/{token}/respond", data=data).status_code)
    assert codes.count(302) == 10 and codes[10:] == [429] * 8


def test_after_an_hour_the_customer_may_reply_again_and_the_owner_gets_a_new_email(
    customer, rt, clock, pay_token
):
    form = parse(customer.get(f"/pay/{pay_token}").data).by_id("dispute-form")
    data = form_fields(form)
    codes = [customer.post(form.attrs["action"], data={**data, "message": "x"}) for _ in range(8)]
    assert codes[-1].status_code == 429
    drain(rt)  # the owner's email goes out
    clock.advance(timedelta(hours=1, minutes=1))
    response = customer.post(form.attrs["action"], data={**data, "message": "Still wrong"})
    assert response.status_code == 302
    mails = _owner_reply_mails(rt)
    assert len(mails) == 2 and "Still wrong" in mails[-1].payload["text"]


def test_the_mailbox_shows_an_email_the_server_never_confirmed(owner_client, rt, demo_company):
    with transaction(rt.sessions) as s:
        enqueue(
            s,
            rt.clock,
            company_id=demo_company.id,
            kind="email",
            key="reminder:unconfirmed",
            payload={"mail": "owner", "to": "a@b.example", "subject": "Hello", "text": "x"},
        )
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.key == "reminder:unconfirmed"))
        row.status, row.last_error = "maybe_sent", "the mail server did not confirm it"
    queued = parse(owner_client.get("/c/demo/mailbox").data).by_id("queued")
    assert queued is not None
    assert "maybe sent: the mail server did not confirm it" in queued.text


def test_a_refused_wording_threw_the_owners_edits_away(owner_client, rt):
    """Saved with a mistake, the wording came back as stored, the owner's typing lost, and the
    reason sat at the top of a long page."""
    form = parse(owner_client.get("/c/demo/reminders?template=overdue").data).by_id("wording-form")
    assert form.attrs["action"] == "/c/demo/reminders/template"
    typed = "Dear {{ customer_name }}, a long careful note {{ oops }"
    bad = save_wording(owner_client, "Hi", typed)
    assert bad.status_code == 400
    doc = parse(bad.data)
    assert doc.by_id("text").text == typed
    assert "autofocus" in doc.by_id("text").attrs  # the answer opens at the editor
    assert doc.by_id("wording-error").text.startswith("Not saved: ")
    empty = save_wording(owner_client, "", typed)
    assert empty.status_code == 400
    assert parse(empty.data).by_id("wording-error").text == (
        "Not saved: a wording needs a subject and a text"
    )
    assert parse(empty.data).by_id("text").text == typed


def test_a_refused_save_of_the_steps_threw_away_the_new_step_and_signature_typed_with_it(
    owner_client, rt
):
    page = owner_client.get("/c/demo/reminders")
    form = parse(page.data).find("form", action="/c/demo/reminders/sequence")
    data = {
        "csrf_token": csrf_token(page.data),
        "offset_days": ["3", "12"],  # 12: a new step
        "channel": ["email", "email"],
        "template": ["overdue", "overdue"],
        "min_balance": ["", ""],
        "escalation": ["none", "none"],
        "weekdays": ["mon", "tue"],
        "quiet_start": "25",
        "signature": "Thanks, Ana",
    }
    before = fresh_company(rt, "demo").settings
    bad = owner_client.post(form.attrs["action"], data=data)
    assert bad.status_code == 400
    doc = parse(bad.data)
    assert "Not saved: the sending window's start" in doc.by_id("steps-error").text
    again = doc.find("form", action="/c/demo/reminders/sequence")
    offsets = [i.attrs.get("value", "") for i in again.find_all("input", name="offset_days")]
    assert "12" in offsets
    assert doc.by_id("quiet_start").attrs["value"] == "25"
    assert doc.by_id("signature").text == "Thanks, Ana"
    assert fresh_company(rt, "demo").settings == before


def test_removing_the_first_step_made_invoices_skip_their_next_steps(owner_client, rt):
    """Each invoice keeps the index of the highest step claimed for it, and the day's candidates
    are read by that index. Removing the heads-up step shifted every later step down one, so an
    invoice that had its 10-days-after email read as one that had its next step too: the steps
    after it (the final notice) were never sent, and the dry run did not show them."""
    run_reminders(rt, fresh_company(rt, "demo"))
    steps = fresh_company(rt, "demo").settings["reminders"]["sequences"]["default"]
    assert steps[0]["offset_days"] < 0  # the heads-up before the due date
    page = owner_client.get("/c/demo/reminders")
    data = form_fields(parse(page.data).find("form", action="/c/demo/reminders/sequence"))
    kept = steps[1:]
    data.update(
        offset_days=[str(s["offset_days"]) for s in kept],
        channel=[s["channel"] for s in kept],
        template=[s["template"] for s in kept],
        min_balance=[s.get("min_balance") or "" for s in kept],
        escalation=[s.get("escalation") or "none" for s in kept],
    )
    assert owner_client.post("/c/demo/reminders/sequence", data=data).status_code == 302
    index = {s["key"]: i for i, s in enumerate(kept)}
    with rt.sessions() as s:
        claimed: dict[int, int] = {}
        for invoice_id, key in s.execute(select(ReminderSend.invoice_id, ReminderSend.step_key)):
            claimed[invoice_id] = max(claimed.get(invoice_id, -1), index.get(key, -1))
        stored = {
            invoice_id: step
            for invoice_id, step in s.execute(
                select(Invoice.id, Invoice.highest_step_claimed).where(
                    Invoice.id.in_(list(claimed))
                )
            )
        }
    assert claimed and any(v > 0 for v in claimed.values())
    assert stored == claimed


def test_a_customer_back_on_the_default_sequence_kept_its_own_sequences_step_places(
    owner_client, rt, overdue
):
    """An invoice's highest step is a place among its customer's steps: on a one-step sequence
    of its own, step 0 is 14 days after due; back on the default, 0 read as its heads-up."""
    page = owner_client.get("/c/demo/reminders")
    data = form_fields(parse(page.data).find("form", action="/c/demo/reminders/sequence"))
    data.update(sequence_name="gentle", offset_days="14", channel="email", template="overdue")
    owner_client.post("/c/demo/reminders/sequence", data=data)
    action = f"/c/demo/customers/{overdue.customer_id}/sequence"
    form = parse(owner_client.get("/c/demo/reminders?sequence=gentle").data).find(
        "form", action=action
    )
    owner_client.post(action, data={**form_fields(form), "sequence": "gentle"})
    rt.clock.advance(timedelta(days=30))
    run_reminders(rt, fresh_company(rt, "demo"))
    with rt.sessions() as s:
        assert (
            s.scalar(select(ReminderSend.step_key).where(ReminderSend.invoice_id == overdue.id))
            == "after-14"
        )
    owner_client.post(action, data={**form_fields(form), "sequence": "default"})
    default = fresh_company(rt, "demo").settings["reminders"]["sequences"]["default"]
    on_or_before = max(i for i, step in enumerate(default) if step["offset_days"] <= 14)
    with rt.sessions() as s:
        assert s.get(Invoice, overdue.id).highest_step_claimed == on_or_before
