"""Texts on the web: POST /webhooks/twilio through the app (signature, STOP, START, replies,
status callbacks), and the owner's SMS parts of the settings, reminders, customer and calls
pages (their forms work without script; sms.js only counts as the owner types)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from arbridge.config import TwilioSettings
from arbridge.services.messaging.sms_setup import save_sms_account
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Activity,
    Company,
    Contact,
    MailMessage,
    SmsAccount,
    SmsReply,
    WebhookDelivery,
    WebhookEvent,
)
from tests.conftest import _settings
from tests.twilio_http_fake import ACCOUNT_SID, AUTH_TOKEN, FROM, FakeTwilio
from tests.web.conftest import csrf_token, parse, sign_in

STATIC = Path(__file__).resolve().parents[2] / "src" / "arbridge" / "web" / "static"
DEMO_NUMBER = "+13125550100"  # the demo's first customer, (312) 555-0100


@pytest.fixture
def settings(tmp_path, database_url):
    """The install's Twilio account (ARBRIDGE_TWILIO_*)."""
    return _settings(tmp_path, database_url).with_(
        twilio=TwilioSettings(ACCOUNT_SID, AUTH_TOKEN, None, FROM, "http://twilio.test")
    )


def post_signed(client, twilio: FakeTwilio, form: dict[str, str], query: str = "", **kw):
    url = "http://127.0.0.1:5000/webhooks/twilio" + (f"?{query}" if query else "")
    headers = twilio.sign(url, form, **kw)
    return client.post(
        "/webhooks/twilio" + (f"?{query}" if query else ""), data=form, headers=headers
    )


def demo_contact(rt, number: str = DEMO_NUMBER) -> Contact:
    with rt.sessions() as s:
        c = s.scalars(select(Contact).where(Contact.phone_e164 == number)).one()
        s.expunge(c)
        return c


def test_stop_and_start_through_the_webhook(client, rt, clock, demo_company):
    twilio = FakeTwilio(clock)
    page = post_signed(client, twilio, twilio.reply_form(DEMO_NUMBER, "STOP"))
    assert page.status_code == 200 and page.mimetype == "text/xml"
    assert b"<Response></Response>" in page.data
    assert demo_contact(rt).sms_opted_out_at is not None
    post_signed(client, twilio, twilio.reply_form(DEMO_NUMBER, "start"))
    assert demo_contact(rt).sms_opted_out_at is None


def test_a_request_with_a_bad_signature_is_refused_and_changes_nothing(
    client, rt, clock, demo_company
):
    twilio = FakeTwilio(clock)
    form = twilio.reply_form(DEMO_NUMBER, "STOP")
    page = post_signed(client, twilio, form, token="f" * 32)
    assert page.status_code == 403 and page.get_json() == {"error": "invalid signature"}
    unsigned = client.post("/webhooks/twilio", data=form)
    assert unsigned.status_code == 403
    assert demo_contact(rt).sms_opted_out_at is None


def test_a_signed_query_cannot_be_changed(client, rt, clock, demo_company):
    twilio = FakeTwilio(clock)
    form = twilio.status_form({"sid": "SM" + "0" * 32, "to": DEMO_NUMBER}, "delivered")
    url = "http://127.0.0.1:5000/webhooks/twilio?key=sms%3Ac1"
    headers = twilio.sign(url, form)
    page = client.post("/webhooks/twilio?key=sms%3Ac2", data=form, headers=headers)
    assert page.status_code == 403


def test_a_reply_lands_in_the_owner_s_list_and_is_closed_there(client, rt, clock, demo_company):
    twilio = FakeTwilio(clock)
    post_signed(client, twilio, twilio.reply_form(DEMO_NUMBER, "Paid by cheque <b>today</b>"))
    sign_in(client, rt, demo_company)
    page = client.get(f"/c/{demo_company.slug}/calls")
    doc = parse(page.data)
    assert doc.by_id("nav-replies").text.startswith("1")  # the navigation counts it too
    (section,) = doc.find_all("section", id="text-replies")
    assert "Paid by cheque <b>today</b>" in section.text  # escaped, shown as typed
    assert DEMO_NUMBER in section.text
    with rt.sessions() as s:
        reply = s.scalars(select(SmsReply)).one()
    done = client.post(
        f"/c/{demo_company.slug}/sms-replies/{reply.id}/done",
        data={"csrf_token": csrf_token(page.data)},
    )
    assert done.status_code == 303
    with rt.sessions() as s:
        assert s.get(SmsReply, reply.id).handled_at is not None
    assert "No text replies waiting" in client.get(f"/c/{demo_company.slug}/calls").text


