"""Reminder texts end to end: a sequence's SMS step queued inside the hours a text may arrive,
sent through Twilio (faked at the HTTP level) once, with its pay link; a crash or lost answer
between Twilio's accept and our record never sends twice; status callbacks update the text;
a refused number turns the step into an email; STOP, START and other replies; and without
Twilio the step is held."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import responses
from sqlalchemy import select

from arbridge.config import TwilioSettings
from arbridge.errors import SignatureInvalid
from arbridge.runtime import Runtime
from arbridge.services.messaging.sms import WEBHOOK_PATH
from arbridge.services.messaging.sms_setup import save_sms_account
from arbridge.services.reminders.facts import load_day
from arbridge.services.reminders.run import run_reminders
from arbridge.services.reminders.text_replies import ingest_twilio, receive_twilio
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Company,
    Connection,
    Contact,
    Customer,
    MailMessage,
    OutboxMessage,
    ReminderSend,
    SmsReply,
    WebhookEvent,
)
from arbridge.sync.outbox import MAX_ATTEMPTS
from arbridge.sync.store import rotate_secrets
from arbridge.worker import drain
from tests.integration.remind_support import START, Cust, Inv, World, build_world
from tests.twilio_http_fake import API, FROM, FakeTwilio

PHONE = "(312) 555-0142"
E164 = "+13125550142"
TEXT_STEP = [{"key": "after-3", "offset_days": 3, "channel": "sms", "template": "overdue"}]


@pytest.fixture
def twilio(clock):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeTwilio(clock).install(rsps)


@pytest.fixture
def trt(rt: Runtime, twilio: FakeTwilio) -> Runtime:
    """The runtime with the install's Twilio account (ARBRIDGE_TWILIO_*), pointed at the fake."""
    return replace(
        rt,
        settings=rt.settings.with_(
            twilio=TwilioSettings(twilio.account_sid, twilio.auth_token, None, FROM, API)
        ),
    )


def world_with_phone(
    rt: Runtime, phone: str | None = PHONE, consent: bool = True, country: str = "US"
) -> World:
    world = build_world(
        rt,
        [Cust("C1", "Harbor Foods", "Ana", "ana@harbor.example")],
        [Inv("I1", "C1", -5, "120.00")],
        sequences={"default": TEXT_STEP},
    )
    with world.ledger.change() as state:
        record = world.ledger.find(state, "Customer", "C1")
        record["country"] = country
        record["contactPerson"] = {
            "firstName": "Ana",
            "email": "ana@harbor.example",
            "phone": phone,
            "smsConsent": consent,
        }
        world.ledger.touch(state, record)
    world.sync()
    return world


def contact(rt: Runtime) -> Contact:
    with rt.sessions() as s:
        c = s.scalars(select(Contact)).one()
        s.expunge(c)
        return c


def texts(rt: Runtime) -> list[MailMessage]:
    with rt.sessions() as s:
        found = s.scalars(select(MailMessage).where(MailMessage.channel == "sms")).all()
        for m in found:
            s.expunge(m)
        return list(found)


def outbox(rt: Runtime, kind: str = "sms") -> list[OutboxMessage]:
    with rt.sessions() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)).all()
        for r in rows:
            s.expunge(r)
        return list(rows)


def sends(rt: Runtime) -> list[ReminderSend]:
    with rt.sessions() as s:
        rows = s.scalars(select(ReminderSend)).all()
        for r in rows:
            s.expunge(r)
        return list(rows)


def signed(twilio: FakeTwilio, rt: Runtime, form: dict[str, str], query: str = ""):
    url = f"{rt.settings.base_url}{WEBHOOK_PATH}" + (f"?{query}" if query else "")
    return url, list(form.items()), twilio.sign(url, form)["X-Twilio-Signature"]


