"""The `arbridge` command line. Every failure it expects is one sentence and a non-zero exit.

One module per command group; this one holds the top-level group that `arbridge` runs.
"""

from __future__ import annotations

import click

from arbridge.cli.common import Group
from arbridge.cli.companies import companies
from arbridge.cli.events import events
from arbridge.cli.instance import init, rotate_keys
from arbridge.cli.ledger import connect, report, sync
from arbridge.cli.plans import clock, plans
from arbridge.cli.reminders import remind
from arbridge.cli.serve import demo, serve, worker


@click.group(cls=Group)
@click.version_option(package_name="arbridge")
def main() -> None:
    """arbridge: get paid sooner on your QuickBooks Online and Xero invoices.

    Configuration comes from ARBRIDGE_* environment variables (and a .env file);
    see the README for the list. Start with `arbridge demo`.
    """


for command in (
    init,
    demo,
    serve,
    worker,
    sync,
    report,
    remind,
    companies,
    connect,
    events,
    rotate_keys,
    plans,
    clock,
):
    main.add_command(command)
