"""The ledger's copy: `sync` (with progress), `report` (balances and aging) and `connect`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import click

from arbridge.cli.common import DAY, Group, WholeNumber, open_runtime
from arbridge.collections.kpis import DEFAULT_PERIOD_DAYS, MAX_PERIOD_DAYS
from arbridge.errors import ArbridgeError
from arbridge.wording import counted


@click.command()
@click.option("--company", "slug", required=True, help="The company's slug.")
@click.option("--full", is_flag=True, help="Ignore the cursors and fetch everything again.")
def sync(slug: str, full: bool) -> None:
    """Sync one company's ledger now, showing progress."""
    from arbridge.sync.store import get_company, ledger_connection

    rt = open_runtime()
    with rt.sessions() as session:
        company = get_company(session, slug)
        conn = ledger_connection(session, company.id)
    if conn is None:
        raise ArbridgeError(f"company {slug} has no ledger connected")
    result = run_sync_with_progress(rt, conn, full=full)
    if not result.upserted and not result.deleted and not result.errors:
        click.echo(f"Synced {slug}: already up to date.")
        return
    click.echo(
        f"Synced {slug}: "
        + ", ".join(f"{n} {e}" for e, n in result.upserted.items())
        + (f"; {sum(result.deleted.values())} deleted" if result.deleted else "")
        + (
            f"; {counted(result.errors, 'record')} skipped, see the settings page"
            if result.errors
            else ""
        )
    )


def run_sync_with_progress(rt: Any, conn: Any, *, full: bool = False) -> Any:
    """Sync, drawing a progress bar per entity on a terminal; elsewhere (a pipe, a log file,
    cron) a line per entity with how many records were read, as each one finishes."""
    from arbridge.sync.runner import sync_connection

    on_terminal = sys.stderr.isatty()
    bars: dict[str, Any] = {}
    counts: dict[str, int] = {}

    def count_line(entity: str) -> None:
        click.echo(f"{entity:<12} {counts[entity]:>8,} read from the ledger", err=True)

    def progress(entity: str, done: int, total: int | None) -> None:
        if not on_terminal:
            if entity not in counts and counts:
                count_line(next(reversed(counts)))  # the entity before has finished
            counts[entity] = done
            return
        bar = bars.get(entity)
        if bar is None:
            bar = bars[entity] = click.progressbar(
                length=total or done, label=f"{entity:<12}", file=sys.stderr
            )
            bar.__enter__()
        bar.update(done - bar.pos)
        if total is not None and done >= total:
            bar.__exit__(None, None, None)

    try:
        return sync_connection(
            rt.sessions, conn.id, rt.connector_for(conn), rt.clock, full=full, progress=progress
        )
    finally:
        if counts:
            count_line(next(reversed(counts)))
        for bar in bars.values():
            if not bar.finished:
                bar.__exit__(None, None, None)


@click.command()
@click.option("--company", "slug", required=True, help="The company's slug.")
@click.option(
    "--as-of",
    "as_of",
    type=DAY,
    default=None,
    help="Age invoices as of this date (default: today in the company's timezone).",
)
@click.option(
    "--period-days",
    "period_days",
    type=WholeNumber(1, MAX_PERIOD_DAYS),
    default=DEFAULT_PERIOD_DAYS,
    show_default=True,
    help=f"The KPIs' period: this many days ending on the as-of date (1 to {MAX_PERIOD_DAYS}).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["json", "table"]), default="table", show_default=True
)
def report(slug: str, as_of: Any, period_days: int, fmt: str) -> None:
    """Print open and overdue balances, the aging of a company's receivables and
    the collections KPIs (DSO, countback DSO, best possible DSO, average days
    delinquent, CEI, receivables turnover, average days to pay, on-time rate).

    Amounts are in the company's home currency, each invoice converted at its
    own exchange rate; days past due are counted on the as-of date in the
    company's timezone. The KPIs cover the --period-days days ending on the
    as-of date; a figure with nothing to divide by is null (shown as "n/a").
    """
    from arbridge.sync.insight_cache import report_data
    from arbridge.sync.store import company_today, get_company

    rt = open_runtime()
    with rt.sessions() as session:
        company = get_company(session, slug)
        day: date = as_of or company_today(company, rt.clock)
        data = report_data(session, company, day, period_days, as_of is None, rt.clock.now())
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    _table(company.name, data)