def callback(twilio: FakeTwilio, rt: Runtime, status: str, code: str | None = None) -> str:
    """Twilio's status callback for its latest text, to the URL the text named."""
    created = twilio.creates[-1]
    url = created["StatusCallback"]
    form = twilio.status_form(twilio.messages[0], status, code)
    return receive_twilio(rt, url, list(form.items()), twilio.sign(url, form)["X-Twilio-Signature"])


# -- numbers and consent from the ledger ------------------------------------------------------


def test_the_ledger_s_numbers_are_stored_in_e164_with_its_consent(rt):
    world_with_phone(rt)
    c = contact(rt)
    assert (c.phone, c.phone_e164, c.phone_problem) == (PHONE, E164, None)
    assert c.sms_consent_at == rt.clock.now() and c.sms_consent_source == "ledger"


def test_a_number_without_its_area_code_is_kept_with_why_it_cannot_take_texts(rt):
    world_with_phone(rt, phone="555 0142")
    c = contact(rt)
    assert c.phone_e164 is None and "not a valid number" in c.phone_problem


def test_a_sync_never_overwrites_the_owner_s_consent_or_a_stop(rt):
    world = world_with_phone(rt, consent=False)
    stamp = rt.clock.now() - timedelta(days=3)
    world.update(
        Contact,
        contact(rt).id,
        sms_consent_at=stamp,
        sms_consent_source="owner",
        sms_consent_note="said yes on the phone",
    )
    with world.ledger.change() as state:
        record = world.ledger.find(state, "Customer", "C1")
        record["contactPerson"]["smsConsent"] = True
        world.ledger.touch(state, record)
    world.sync()
    c = contact(rt)
    assert (c.sms_consent_at, c.sms_consent_source) == (stamp, "owner")


# -- sending ----------------------------------------------------------------------------------


def test_a_text_step_goes_through_twilio_once_with_its_pay_link(trt, twilio):
    world_with_phone(trt)
    first = run_reminders(trt, world_company(trt))
    assert (first.texts, first.emails, first.held) == (1, 0, 0)
    assert run_reminders(trt, world_company(trt)).texts == 0  # claimed once
    drain(trt)
    drain(trt)
    (create,) = twilio.creates
    assert create["To"] == E164 and create["From"] == FROM
    assert "/pay/" in create["Body"] and create["Body"].endswith("Reply STOP to opt out.")
    callback_url = urlsplit(create["StatusCallback"])
    (row,) = outbox(trt)
    assert callback_url.path == WEBHOOK_PATH and parse_qs(callback_url.query)["key"] == [row.key]
    (text,) = texts(trt)
    assert (text.to_addr, text.message_id, text.transport) == (
        E164,
        twilio.messages[0]["sid"],
        "twilio",
    )
    assert text.delivery_status == "queued" and text.text_body == create["Body"]
    assert text.headers["Segments"] == "1" and text.headers["Encoding"] == "GSM-7"
    assert [s.status for s in sends(trt)] == ["sent"]


def test_a_text_waits_for_8_o_clock_where_the_customer_is(trt, twilio):
    world = world_with_phone(trt)
    world.update(Customer, world.customer("C1").id, timezone="America/Los_Angeles")
    run_reminders(trt, world_company(trt))  # 09:00 in Chicago is 07:00 in Los Angeles
    (row,) = outbox(trt)
    assert row.next_attempt_at == trt.clock.now() + timedelta(hours=1)
    drain(trt)
    assert twilio.creates == []
    trt.clock.advance(timedelta(hours=1))
    drain(trt)
    assert len(twilio.creates) == 1


def test_a_text_whose_hours_ended_before_the_worker_reached_it_waits_for_the_morning(trt, twilio):
    # Queued at 09:00 in Chicago; the worker only gets to it at 22:00, past the 21:00 limit. It
    # used to fail for good (RateLimited built without its message): it must wait, not die.
    world_with_phone(trt)
    run_reminders(trt, world_company(trt))
    trt.clock.advance(timedelta(hours=13))
    drain(trt)
    (row,) = outbox(trt)
    assert (row.status, twilio.creates) == ("pending", [])
    assert row.next_attempt_at == trt.clock.now() + timedelta(hours=10)  # 08:00 next morning
    trt.clock.advance(timedelta(hours=10))
    drain(trt)
    assert len(twilio.creates) == 1 and outbox(trt)[0].status == "sent"