def sent_text(rt, company, sid: str = "SM" + "a" * 32) -> None:
    """A reminder text Twilio took for the demo's first customer, waiting for its callbacks."""
    contact = demo_contact(rt)
    with transaction(rt.sessions) as s:
        s.add(
            MailMessage(
                company_id=company.id,
                outbox_key="sms:c1:2026-11-24:r1",
                kind="reminder",
                contact_id=contact.id,
                customer_id=contact.customer_id,
                to_addr=DEMO_NUMBER,
                subject="Text message",
                text_body="Pay here",
                message_id=sid,
                transport="twilio",
                channel="sms",
                delivery_status="queued",
                created_at=rt.clock.now(),
            )
        )


def test_a_status_callback_through_the_route_updates_the_text(client, rt, clock, demo_company):
    twilio = FakeTwilio(clock)
    sent_text(rt, demo_company)
    form = twilio.status_form({"sid": "SM" + "a" * 32, "to": DEMO_NUMBER}, "delivered")
    page = post_signed(client, twilio, form, query="key=sms%3Ac1%3A2026-11-24%3Ar1")
    assert page.status_code == 200
    with rt.sessions() as s:
        text = s.scalars(select(MailMessage)).one()
        assert text.delivery_status == "delivered"


def test_another_business_s_twilio_account_cannot_act_on_a_text(
    client, rt, clock, demo_company, other_company
):
    """Signed by a business's own Twilio account, about a text the install's account sent for
    another business: stored (that account's token did sign it), acted on never."""
    own = FakeTwilio(clock, account_sid="AC" + "7" * 32, auth_token="e" * 32)
    with transaction(rt.sessions) as s:
        company = s.get(Company, other_company.company.id)
        save_sms_account(s, rt, company, own.account_sid, own.auth_token, "+12125550100")
    sent_text(rt, demo_company)
    form = own.status_form({"sid": "SM" + "a" * 32, "to": DEMO_NUMBER}, "undelivered", "30006")
    page = post_signed(client, own, form, query="key=sms%3Ac1%3A2026-11-24%3Ar1")
    assert page.status_code == 200
    with rt.sessions() as s:
        assert s.scalars(select(MailMessage)).one().delivery_status == "queued"
    assert demo_contact(rt).sms_undeliverable_at is None
    _deliveries, (event,) = stored(rt)
    assert (event.company_id, event.status) == (other_company.company.id, "processed")


def stored(rt) -> tuple[list[WebhookDelivery], list[WebhookEvent]]:
    with rt.sessions() as s:
        deliveries = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        events = s.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()
        s.expunge_all()
        return list(deliveries), list(events)


def test_a_replayed_stop_is_stored_once_and_acted_on_once(client, rt, clock, demo_company):
    """Twilio repeats a STOP after the customer has texted START: the repeat is kept once and
    does not opt the number out again."""
    twilio = FakeTwilio(clock)
    stop = twilio.reply_form(DEMO_NUMBER, "STOP")
    assert post_signed(client, twilio, stop).status_code == 200
    assert demo_contact(rt).sms_opted_out_at is not None  # at once, not at the worker's tick
    post_signed(client, twilio, twilio.reply_form(DEMO_NUMBER, "START"))
    replay = post_signed(client, twilio, stop)
    assert replay.status_code == 200 and b"<Response></Response>" in replay.data
    assert demo_contact(rt).sms_opted_out_at is None
    deliveries, events = stored(rt)
    assert [(d.provider, d.repeats) for d in deliveries] == [("twilio", 1), ("twilio", 0)]
    assert deliveries[0].headers["x-twilio-signature"]
    assert [(e.provider, e.event_type, e.status, e.attempts) for e in events] == [
        ("twilio", "message.inbound", "processed", 1),
        ("twilio", "message.inbound", "processed", 1),
    ]
    assert events[0].event_id == f"{ACCOUNT_SID}:{stop['MessageSid']}"
    with rt.sessions() as s:
        kinds = s.scalars(
            select(Activity.kind).where(Activity.kind.in_(["sms.opted_out", "sms.opted_in"]))
        ).all()
    assert sorted(kinds) == ["sms.opted_in", "sms.opted_out"]


