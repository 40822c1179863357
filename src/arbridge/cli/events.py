"""`events`: webhook events that failed, listed and replayed."""

from __future__ import annotations

from collections import Counter

import click

from arbridge import providers
from arbridge.cli.common import Group, open_runtime
from arbridge.wording import counted


@click.group(cls=Group)
def events() -> None:
    """See webhook events that failed, and replay them once the cause is fixed."""


# Stripe's events, those of every ledger provider that takes webhooks, and Twilio's.
EVENT_PROVIDERS = click.Choice(
    ["stripe", *(p.name for p in providers.providers() if p.webhooks), "twilio"]
)


@events.command("list")
@click.option("--failed", is_flag=True, help="Only events that failed (what replay takes).")
@click.option("--provider", type=EVENT_PROVIDERS, default=None, help="Only this provider's.")
def events_list(failed: bool, provider: str | None) -> None:
    """List stored webhook events, newest first (at most 200), with the error of each."""
    from arbridge.webhooks.replay import list_events

    rt = open_runtime()
    with rt.sessions() as session:
        rows = list_events(session, failed_only=failed, provider=provider)
        if not rows:
            click.echo("No failed webhook events." if failed else "No webhook events.")
            return
        for event, slug in rows:
            error = " ".join((event.last_error or "").split())
            click.echo(
                f"{event.provider:<10} {event.event_id:<40} {event.event_type:<40} "
                f"{slug or '-':<20} {event.status:<9} {counted(event.attempts, 'attempt'):<11} "
                f"{event.received_at:%Y-%m-%d %H:%M} UTC" + (f"  {error[:200]}" if error else "")
            )


@events.command("replay")
@click.option("--provider", type=EVENT_PROVIDERS, default=None, help="Only this provider's.")
@click.option(
    "--event-id",
    "event_ids",
    multiple=True,
    metavar="ID",
    help="The provider's event id (evt_... for Stripe); may be given several times.",
)
@click.option("--all-failed", is_flag=True, help="Every failed event (of --provider, if given).")
@click.option(
    "--now", "process_now", is_flag=True, help="Process due events now instead of by the worker."
)
def events_replay(
    provider: str | None, event_ids: tuple[str, ...], all_failed: bool, process_now: bool
) -> None:
    """Queue failed webhook events again, with a fresh set of retries.

    Handlers are safe to run twice, so an event whose work was in fact done
    changes nothing. The worker picks them up on its next tick; --now
    processes them (and any other due event) in this process.
    """
    from arbridge.sync.db import transaction
    from arbridge.webhooks.replay import outcome, requeue

    if not event_ids and not all_failed:
        raise click.UsageError("Name the events with --event-id ID, or use --all-failed.")
    if event_ids and all_failed:
        raise click.UsageError("Use --event-id or --all-failed, not both.")
    rt = open_runtime()
    with transaction(rt.sessions) as session:
        queued = requeue(
            session, rt.clock, provider=provider, event_ids=event_ids, all_failed=all_failed
        )
    if not queued:
        click.echo("No failed webhook events to replay.")
        return
    counts = Counter(queued.values())
    which = ", ".join(f"{n} {p}" for p, n in sorted(counts.items()))
    if not process_now:
        click.echo(
            f"Re-queued {counted(len(queued), 'failed event')} ({which}); the worker processes "
            "them on its next tick."
        )
        return
    from arbridge.services.bootstrap import webhook_handlers
    from arbridge.webhooks.dispatch import process_pending

    providers.refetch_pending(rt)
    process_pending(rt.sessions, rt.clock, webhook_handlers(rt))
    with rt.sessions() as session:
        now = outcome(session, list(queued))
    click.echo(
        f"Replayed {counted(len(queued), 'failed event')} ({which}): "
        + ", ".join(f"{n} {status}" for status, n in sorted(now.items()))
        + "."
    )