def _table(name: str, data: dict[str, Any]) -> None:
    """The report for a person: amounts with the currency's symbol and thousands separators
    (the JSON keeps plain decimal strings), a rule under the title, the overdue count."""
    from arbridge.collections.aging import BUCKET_LABELS
    from arbridge.money import Money

    def money(amount: str) -> str:
        return Money(Decimal(amount), data["currency"]).format()

    title = f"{name} ({data['company']}) receivables as of {data['as_of']}, in {data['currency']}"
    click.echo(title)
    click.echo("=" * len(title))
    click.echo(f"  {'Open invoices':<16}{data['open_invoices']:>18,}")
    click.echo(f"  {'Open balance':<16}{money(data['open_balance']):>18}")
    click.echo(f"  {'Overdue invoices':<16}{data['overdue_invoices']:>18,}")
    click.echo(f"  {'Overdue balance':<16}{money(data['overdue_balance']):>18}")
    click.echo("  Aging")
    for key, label in BUCKET_LABELS.items():
        count = data["aging_counts"][key]
        click.echo(
            f"    {label:<14}{money(data['aging'][key]):>18}"
            f"  ({count:,} invoice{'' if count == 1 else 's'})"
        )
    period = data["kpi_period"]
    click.echo(f"  KPIs, {period['days']} days from {period['start']} to {period['end']}")
    for key, label in KPI_LABELS.items():
        value = data[key]
        click.echo(f"    {label:<24}{'n/a' if value is None else value:>10}")
    _forecast_and_flags(data, money)


def _forecast_and_flags(data: dict[str, Any], money: Callable[[str], str]) -> None:
    forecast = data["forecast"]
    click.echo("  Cash forecast (each open invoice on its due date + the customer's lateness)")
    for week in forecast["weeks"]:
        click.echo(f"    {week['start']} to {week['end']}{money(week['amount']):>18}")
    click.echo(f"    {'Later':<24}{money(forecast['later']):>18}")
    projected = forecast["projected_dso"]
    click.echo(f"    {'Projected DSO (days)':<24}{'n/a' if projected is None else projected:>18}")
    click.echo("  Flagged customers")
    for flag in data["flags"]:
        click.echo(
            f"    {flag['customer']} ({flag['customer_id']}): {flag['kind']}, {flag['reason']}"
        )
    if not data["flags"]:
        click.echo("    none")
    click.echo("  KPIs by month (each month its own period)")
    click.echo(f"    {'Month':<10}" + "".join(f"{label:>12}" for label in MONTH_LABELS.values()))
    for month in data["trends"]:
        cells = "".join(f"{'n/a' if month[k] is None else month[k]:>12}" for k in MONTH_LABELS)
        click.echo(f"    {month['month']:<10}{cells}")


KPI_LABELS = {
    "dso": "DSO (days)",
    "dso_countback": "Countback DSO (days)",
    "best_possible_dso": "Best possible DSO (days)",
    "average_days_delinquent": "Avg days delinquent",
    "cei": "CEI (%)",
    "ar_turnover": "AR turnover (per year)",
    "average_days_to_pay": "Avg days to pay",
    "on_time_rate": "On-time rate (0-1)",
}
# The same KPIs as columns of the months' table (KPI_LABELS' order, as the JSON's trends).
MONTH_LABELS = {
    "dso": "DSO",
    "dso_countback": "Countback",
    "best_possible_dso": "Best DSO",
    "average_days_delinquent": "Delinquent",
    "cei": "CEI %",
    "ar_turnover": "Turnover",
    "average_days_to_pay": "Days to pay",
    "on_time_rate": "On-time",
}


@click.group(cls=Group)
def connect() -> None:
    """Attach a ledger grant you already hold (self-hosted installs)."""