def test_a_replayed_status_callback_is_stored_once(client, rt, clock, demo_company):
    twilio = FakeTwilio(clock)
    form = twilio.status_form({"sid": "SM" + "b" * 32, "to": DEMO_NUMBER}, "delivered")
    for _ in range(3):
        assert post_signed(client, twilio, form, query="key=sms%3Ac1").status_code == 200
    later = twilio.status_form({"sid": "SM" + "b" * 32, "to": DEMO_NUMBER}, "undelivered")
    post_signed(client, twilio, later, query="key=sms%3Ac1")
    deliveries, events = stored(rt)
    assert [d.repeats for d in deliveries] == [2, 0]
    assert [e.event_id.split(":", 1)[1] for e in events] == [
        "SM" + "b" * 32 + ":delivered",
        "SM" + "b" * 32 + ":undelivered",
    ]
    assert {(e.event_type, e.status) for e in events} == {("message.status", "processed")}


def test_a_forged_request_is_never_stored(client, rt, clock, demo_company, caplog):
    twilio = FakeTwilio(clock)
    form = twilio.reply_form(DEMO_NUMBER, "STOP")
    with caplog.at_level(logging.WARNING, logger="arbridge.web"):
        forged = post_signed(client, twilio, form, token="f" * 32)
    assert forged.status_code == 403
    assert any("refused a Twilio request" in r.getMessage() for r in caplog.records)
    # Signed by the right token, for another URL.
    moved = client.post(
        "/webhooks/twilio?key=x",
        data=form,
        headers=twilio.sign("http://127.0.0.1:5000/webhooks/twilio", form),
    )
    assert moved.status_code == 403
    assert stored(rt) == ([], [])
    assert demo_contact(rt).sms_opted_out_at is None


REPLY = FakeTwilio(None).reply_form(DEMO_NUMBER, "Paid yesterday")  # type: ignore[arg-type]
STATUS = FakeTwilio(None).status_form(  # type: ignore[arg-type]
    {"sid": "SM" + "c" * 32, "to": DEMO_NUMBER}, "delivered"
)


def without(form: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in form.items() if k not in names}


@pytest.mark.parametrize(
    ("form", "query", "field"),
    [
        (without(REPLY, "MessageSid", "SmsSid", "SmsMessageSid"), "", "MessageSid"),
        (without(REPLY, "AccountSid"), "", "AccountSid"),
        (without(REPLY, "From"), "", "From"),
        ({**REPLY, "MessageSid": "SM" + "9" * 5000}, "", "MessageSid"),
        ({**REPLY, "MessageSid": "'; DROP TABLE contacts; --"}, "", "MessageSid"),
        ({**REPLY, "Body": "x" * 6000}, "", "Body"),
        ({**REPLY, "From": "+1" * 100}, "", "From"),
        (without(STATUS, "MessageStatus", "SmsStatus"), "key=sms%3Ac1", "MessageStatus"),
        ({**STATUS, "MessageStatus": "delivered!!", "SmsStatus": ""}, "", "MessageStatus"),
        ({**STATUS, "MessageStatus": "d" * 500}, "", "MessageStatus"),
        ({**STATUS, "ErrorCode": "-1"}, "", "ErrorCode"),
        ({**STATUS, "ErrorCode": "3000600000000000000"}, "", "ErrorCode"),
        ({**STATUS, "ErrorCode": "thirty"}, "", "ErrorCode"),
        (STATUS, "key=" + "k" * 300, "key"),
        ({}, "", "AccountSid"),
    ],
)
def test_a_malformed_request_is_refused_clearly_and_never_stored(
    client, rt, clock, demo_company, caplog, form, query, field
):
    """Signed as Twilio would sign it, but not Twilio's form: a 400 naming the field, a log
    line, nothing stored, and never a 500."""
    twilio = FakeTwilio(clock)
    with caplog.at_level(logging.WARNING, logger="arbridge.web"):
        page = post_signed(client, twilio, form, query=query)
    assert page.status_code == 400
    assert field in page.get_json()["error"] and "Traceback" not in page.text
    assert any("malformed Twilio request" in r.getMessage() for r in caplog.records)
    assert stored(rt) == ([], [])
    assert demo_contact(rt).sms_opted_out_at is None


# -- the owner's pages ------------------------------------------------------------------------