def test_a_text_kept_waiting_for_its_hours_died_after_eight_waits_and_woke_a_second_early(
    trt, twilio
):
    # Each wait for the hours a text may arrive counted as a failed try: after eight (a worker
    # down for a week, the demo's clock moved in the evening) the text was dead and the step
    # lost. And the wait was cut to whole seconds, so it woke at 07:59:59 and waited again.
    world_with_phone(trt)
    trt.clock.advance(timedelta(microseconds=400_000))
    run_reminders(trt, world_company(trt))
    trt.clock.advance(timedelta(hours=13))  # 22:00: too late today
    for _ in range(MAX_ATTEMPTS + 2):
        drain(trt)
        (row,) = outbox(trt)
        assert (row.status, row.attempts, twilio.creates) == ("pending", 0, [])
        morning = row.next_attempt_at
        local = morning.astimezone(ZoneInfo("America/Chicago"))
        assert (local.hour, local.minute, local.second, local.microsecond) == (8, 0, 0, 0)
        trt.clock.advance(timedelta(days=1))  # the next run is again in the evening
    trt.clock.advance(morning - trt.clock.now())
    drain(trt)
    assert len(twilio.creates) == 1 and outbox(trt)[0].status == "sent"


def test_twilio_s_too_many_requests_waits_a_minute_and_sends_once(trt, twilio):
    # Twilio's 429 (error 20429) used to fail the text for good (RateLimited without its message).
    world_with_phone(trt)
    run_reminders(trt, world_company(trt))
    twilio.next_outcomes = [20429]
    drain(trt)
    (row,) = outbox(trt)
    assert row.status == "pending" and len(twilio.creates) == 1
    trt.clock.advance(timedelta(minutes=1))
    drain(trt)
    assert len(twilio.messages) == 1 and outbox(trt)[0].status == "sent"
    assert len(texts(trt)) == 1


def test_an_answer_lost_after_twilio_accepted_is_looked_up_not_sent_again(trt, twilio):
    world_with_phone(trt)
    run_reminders(trt, world_company(trt))
    twilio.next_outcomes = ["lost"]  # Twilio keeps the text; its answer never reaches us
    drain(trt)
    (row,) = outbox(trt)
    assert row.status == "pending" and row.payload["sms_attempt"]["body"]
    assert texts(trt) == [] and len(twilio.messages) == 1
    trt.clock.advance(timedelta(minutes=5))
    drain(trt)
    assert len(twilio.creates) == 1 and twilio.lists == 1  # asked, found, not resent
    (text,) = texts(trt)
    assert text.message_id == twilio.messages[0]["sid"]
    assert text.text_body == twilio.messages[0]["body"]
    assert outbox(trt)[0].status == "sent" and [s.status for s in sends(trt)] == ["sent"]


def test_a_worker_killed_between_twilio_s_accept_and_the_record_never_sends_twice(trt, twilio):
    world_with_phone(trt)
    run_reminders(trt, world_company(trt))
    twilio.next_outcomes = ["lost"]
    drain(trt)
    # What a worker killed after Twilio took the text leaves behind: the row still "sending"
    # (its lease running), the text it was sending written on it, nothing recorded.
    with transaction(trt.sessions) as s:
        row = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "sms")).one()
        row.status, row.next_attempt_at = "sending", trt.clock.now()
    drain(trt)
    assert len(twilio.creates) == 1 and texts(trt) == []  # its lease has not run out
    trt.clock.advance(timedelta(minutes=16))
    drain(trt)
    assert (len(twilio.creates), twilio.lists) == (1, 1)
    (text,) = texts(trt)
    assert text.message_id == twilio.messages[0]["sid"] and outbox(trt)[0].status == "sent"