@connect.command("quickbooks")
@click.option("--company", "slug", required=True, help="The company's slug.")
@click.option("--realm-id", required=True, help="The QuickBooks company id (realmId).")
@click.option(
    "--refresh-token",
    required=True,
    help="A refresh token for that realm, e.g. from Intuit's OAuth 2.0 Playground.",
)
def connect_quickbooks(slug: str, realm_id: str, refresh_token: str) -> None:
    """Connect a company to QuickBooks Online with an existing refresh token.

    The token is exchanged at once (Intuit rotates it; the new one is stored
    encrypted), so the one you pasted stops working. Needs ARBRIDGE_QBO_CLIENT_ID
    and ARBRIDGE_QBO_CLIENT_SECRET of the app that issued it.
    """
    from arbridge.connectors.quickbooks import is_realm_id
    from arbridge.providers import quickbooks as qbo
    from arbridge.sync.db import transaction
    from arbridge.sync.quickbooks_store import attach
    from arbridge.sync.store import get_company

    if not is_realm_id(realm_id):
        raise ArbridgeError(f"{realm_id!r} is not a QuickBooks realm id (digits only)")
    rt = open_runtime()
    try:
        with rt.sessions() as session:
            get_company(session, slug)  # before the token is spent
        oauth = qbo.oauth(rt)
        grant = oauth.refresh(refresh_token.strip())
        with transaction(rt.sessions) as session:
            company = get_company(session, slug)
            attach(session, rt.keyring, rt.clock, company, realm_id, grant)
    finally:
        rt.close()
    click.echo(
        f"Connected {slug} to QuickBooks company {realm_id}. "
        f"Run `arbridge sync --company {slug}` for the first sync."
    )


@connect.command("xero")
@click.option("--company", "slug", required=True, help="The company's slug.")
@click.option("--tenant-id", required=True, help="The Xero organisation's tenant id.")
@click.option(
    "--refresh-token",
    required=True,
    help="A refresh token of a grant that covers that organisation (with offline_access).",
)
@click.option(
    "--payment-account-id",
    default=None,
    help="The AccountID of the Xero bank account (or one that allows payments, such as a "
    "Stripe clearing account) that payments collected through arbridge are recorded into.",
)
def connect_xero(
    slug: str, tenant_id: str, refresh_token: str, payment_account_id: str | None
) -> None:
    """Connect a company to a Xero organisation with an existing refresh token.

    The token is exchanged at once (Xero rotates it; the new one is stored
    encrypted), and the grant must prove it reads the organisation (Xero lists
    it among the grant's connections and answers its Organisation) before it is
    attached. Needs ARBRIDGE_XERO_CLIENT_ID and ARBRIDGE_XERO_CLIENT_SECRET of
    the app that issued it.
    """
    from arbridge.connectors.xero.endpoints import GUID
    from arbridge.providers import xero
    from arbridge.sync.db import transaction
    from arbridge.sync.store import get_company
    from arbridge.sync.xero_store import attach, store_xero_prefs, tenant_owner, xero_prefs

    tenant_id = tenant_id.strip()
    if not GUID.match(tenant_id):
        raise ArbridgeError(f"{tenant_id!r} is not a Xero tenant id (a GUID)")
    account = (payment_account_id or "").strip() or None
    if account is not None and not GUID.match(account):
        raise ArbridgeError(f"{account!r} is not a Xero AccountID (a GUID)")
    rt = open_runtime()
    try:
        with rt.sessions() as session:
            company = get_company(session, slug)  # before the token is spent
            other = tenant_owner(session, tenant_id)
        if other is not None and other != company.id:
            raise ArbridgeError(
                f"Xero organisation {tenant_id} is already connected to another company"
            )
        grant = xero.oauth(rt).refresh(refresh_token.strip())
        tenant = xero.prove_tenant(rt, grant, tenant_id)
        with transaction(rt.sessions) as session:
            company = get_company(session, slug)
            attach(session, rt.keyring, rt.clock, company, tenant_id, grant)
            if account is not None:
                store_xero_prefs(company, payment_account_id=account)
            chosen = xero_prefs(company).get("payment_account_id")
    finally:
        rt.close()
    click.echo(
        f"Connected {slug} to Xero organisation {tenant.name or tenant_id}. "
        f"Run `arbridge sync --company {slug}` for the first sync."
    )
    if not chosen:
        click.echo(
            "No Xero account is chosen for collected payments yet: writing them into Xero fails "
            "until one is (run this again with --payment-account-id)."
        )
