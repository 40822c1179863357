"""`arbridge events list --failed` and `arbridge events replay`: failed webhook events are seen
and queued again (or processed at once) from the command line; an unknown id is one sentence."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from arbridge.cli import main
from arbridge.clock import SystemClock
from arbridge.services.bootstrap import webhook_handlers
from arbridge.sync.db import transaction
from arbridge.sync.model import WebhookEvent
from arbridge.webhooks.dispatch import process_pending
from arbridge.webhooks.inbox import InboxEvent, store
from tests.cli.conftest import ARBRIDGE
from tests.conftest import env_for_subprocess

SESSION = json.loads(Path("tests/fixtures/stripe/checkout_session.json").read_text())


def _completed(event_id: str, **metadata: str) -> InboxEvent:
    obj = {**SESSION, "amount_total": 12_500, "currency": "usd", "metadata": metadata}
    return InboxEvent(event_id, "checkout.session.completed", None, {"data": {"object": obj}}, None)


@pytest.fixture
def failed(rt):
    """Two failed Stripe events: one the handler refuses (it names a company that does not
    exist, so it fails again on replay) and one that failed for a cause since fixed (it is not
    a session arbridge opened, so its handler now has nothing to do), and one that was fine."""
    with transaction(rt.sessions) as s:
        store(
            s,
            rt.clock,
            "stripe",
            {},
            b'{"batch": 1}',
            [
                _completed("evt_1Bad", arbridge_company="999999", arbridge_invoices="1"),
                _completed("evt_2Fixed"),
                _completed("evt_3Fine"),
            ],
        )
    process_pending(rt.sessions, rt.clock, webhook_handlers(rt))
    with transaction(rt.sessions) as s:
        fixed = s.scalar(select(WebhookEvent).where(WebhookEvent.event_id == "evt_2Fixed"))
        fixed.status, fixed.attempts, fixed.last_error = "failed", 5, "Transient: ledger down"
    assert _statuses(rt) == {"evt_1Bad": "failed", "evt_2Fixed": "failed", "evt_3Fine": "processed"}
    return rt


def _statuses(rt) -> dict[str, str]:
    with rt.sessions() as s:
        return dict(s.execute(select(WebhookEvent.event_id, WebhookEvent.status)).tuples().all())


def _run(settings, *args: str):
    result = CliRunner().invoke(main, list(args), env=env_for_subprocess(settings))
    assert "Traceback" not in result.output
    return result


def test_list_failed_shows_the_failed_events_with_their_errors(failed, settings):
    result = _run(settings, "events", "list", "--failed")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert any("evt_2Fixed" in line and "ledger down" in line for line in lines)
    assert any("evt_1Bad" in line and "failed" in line for line in lines)
    assert "evt_3Fine" not in result.output
    everything = _run(settings, "events", "list", "--provider", "stripe")
    assert "evt_3Fine" in everything.output
    assert (
        "No failed webhook events."
        in _run(settings, "events", "list", "--failed", "--provider", "quickbooks").output
    )


def test_the_event_list_gave_its_times_without_a_zone(failed, settings):
    # An instance-wide list (events of every company): each time in UTC, and saying so.
    lines = _run(settings, "events", "list", "--failed").output.splitlines()
    assert lines and all(re.search(r" \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC\b", line) for line in lines)


def test_replay_one_event_queues_it_for_the_worker(failed, settings):
    rt = failed
    result = _run(settings, "events", "replay", "--event-id", "evt_2Fixed")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "Re-queued 1 failed event (1 stripe); the worker processes them on its next tick."
    )
    with rt.sessions() as s:
        event = s.scalar(select(WebhookEvent).where(WebhookEvent.event_id == "evt_2Fixed"))
    # Due at once, on the command's (system) clock, with a fresh set of retries.
    assert (event.status, event.attempts) == ("pending", 0)
    assert event.next_attempt_at <= SystemClock().now()
    assert _statuses(rt)["evt_1Bad"] == "failed"
    process_pending(rt.sessions, SystemClock(), webhook_handlers(rt))  # the worker's next tick
    with rt.sessions() as s:
        event = s.scalar(select(WebhookEvent).where(WebhookEvent.event_id == "evt_2Fixed"))
    assert (event.status, event.last_error) == ("processed", None)


def test_replay_all_failed_now_processes_them_and_says_how_it_went(failed, settings):
    rt = failed
    result = _run(settings, "events", "replay", "--all-failed", "--provider", "stripe", "--now")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Replayed 2 failed events (2 stripe): 1 failed, 1 processed."
    with rt.sessions() as s:
        bad = s.scalar(select(WebhookEvent).where(WebhookEvent.event_id == "evt_1Bad"))
    # Why, in one sentence (it was an IntegrityError's text, and a traceback on the terminal).
    assert bad.last_error == "event evt_1Bad names company 999999, not one of ours"
    assert _statuses(rt) == {
        "evt_1Bad": "failed",
        "evt_2Fixed": "processed",
        "evt_3Fine": "processed",
    }
    again = _run(settings, "events", "replay", "--all-failed", "--provider", "quickbooks")
    assert again.exit_code == 0 and again.output.strip() == "No failed webhook events to replay."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--event-id", "evt_nope"],
            "Error: there is no webhook event 'evt_nope' (see `arbridge events list --failed`)\n",
        ),
        (
            ["--provider", "quickbooks", "--event-id", "evt_2Fixed"],
            "Error: there is no quickbooks webhook event 'evt_2Fixed' "
            "(see `arbridge events list --failed`)\n",
        ),
        (
            ["--event-id", "evt_2Fixed", "--event-id", "evt_3Fine"],
            "Error: stripe event 'evt_3Fine' is processed, not failed: "
            "only failed events are replayed\n",
        ),
    ],
)
def test_unknown_or_unfailed_ids_are_refused_and_nothing_is_queued(failed, settings, args, message):
    rt = failed
    before = _statuses(rt)
    result = _run(settings, "events", "replay", *args)
    assert result.exit_code == 1
    assert result.output == message
    assert _statuses(rt) == before  # evt_2Fixed was not queued either


def test_replay_needs_ids_or_all_failed(rt, settings):
    for args in ([], ["--all-failed", "--event-id", "evt_x"]):
        result = _run(settings, "events", "replay", *args)
        assert result.exit_code == 2
        assert "--event-id" in result.output and "Traceback" not in result.output


def test_events_smoke_through_the_console_script(failed, settings):
    import subprocess

    done = subprocess.run(
        [ARBRIDGE, "events", "list", "--failed"],
        env=env_for_subprocess(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "evt_1Bad" in done.stdout and "evt_2Fixed" in done.stdout
