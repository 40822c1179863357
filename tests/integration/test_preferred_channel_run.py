"""The daily run follows a contact's preferred channel (issue 13: it saved and did nothing): a
contact who prefers texts gets the sequence's email step as a text through Twilio (faked at the
HTTP level), by email where texting is not possible; one who prefers a call gets the email and a
call task. Each step is still claimed once. A contact's own timezone sets when it goes out."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from arbridge.services.reminders.run import run_reminders
from arbridge.sync.model import CallTask, Contact, ReminderSend
from arbridge.worker import drain
from tests.integration.test_sms_reminders import (  # noqa: F401 (fixtures)
    E164,
    contact,
    load_day_for,
    outbox,
    sends,
    trt,
    twilio,
    world_company,
    world_with_phone,
)

EMAIL_STEP = [{"key": "after-3", "offset_days": 3, "channel": "email", "template": "overdue"}]


def _prefers(rt, world, channel: str | None, **changes) -> None:
    world.set_reminders(sequences={"default": EMAIL_STEP})
    world.update(Contact, contact(rt).id, preferred_channel=channel, **changes)


def test_a_contact_who_prefers_texts_got_the_reminder_by_email_anyway(trt, twilio):  # noqa: F811
    world = world_with_phone(trt)
    _prefers(trt, world, "sms")
    (m,) = load_day_for(trt).day.messages
    assert (m.channel, m.held) == ("sms", None) and "prefers texts" in m.route
    first = run_reminders(trt, world_company(trt))
    assert (first.texts, first.emails) == (1, 0)
    assert run_reminders(trt, world_company(trt)).texts == 0  # the same claim: once
    drain(trt)
    (create,) = twilio.creates
    assert create["To"] == E164 and "/pay/" in create["Body"]
    assert [(s.step_key, s.channel, s.status) for s in sends(trt)] == [("after-3", "sms", "sent")]
    assert outbox(trt, "email") == []


def test_a_contact_who_prefers_texts_without_consent_gets_the_email(trt, twilio):  # noqa: F811
    world = world_with_phone(trt, consent=False)
    _prefers(trt, world, "sms")
    (m,) = load_day_for(trt).day.messages
    assert m.channel == "email" and "no recorded consent" in m.route
    assert (run_reminders(trt, world_company(trt)).emails, twilio.creates) == (1, [])
    assert [(s.channel, s.status) for s in sends(trt)] == [("email", "queued")]


def test_a_contact_who_prefers_a_call_gets_the_email_and_a_call_task_once(trt, twilio):  # noqa: F811
    world = world_with_phone(trt)
    _prefers(trt, world, "phone")
    first = run_reminders(trt, world_company(trt))
    assert (first.emails, first.calls, first.texts) == (1, 1, 0)
    again = run_reminders(trt, world_company(trt))
    assert (again.emails, again.calls) == (0, 0)
    with trt.sessions() as s:
        (task,) = s.scalars(select(CallTask)).all()
        assert "prefers a call" in task.reason
        # It said no email had gone out while this step's email was going out beside it.
        assert "today's reminder email goes out beside this call" in task.reason
        assert len(s.scalars(select(ReminderSend)).all()) == 1


def test_a_contact_s_own_timezone_sets_when_the_reminder_goes_out(trt, twilio):  # noqa: F811
    world = world_with_phone(trt)
    # 09:00 in Chicago (the customer's, the business's): 07:00 in Los Angeles, the contact's.
    _prefers(trt, world, None, timezone="America/Los_Angeles")
    run_reminders(trt, world_company(trt))
    (row,) = outbox(trt, "email")
    assert row.next_attempt_at == trt.clock.now() + timedelta(hours=1)
