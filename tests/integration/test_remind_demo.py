"""The demo ledger under the demo's sequence (the default one with a text a week after the due
date): `arbridge remind --dry-run` explains every open invoice, the real run queues what the dry
run showed, once, and the in-app mailbox gets it, texts included (the simulated carrier)."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from arbridge.collections.reminder_policy import ReminderSequence
from arbridge.collections.reminder_words import step_in_words
from arbridge.demo import DEMO_STEPS
from arbridge.services.reminders.run import run_reminders
from arbridge.sync.model import Invoice, MailMessage, OutboxMessage, ReminderSend
from arbridge.wording import counted, verb
from arbridge.worker import drain
from tests.conftest import env_for_subprocess

TODAY = date(2026, 11, 24)
ARBRIDGE = str(Path(sys.executable).with_name("arbridge"))
DEMO_SEQUENCE = ReminderSequence("default", DEMO_STEPS)
SEND = re.compile(r"^  SEND (?:email|phone call|text message) to (.+) <(.+)>: (.+); invoices (.+)$")


@dataclass
class Result:
    exit_code: int
    output: str


def cli(settings, *args: str) -> Result:
    """The real console script in a process of its own (it opens, and leaves, its own engine)."""
    done = subprocess.run(
        [ARBRIDGE, *args],
        env=env_for_subprocess(settings),
        cwd=settings.instance_path.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(done.returncode, done.stdout + done.stderr)


def expected_step(due_on: date, as_of: date) -> str | None:
    days = (as_of - due_on).days
    reached = [s.key for s in DEMO_SEQUENCE.steps if s.offset_days <= days]
    return reached[-1] if reached else None


def test_dry_run_explains_every_invoice_and_changes_nothing(rt, settings, demo_company):
    result = cli(settings, "remind", "--company", "demo", "--dry-run", "--as-of", "2026-11-24")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Reminders for Acme Supply Co. on 2026-11-24:"
    sends = [SEND.match(line) for line in lines if line.startswith("  SEND")]
    assert sends and all(sends)
    with rt.sessions() as s:
        by_number = {
            i.number: i
            for i in s.scalars(
                select(Invoice).where(
                    Invoice.company_id == demo_company.id,
                    Invoice.status == "open",
                    Invoice.open_balance_minor > 0,
                )
            )
        }
        # A dry run writes nothing.
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        assert s.scalar(select(func.count()).select_from(ReminderSend)) == 0
    listed = set()
    for m in sends:
        numbers = m.group(4).split(", ")
        # The email's step is the highest of its invoices' steps, said in words.
        steps = [expected_step(by_number[n].due_on, TODAY) for n in numbers]
        keys = [s.key for s in DEMO_SEQUENCE.steps]
        highest = DEMO_SEQUENCE.steps[keys.index(max(steps, key=keys.index))]
        assert m.group(3) == step_in_words(highest)
        listed.update(numbers)
    # Every open invoice whose first step has come is in exactly one message (nothing has been
    # sent yet, the demo has no holds, pauses or do-not-chase customers), the others in none.
    due = {n for n, i in by_number.items() if expected_step(i.due_on, TODAY)}
    held = [line for line in lines if line.startswith("  HELD")]
    held_numbers = {n for line in held for n in line.split("; invoices ")[-1].split(", ")}
    calls = [line for line in lines if line.startswith("  SEND phone call")]
    call_numbers = {n for line in calls for n in line.split("; invoices ")[-1].split(", ")}
    assert listed | held_numbers == due
    assert call_numbers <= due
    assert "Not reminded on that day" in result.output and "not yet due for a step" in result.output

    # A week later (nothing sent in between) the same invoices are still due.
    later = cli(settings, "remind", "--company", "demo", "--dry-run", "--as-of", "2026-12-01")
    assert later.exit_code == 0 and "on 2026-12-01" in later.output


def test_the_run_queues_what_the_dry_run_showed_once_and_the_mailbox_gets_it(
    rt, settings, demo_company
):
    dry = cli(settings, "remind", "--company", "demo", "--dry-run", "--as-of", "2026-11-24")
    emails = [line for line in dry.output.splitlines() if line.startswith("  SEND email")]
    calls = [line for line in dry.output.splitlines() if line.startswith("  SEND phone call")]
    texts = [line for line in dry.output.splitlines() if line.startswith("  SEND text message")]
    assert texts  # the demo's sequence has a text, and most demo customers agreed to texts
    # The run itself on the test's clock (Tuesday 09:00 in Chicago, inside the window).
    first = run_reminders(rt, demo_company)
    assert (first.emails, first.texts, first.calls) == (len(emails), len(texts), len(calls))
    again = run_reminders(rt, demo_company)
    assert (again.emails, again.texts, again.calls) == (0, 0, 0)

    drain(rt)
    with rt.sessions() as s:
        sent_texts = s.scalars(select(MailMessage).where(MailMessage.channel == "sms")).all()
        assert sorted(m.to_addr for m in sent_texts) == sorted(
            SEND.match(line).group(2) for line in texts
        )
        # The simulated carrier: every text in the mailbox, in E.164, with its pay link.
        assert {m.transport for m in sent_texts} == {"simulated"}
        assert all(m.to_addr.startswith("+1312555") for m in sent_texts)
        assert all("/pay/" in m.text_body and "STOP" in m.text_body for m in sent_texts)
        mails = s.scalars(
            select(MailMessage).where(
                MailMessage.kind == "reminder", MailMessage.channel == "email"
            )
        ).all()
        assert len(mails) == len(emails)
        assert {m.transport for m in mails} == {"mailbox"}  # no SMTP configured in the demo
        recipients = sorted(m.to_addr for m in mails)
        assert recipients == sorted(SEND.match(line).group(2) for line in emails)
        assert all("/u/" in m.text_body and "/pay/" in m.text_body for m in mails)
        left = s.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status != "sent")
        )
        assert left == 0
    after = cli(settings, "remind", "--company", "demo", "--dry-run", "--as-of", "2026-11-24")
    assert "SEND" not in after.output  # today's steps are all claimed
    assert f"{len(emails) and 'already reminded at this step'}" in after.output


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--company", "nope", "--dry-run"], "no company with the slug 'nope'"),
        (["--company", "demo", "--as-of", "2026-11-30"], "--as-of only works with --dry-run"),
    ],
)
def test_bad_input_is_one_sentence(settings, demo_company, args, error):
    result = cli(settings, "remind", *args)
    assert result.exit_code == 1
    assert error in result.output and "Traceback" not in result.output


def test_a_first_run_with_many_escalations_sends_the_owner_one_digest(rt, demo_company):
    from arbridge.sync.model import Activity

    run_reminders(rt, demo_company)
    run_reminders(rt, demo_company)  # the same day again: nothing new
    with rt.sessions() as s:
        escalated = s.scalar(
            select(func.count()).select_from(Activity).where(Activity.kind == "reminders.escalated")
        )
        owner_mail = s.scalars(
            select(OutboxMessage).where(OutboxMessage.key.like("owner:escalation%"))
        ).all()
    assert escalated > 5
    assert len(owner_mail) == 1
    assert (
        owner_mail[0].payload["subject"]
        == f"{counted(escalated, 'account')} {verb(escalated, 'needs', 'need')} your attention"
    )