def test_a_worker_that_crashed_mid_send_finds_the_text_by_its_status_callback(trt, twilio):
    world_with_phone(trt)
    run_reminders(trt, world_company(trt))
    twilio.next_outcomes = ["lost"]
    drain(trt)
    # Twilio reports the text before we recorded it: the SID is kept where the retry looks.
    assert callback(twilio, trt, "sent") == "remembered"
    trt.clock.advance(timedelta(minutes=5))
    drain(trt)
    assert (len(twilio.creates), twilio.lists) == (1, 0)
    (text,) = texts(trt)
    assert (text.message_id, text.delivery_status) == (twilio.messages[0]["sid"], "sent")


def test_when_twilio_cannot_be_asked_the_text_is_maybe_sent_never_repeated(trt, twilio):
    world_with_phone(trt)
    run_reminders(trt, world_company(trt))
    twilio.next_outcomes = ["lost"]
    drain(trt)
    twilio.list_fails = True
    trt.clock.advance(timedelta(minutes=5))
    drain(trt)
    trt.clock.advance(timedelta(hours=2))
    drain(trt)
    assert len(twilio.creates) == 1
    assert outbox(trt)[0].status == "maybe_sent"
    (text,) = texts(trt)
    assert text.transport == "sms-maybe"
    (told,) = [m for m in outbox(trt, "email") if m.key.startswith("owner:maybe-sent:")]
    assert "Twilio" in told.payload["text"] and "will not send it again" in told.payload["text"]


def test_a_text_twilio_never_took_is_sent_again_after_the_lookup(trt, twilio):
    world_with_phone(trt)
    run_reminders(trt, world_company(trt))
    twilio.next_outcomes = ["server_error"]
    drain(trt)
    trt.clock.advance(timedelta(minutes=5))
    drain(trt)
    assert (len(twilio.creates), twilio.lists, len(twilio.messages)) == (2, 1, 1)
    assert len(texts(trt)) == 1


def test_an_invalid_number_is_marked_and_the_step_goes_by_email(trt, twilio):
    world_with_phone(trt)
    run_reminders(trt, world_company(trt))
    twilio.next_outcomes = [21211]
    drain(trt)
    assert contact(trt).sms_undeliverable_at == trt.clock.now()
    (email_row,) = outbox(trt, "email")
    assert email_row.key.startswith("reminder-fallback:sms:")
    drain(trt)
    with trt.sessions() as s:
        mail = s.scalars(select(MailMessage).where(MailMessage.kind == "reminder")).all()
    assert [(m.channel, m.to_addr) for m in mail] == [("email", "ana@harbor.example")]
    assert [(r.channel, r.status) for r in sends(trt)] == [("email", "sent")]
    # The next SMS step for this customer is an email from the start.
    loaded = load_day_for(trt)
    assert all(m.channel != "sms" for m in loaded.day.messages)


# -- status callbacks -------------------------------------------------------------------------


def test_status_callbacks_move_a_text_forward_only(trt, twilio):
    world_with_phone(trt)
    run_reminders(trt, world_company(trt))
    drain(trt)
    assert callback(twilio, trt, "delivered") == "delivered"
    assert callback(twilio, trt, "sent") == "sent"  # arrives late: changes nothing
    # Twice: Twilio's repeat is stored once and not acted on again.
    assert callback(twilio, trt, "delivered") == "duplicate"
    (text,) = texts(trt)
    assert text.delivery_status == "delivered"


def test_an_undelivered_callback_marks_the_number_and_falls_back_to_email(trt, twilio):
    world_with_phone(trt)
    run_reminders(trt, world_company(trt))
    drain(trt)
    assert callback(twilio, trt, "undelivered", "30006") == "undeliverable"  # a landline
    (text,) = texts(trt)
    assert (text.delivery_status, text.error_code) == ("undelivered", "30006")
    assert contact(trt).sms_undeliverable_at is not None
    assert callback(twilio, trt, "undelivered", "30006") == "duplicate"
    assert len(outbox(trt, "email")) == 1  # once, however often Twilio says it
    drain(trt)
    assert [(r.channel, r.status) for r in sends(trt)] == [("email", "sent")]


