"""Day one: a ledger just connected brings old overdue invoices, and nothing goes out until the
owner chooses how reminders start; tomorrow's dry run is shown under the choice first, and no
customer's first message is a final notice."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from arbridge.collections.reminder_policy import ReminderStart, reminder_policy
from arbridge.services.reminders.run import run_reminders
from arbridge.sync.connections import hold_reminders_until_chosen
from arbridge.sync.db import transaction
from arbridge.sync.model import CallTask, Company, OutboxMessage, ReminderSend
from arbridge.sync.store import company_today
from tests.web.conftest import csrf_token, form_fields, fresh_company, parse


def waiting(rt, company) -> None:
    with transaction(rt.sessions) as s:
        hold_reminders_until_chosen(s.get(Company, company.id))


def sent_steps(rt) -> set[str]:
    with rt.sessions() as s:
        return set(s.scalars(select(ReminderSend.step_key)))


def test_nothing_goes_out_until_the_owner_chooses(rt, owner_client, demo_company, clock):
    waiting(rt, demo_company)
    result = run_reminders(rt, fresh_company(rt, "demo"))
    assert (result.emails, result.calls, result.statements) == (0, 0, 0)
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        assert s.scalar(select(func.count()).select_from(CallTask)) == 0
    page = parse(owner_client.get("/c/demo/").data)
    assert page.by_id("reminders-waiting") is not None


def test_choosing_shows_tomorrow_then_starts_at_the_first_overdue_step(
    rt, owner_client, demo_company, clock
):
    waiting(rt, demo_company)
    choice = owner_client.get("/c/demo/reminders/start?mode=first_step")
    assert choice.status_code == 200
    doc = parse(choice.data)
    shown = doc.by_id("start-preview").text
    assert "final-notice" not in shown and "30 days after due" not in shown
    assert "phone call" not in shown and "after-3" not in shown  # no internal names either
    assert "3 days before due" in shown or "3 days after due" in shown
    assert sent_steps(rt) == set()  # the preview sends nothing
    form = doc.find("form", id="start-confirm")
    assert owner_client.post(form.attrs["action"], data=form_fields(form)).status_code == 302
    company = fresh_company(rt, "demo")
    today = company_today(company, rt.clock)
    assert reminder_policy(company.settings).start == ReminderStart("first_step", today, None)
    assert parse(owner_client.get("/c/demo/").data).by_id("reminders-waiting") is None
    clock.advance(timedelta(days=1))
    result = run_reminders(rt, fresh_company(rt, "demo"))
    assert result.emails > 0 and result.calls == 0
    assert sent_steps(rt) <= {"before-3", "due", "after-3"}  # never a final notice first


def test_skip_older_leaves_the_oldest_to_the_owner(rt, owner_client, demo_company, clock):
    waiting(rt, demo_company)
    shown = owner_client.get("/c/demo/reminders/start?mode=skip_older&days=30")
    assert "more than 30 days overdue when reminders started" in (
        parse(shown.data).by_id("start-preview").text
    )
    form = parse(shown.data).find("form", id="start-confirm")
    owner_client.post(form.attrs["action"], data=form_fields(form))
    start = reminder_policy(fresh_company(rt, "demo").settings).start
    assert start is not None and (start.mode, start.skip_days) == ("skip_older", 30)


def test_a_bad_choice_is_refused_and_changes_nothing(rt, owner_client, demo_company):
    waiting(rt, demo_company)
    assert owner_client.get("/c/demo/reminders/start?mode=now").status_code == 400
    assert owner_client.get("/c/demo/reminders/start?mode=skip_older&days=0").status_code == 400
    token = csrf_token(owner_client.get("/c/demo/reminders/start").data)
    for data in ({"mode": "all"}, {"mode": "skip_older", "days": "99999"}, {"mode": "skip_older"}):
        owner_client.post("/c/demo/reminders/start", data={"csrf_token": token, **data})
    start = reminder_policy(fresh_company(rt, "demo").settings).start
    assert start == ReminderStart("waiting")


def test_the_start_page_said_nothing_had_been_sent_once_reminders_had_started(
    rt, owner_client, demo_company
):
    waiting(rt, demo_company)
    first = parse(owner_client.get("/c/demo/reminders/start").data)
    assert "Nothing has been sent to anyone" in first.by_id("reminders-start").text
    form = parse(owner_client.get("/c/demo/reminders/start?mode=first_step").data)
    confirm = form.find("form", id="start-confirm")
    owner_client.post(confirm.attrs["action"], data=form_fields(confirm))
    later = parse(owner_client.get("/c/demo/reminders/start").data)
    assert "Nothing has been sent" not in later.by_id("reminders-start").text
    assert later.by_id("started-already") is not None


def test_the_start_pages_csv_without_a_choice_answered_with_the_pages_html(owner_client):
    answer = owner_client.get("/c/demo/reminders/start?format=csv", follow_redirects=True)
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
