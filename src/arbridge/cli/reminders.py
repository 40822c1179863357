"""`remind`: show or carry out a day's payment reminders."""

from __future__ import annotations

from typing import Any

import click

from arbridge.cli.common import DAY, open_runtime
from arbridge.errors import ArbridgeError
from arbridge.wording import counted


@click.command()
@click.option("--company", "slug", required=True, help="The company's slug.")
@click.option(
    "--dry-run", is_flag=True, help="Only show who would get what, and why; change nothing."
)
@click.option(
    "--as-of",
    "as_of",
    type=DAY,
    default=None,
    help="Decide as of this date (default: today in the company's timezone; dry runs only).",
)
def remind(slug: str, dry_run: bool, as_of: Any) -> None:
    """Show (--dry-run) or carry out today's payment reminders for one company.

    Each open invoice gets the step of its sequence that is due, once; one
    email per customer lists every invoice due for a step. Without --dry-run
    the messages are queued now (each step still goes out only once) and the
    worker sends them inside the sending window.
    """
    from arbridge.services.reminders.preview import preview, preview_lines
    from arbridge.services.reminders.run import run_reminders
    from arbridge.sync.store import get_company

    rt = open_runtime()
    with rt.sessions() as session:
        company = get_company(session, slug)
        session.expunge(company)
    if as_of is not None and not dry_run:
        raise ArbridgeError("--as-of only works with --dry-run: real reminders go out today")
    if dry_run:
        for line in preview_lines(preview(rt, company, as_of)):
            click.echo(line)
        return
    result = run_reminders(rt, company)
    if result.hold:
        raise ArbridgeError(f"reminders held: {result.hold}")
    click.echo(
        f"Queued {counted(result.emails, 'email')} and {counted(result.calls, 'call task')}; "
        f"{result.held} held (weekly limit or no usable contact)."
        + (f" {counted(result.texts, 'text message')} queued." if result.texts else "")
    )