def test_a_failed_text_for_another_reason_is_only_recorded(trt, twilio):
    world_with_phone(trt)
    run_reminders(trt, world_company(trt))
    drain(trt)
    assert callback(twilio, trt, "failed", "30007") == "failed"  # carrier filtering
    assert contact(trt).sms_undeliverable_at is None and outbox(trt, "email") == []


# -- replies ----------------------------------------------------------------------------------


def test_stop_opts_the_number_out_at_once_and_start_back_in(trt, twilio):
    world_with_phone(trt)
    run_reminders(trt, world_company(trt))  # queued, not yet sent
    assert receive_twilio(trt, *signed(twilio, trt, twilio.reply_form(E164, "Stop"))) == (
        "opted out"
    )
    assert contact(trt).sms_opted_out_at == trt.clock.now()
    drain(trt)
    assert twilio.creates == []  # the queued text is cancelled at its re-check
    assert [s.status for s in sends(trt)] == ["cancelled"]
    assert "replied STOP" in (sends(trt)[0].note or "")
    assert receive_twilio(trt, *signed(twilio, trt, twilio.reply_form(E164, "START"))) == (
        "opted in"
    )
    assert contact(trt).sms_opted_out_at is None


def test_other_replies_wait_in_the_owner_s_list_once(trt, twilio):
    world_with_phone(trt)
    form = twilio.reply_form(E164, "I paid this by cheque yesterday")
    assert receive_twilio(trt, *signed(twilio, trt, form)) == "reply"
    receive_twilio(trt, *signed(twilio, trt, form))  # Twilio retries: kept once
    with trt.sessions() as s:
        (reply,) = s.scalars(select(SmsReply)).all()
        assert (reply.body, reply.from_number, reply.contact_id) == (
            "I paid this by cheque yesterday",
            E164,
            contact(trt).id,
        )


def test_a_request_not_signed_by_the_account_s_token_changes_nothing(trt, twilio):
    world_with_phone(trt)
    url, form, _sig = signed(twilio, trt, twilio.reply_form(E164, "STOP"))
    forged = twilio.sign(url, dict(form), token="0" * 32)["X-Twilio-Signature"]
    with pytest.raises(SignatureInvalid):
        receive_twilio(trt, url, form, forged)
    other = [(k, "AC" + "1" * 32 if k == "AccountSid" else v) for k, v in form]
    with pytest.raises(SignatureInvalid):
        receive_twilio(trt, url, other, _sig)
    assert contact(trt).sms_opted_out_at is None


def test_a_business_s_own_account_signs_only_for_its_own_contacts(rt, twilio):
    world_with_phone(rt)
    with transaction(rt.sessions) as s:
        company = s.scalars(select(Company)).one()
        save_sms_account(s, rt, company, twilio.account_sid, twilio.auth_token, FROM)
    assert receive_twilio(rt, *signed(twilio, rt, twilio.reply_form(E164, "STOP"))) == ("opted out")
    assert contact(rt).sms_opted_out_at is not None
    with rt.sessions() as s:
        assert rotate_secrets(s, rt.keyring) == 1  # the Twilio token (the demo ledger has none)


def test_a_stored_stop_the_request_did_not_handle_is_handled_by_the_worker_once(trt, twilio):
    """Stored but not handled (the process died between the two): the worker's dispatch table
    has Twilio's handlers, and acts on it once."""
    world_with_phone(trt)
    stored = ingest_twilio(trt, *signed(twilio, trt, twilio.reply_form(E164, "STOP")))
    assert (stored.new, contact(trt).sms_opted_out_at) == (1, None)
    drain(trt)
    assert contact(trt).sms_opted_out_at == trt.clock.now()
    with trt.sessions() as s:
        (event,) = s.scalars(select(WebhookEvent)).all()
        assert (event.provider, event.status, event.attempts) == ("twilio", "processed", 1)
    assert drain(trt)[0] == 0


