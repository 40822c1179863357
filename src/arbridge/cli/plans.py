"""`plans`: offer a customer an installment plan and list plans; `clock`: move the demo's clock."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import click

from arbridge.cli.common import DAY, Group, WholeNumber, open_runtime
from arbridge.errors import ArbridgeError
from arbridge.wording import days_text


class Percent(click.ParamType):
    """A percent from 0 to under 100, ASCII digits with up to two decimal places."""

    name = "P"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Decimal:
        from arbridge.inputs import InputError, parse_decimal

        try:
            percent = parse_decimal(str(value), places=2)
        except InputError as e:
            self.fail(f"{e}.", param, ctx)
        if not 0 <= percent < 100:
            self.fail("a deposit is a percent from 0 to under 100.", param, ctx)
        return percent


PERCENT = Percent()


@click.group(cls=Group)
def plans() -> None:
    """Installment plans: offer one for an invoice, list them."""


@plans.command("create")
@click.option("--company", "slug", required=True, help="The company's slug.")
@click.option("--invoice", "number", required=True, help="The invoice's number, as in the ledger.")
@click.option(
    "--installments",
    type=WholeNumber(1, 120),
    required=True,
    help="How many installments after any deposit (1-120).",
)
@click.option(
    "--every", type=click.Choice(["week", "fortnight", "month"]), required=True, help="How often."
)
@click.option(
    "--deposit-percent",
    "deposit",
    type=PERCENT,
    default=None,
    help="A deposit, as a percent of the total, due on the start date (default: the company's).",
)
@click.option(
    "--start", "start", type=DAY, default=None, help="The first payment's date (default: today)."
)
def create(
    slug: str,
    number: str,
    installments: int,
    every: str,
    deposit: Decimal | None,
    start: date | None,
) -> None:
    """Offer a plan for one invoice: prints the schedule and the link where the
    customer reads it, agrees and pays the first amount (the rest are charged
    on their dates to the payment method they use)."""
    from arbridge.collections.plans import REMAINDER_RULE
    from arbridge.services.payments.plans import make_offer, schedule_words

    rt = open_runtime()
    made = make_offer(
        rt,
        company_slug=slug,
        invoice_numbers=[number],
        installments=installments,
        every=every,
        deposit_percent=deposit,
        start_on=start,
        origin="cli",
    )
    p = made.proposal
    click.echo(f"Plan {made.plan_id} offered: {schedule_words(p)}")
    if p.fee.amount:
        click.echo(f"  balance {p.balance.format()} + plan fee {p.fee.format()}")
    for i in p.installments:
        label = "deposit" if i.number == 0 else f"installment {i.number}"
        click.echo(f"  {i.due_on.isoformat()}  {label:<16} {i.amount.format():>14}")
    click.echo(REMAINDER_RULE)
    click.echo("The customer agrees and pays the first amount here:")
    click.echo(f"  {made.link}")


@plans.command("list")
@click.option("--company", "slug", required=True, help="The company's slug.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def list_plans(slug: str, fmt: str) -> None:
    """Every plan of the company, newest first, with each installment's date,
    amount, status and payment reference."""
    from arbridge.money import Money
    from arbridge.readmodels.plans import company_plans, plan_json
    from arbridge.sync.store import get_company

    rt = open_runtime()
    with rt.sessions() as s:
        company = get_company(s, slug)
        rows = company_plans(s, company.id)
        if fmt == "json":
            click.echo(
                json.dumps({"company": slug, "plans": [plan_json(r) for r in rows]}, indent=2)
            )
            return
        if not rows:
            click.echo("No plans yet.")
            return
        for r in rows:
            p = r.plan
            click.echo(
                f"Plan {p.id} · {p.status} · {r.customer.name} · invoice {r.numbers} · "
                f"{r.total.format()} · paid {r.paid.format()}"
            )
            for i in p.installments:
                amount = Money.from_minor(i.amount_minor, p.currency).format()
                label = "deposit" if i.number == 0 else f"installment {i.number}"
                click.echo(
                    f"  {i.due_on.isoformat()}  {label:<16} {amount:>14}  {i.status:<10} "
                    f"{i.payment_intent_id or ''}"
                )


@click.group(cls=Group)
def clock() -> None:
    """The demo's clock (a demo install only)."""


@clock.command("advance")
@click.option("--days", type=WholeNumber(1, 3660), required=True, help="Days to move forward.")
def advance(days: int) -> None:
    """Move the demo's clock forward N days, then do what has come due (charge
    installments, settle bank payments, send notices), as the worker would.
    The server and worker of the demo see the new time at once. A real install
    refuses: its clock is the system's."""
    from arbridge.clock import DemoClock

    rt = open_runtime()
    if not rt.settings.demo or not isinstance(rt.clock, DemoClock):
        raise ArbridgeError(
            "the clock can be moved only in the demo (an instance made by `arbridge demo`); "
            "a real install keeps the system's time"
        )
    offset = rt.clock.advance(timedelta(days=days))
    click.echo(
        f"The demo's clock moved forward {days_text(days)}: it is now "
        f"{_demo_time(rt)} ({days_text(offset.days)} ahead of the real time)."
    )
    _catch_up(rt)


def _demo_time(rt: Any) -> str:
    """The demo's time as its company reads it ('Dec 2, 2026, 08:04 CST'), or in UTC when the
    demo company is gone."""
    from sqlalchemy import select

    from arbridge.clock import local_text
    from arbridge.demo import DEMO_SLUG
    from arbridge.sync.model import Company

    with rt.sessions() as s:
        zone = s.scalar(select(Company.timezone).where(Company.slug == DEMO_SLUG))
    return local_text(rt.clock.now(), zone or "UTC")


def _catch_up(rt: Any) -> None:
    """A few worker ticks, so that a charge, its answer and what follows all land now."""
    from arbridge.worker import tick

    for _ in range(3):
        tick(rt)
    click.echo("Due work done (charges, notices, bank payments, reminders).")