def test_the_settings_page_says_how_texts_go_and_keeps_the_token_secret(client, rt, other_company):
    slug = other_company.company.slug
    sign_in(client, rt, other_company.company)
    page = client.get(f"/c/{slug}/settings")
    doc = parse(page.data)
    (status,) = doc.find_all("p", id="sms-status")
    assert "this installation's Twilio account" in status.text and FROM in status.text
    assert "http://127.0.0.1:5000/webhooks/twilio" in page.text
    token = "b" * 32
    saved = client.post(
        f"/c/{slug}/settings/sms",
        data={
            "csrf_token": csrf_token(page.data),
            "account_sid": "AC" + "1" * 32,
            "auth_token": token,
            "sender": "(312) 555-0177",
        },
    )
    assert saved.status_code == 303
    page = client.get(f"/c/{slug}/settings")
    assert "your Twilio account" in page.text and "+13125550177" in page.text
    assert token not in page.text
    with rt.sessions() as s:
        account = s.scalars(select(SmsAccount)).one()
        assert token not in account.credentials_encrypted
        assert rt.keyring.decrypt(account.credentials_encrypted) == token
    bad = client.post(
        f"/c/{slug}/settings/sms",
        data={"csrf_token": csrf_token(page.data), "account_sid": "nope", "sender": "x"},
        follow_redirects=True,
    )
    assert "The Account SID starts with AC" in bad.text


def test_the_reminders_page_counts_a_text_s_segments_without_script(client, rt, demo_company):
    sign_in(client, rt, demo_company)
    page = client.get("/c/demo/reminders")
    doc = parse(page.data)
    (length,) = doc.find_all("p", id="sms-length")
    assert "1 segment (GSM-7, 160 per segment)" in length.text
    assert doc.find_all("script", src="/static/sms.js")
    saved = client.post(
        "/c/demo/reminders/sms-wording",
        data={
            "csrf_token": csrf_token(page.data),
            "sms_template": "{{ business_name }}: {{ total_due }} – zapłać: {{ statement_link }}",
        },
        follow_redirects=True,
    )
    # One character outside GSM-7 makes the whole text UCS-2: two segments of 67.
    assert "Wording saved:" in saved.text and "2 segments (UCS-2, 67 per segment)" in saved.text
    (length,) = parse(saved.data).find_all("p", id="sms-length")
    assert "UCS-2" in length.text
    bad = client.post(
        "/c/demo/reminders/sms-wording",
        data={"csrf_token": csrf_token(saved.data), "sms_template": "{{ nope }}"},
        follow_redirects=True,
    )
    assert "The wording was not saved" in bad.text
    with rt.sessions() as s:
        stored = s.get(Company, demo_company.id).settings["reminders"]["sms_template"]
    assert "zapłać" in stored


def test_sms_js_is_a_static_file_the_policy_allows(client):
    script = client.get("/static/sms.js")
    text = script.text
    script.close()
    assert script.status_code == 200 and "segment" in text
    assert (STATIC / "sms.js").read_text() == text


def test_the_customer_page_shows_the_number_and_records_consent_with_a_note(
    client, rt, demo_company
):
    contact = demo_contact(rt)
    sign_in(client, rt, demo_company)
    url = f"/c/demo/customers/{contact.customer_id}"
    page = client.get(url)
    (box,) = parse(page.data).find_all("div", id=f"sms-contact-{contact.id}")
    assert DEMO_NUMBER in box.text and "from your ledger" in box.text
    client.post(
        f"/c/demo/contacts/{contact.id}/sms-consent",
        data={"csrf_token": csrf_token(page.data), "consent": "no", "note": "asked us to stop"},
    )
    assert demo_contact(rt).sms_consent_at is None
    refused = client.post(
        f"/c/demo/contacts/{contact.id}/sms-consent",
        data={"csrf_token": csrf_token(page.data), "consent": "yes", "note": ""},
        follow_redirects=True,
    )
    assert "Say how the customer agreed" in refused.text
    client.post(
        f"/c/demo/contacts/{contact.id}/sms-consent",
        data={"csrf_token": csrf_token(page.data), "consent": "yes", "note": "signed form 12"},
    )
    c = demo_contact(rt)
    assert c.sms_consent_source == "owner" and c.sms_consent_note.startswith("signed form 12")
    assert "signed form 12" in client.get(url).text


def test_a_contact_s_new_number_is_stored_in_e164_and_starts_over(client, rt, demo_company):
    contact = demo_contact(rt)
    with transaction(rt.sessions) as s:
        s.get(Contact, contact.id).sms_opted_out_at = rt.clock.now()
    sign_in(client, rt, demo_company)
    url = f"/c/demo/customers/{contact.customer_id}"
    page = client.get(url)
    client.post(
        f"/c/demo/customers/{contact.customer_id}/contact",
        data={
            "csrf_token": csrf_token(page.data),
            "contact_id": contact.id,
            "email": contact.email,
            "phone": "312.555.0188",
        },
    )
    with rt.sessions() as s:
        c = s.get(Contact, contact.id)
        assert (c.phone_e164, c.sms_opted_out_at) == ("+13125550188", None)