# -- without Twilio ---------------------------------------------------------------------------


def test_without_twilio_an_sms_step_is_held_and_says_so(rt):
    world = world_with_phone(rt)
    world.update(Connection, world.conn_id, provider="quickbooks")  # not the demo's carrier
    (m,) = load_day_for(rt).day.messages
    assert m.channel == "sms" and m.held and "SMS is not configured" in m.held
    result = run_reminders(rt, world_company(rt))
    assert (result.texts, result.held) == (0, 1) and outbox(rt) == []


def test_the_demo_carrier_puts_texts_in_the_mailbox(rt):
    world_with_phone(rt)  # a demo ledger, no Twilio
    assert run_reminders(rt, world_company(rt)).texts == 1
    drain(rt)
    (text,) = texts(rt)
    assert (text.transport, text.to_addr, text.delivery_status) == ("simulated", E164, "delivered")


def test_no_consent_holds_the_text_with_a_reason(trt):
    world_with_phone(trt, consent=False)
    (m,) = load_day_for(trt).day.messages
    assert "no recorded consent to text +13125550142" in (m.held or "")


def add_overdue_invoice(world: World, days_late: int) -> None:
    due = START - timedelta(days=days_late)
    world.ledger.add_invoice(
        invoiceNumber=f"INV-LATE-{days_late}",
        contactId="C1",
        date=(due - timedelta(days=30)).isoformat(),
        dueDate=due.isoformat(),
        currencyCode="USD",
        currencyRate="1",
        terms="Net 30",
        total="55.00",
        lineItems=[],
    )
    world.sync()


def test_at_most_one_text_a_day_to_a_contact(trt, twilio):
    world = world_with_phone(trt)
    assert run_reminders(trt, world_company(trt)).texts == 1
    add_overdue_invoice(world, 4)  # later the same day, another invoice due for its text
    (m,) = load_day_for(trt).day.messages
    assert "already had a text today" in (m.held or "")
    assert run_reminders(trt, world_company(trt)).texts == 0


def test_the_weekly_cap_counts_emails_and_texts_together(trt, twilio):
    world = world_with_phone(trt)
    world.set_reminders(
        max_per_week=1,
        sequences={
            "default": [
                {"key": "after-3", "offset_days": 3, "channel": "email", "template": "overdue"},
                {"key": "after-9", "offset_days": 9, "channel": "sms", "template": "overdue"},
            ]
        },
    )
    assert run_reminders(trt, world_company(trt)).emails == 1
    add_overdue_invoice(world, 10)
    (m,) = [m for m in load_day_for(trt).day.messages if m.channel == "sms"]
    assert "weekly limit of 1 reminder reached for +13125550142" in (m.held or "")


def world_company(rt: Runtime) -> Company:
    with rt.sessions() as s:
        company = s.scalars(select(Company)).one()
        s.expunge(company)
        return company


def load_day_for(rt: Runtime):
    with rt.sessions() as s:
        company = s.scalars(select(Company)).one()
        return load_day(s, rt, company, START)


def test_a_reply_from_an_unknown_number_to_a_business_s_own_account_is_still_kept(rt, twilio):
    world_with_phone(rt)
    with transaction(rt.sessions) as s:
        company = s.scalars(select(Company)).one()
        save_sms_account(s, rt, company, twilio.account_sid, twilio.auth_token, FROM)
    form = twilio.reply_form("+13125550111", "Who is this?")
    assert receive_twilio(rt, *signed(twilio, rt, form)) == "reply"
    with rt.sessions() as s:
        (reply,) = s.scalars(select(SmsReply)).all()
        assert (reply.from_number, reply.contact_id) == ("+13125550111", None)
