"""`companies`: list and create companies, and issue owner sign-in links."""

from __future__ import annotations

from datetime import datetime

import click

from arbridge.cli.common import Group, open_runtime


@click.group(cls=Group)
def companies() -> None:
    """List and create companies, and issue owner sign-in links."""


@companies.command("list")
def companies_list() -> None:
    """List every company with its ledger connection and last sync (in the company's
    timezone, the zone named)."""
    from sqlalchemy import select

    from arbridge.sync.model import Company
    from arbridge.sync.store import ledger_connection

    rt = open_runtime()
    with rt.sessions() as session:
        rows = session.scalars(select(Company).order_by(Company.slug)).all()
        if not rows:
            click.echo("No companies yet: run `arbridge demo` or `arbridge companies create`.")
            return
        table = [("SLUG", "NAME", "CURRENCY", "TIMEZONE", "LEDGER")]
        for c in rows:
            conn = ledger_connection(session, c.id)
            if conn is None:
                ledger = "no ledger"
            else:
                synced = (
                    f"last synced {readable_time(conn.last_sync_at, c.timezone)}"
                    if conn.last_sync_at
                    else "never synced"
                )
                ledger = f"{conn.provider} ({conn.status}, {synced})"
            table.append((c.slug, c.name, c.home_currency, c.timezone, ledger))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]))


def readable_time(instant: datetime, timezone: str) -> str:
    """'Nov 29, 2026, 18:12 CST': the moment in the company's timezone, the zone named."""
    from arbridge.clock import local_text

    return local_text(instant, timezone)


@companies.command("create")
@click.option("--name", required=True)
@click.option("--slug", required=True)
@click.option("--currency", "home_currency", default="USD", show_default=True)
@click.option(
    "--timezone", default=None, help="An IANA zone; default: ARBRIDGE_DEFAULT_TIMEZONE, else UTC."
)
@click.option("--country", default="US", show_default=True, help="ISO 3166 two letters.")
@click.option("--owner-email", required=True)
def companies_create(
    name: str, slug: str, home_currency: str, timezone: str | None, country: str, owner_email: str
) -> None:
    """Create a company and its owner, and print the owner's sign-in link."""
    from arbridge.sync.db import transaction
    from arbridge.sync.store import create_company, issue_sign_in_token, owner

    name, country, owner_email = _checked(name, country, owner_email)
    rt = open_runtime()
    with transaction(rt.sessions) as session:
        company = create_company(
            session,
            rt.clock,
            name=name,
            slug=slug,
            home_currency=home_currency,
            timezone=timezone or rt.settings.default_timezone,
            country=country,
            owner_email=owner_email,
            sync_interval_minutes=rt.settings.sync_interval_minutes,
        )
        token = issue_sign_in_token(
            session, rt.clock, owner(session, company), rt.settings.login_link_minutes
        )
    click.echo(f"Created {slug}. Owner sign-in link: {rt.settings.base_url}/sign-in/{token}")


# Babel's territories that are not one country (the EU, the UN, the unknown region, ...).
_NOT_COUNTRIES = {"EU", "EZ", "QO", "UN", "XA", "XB", "ZZ"}


def _checked(name: str, country: str, owner_email: str) -> tuple[str, str, str]:
    """What was typed for a new company, as it is stored, or one sentence on what is wrong."""
    from babel import Locale

    from arbridge.errors import ArbridgeError

    name, code, email = name.strip(), country.strip().upper(), owner_email.strip()
    if not name:
        raise ArbridgeError("a company needs a name: give --name")
    if not (
        len(code) == 2
        and code.isascii()
        and code.isalpha()
        and code not in _NOT_COUNTRIES
        and code in Locale("en").territories
    ):
        raise ArbridgeError(
            f"{country!r} is not a country code: give ISO 3166's two letters, like US or GB"
        )
    local, at, domain = email.rpartition("@")
    if not (at and local and "." in domain.strip(".")) or any(c.isspace() for c in email):
        raise ArbridgeError(f"{owner_email!r} is not an email address")
    return name[:200], code, email


@companies.command("sign-in-link")
@click.argument("slug")
def companies_sign_in_link(slug: str) -> None:
    """Print a new one-time sign-in link for the company's owner."""
    from arbridge.sync.db import transaction
    from arbridge.sync.store import get_company, issue_sign_in_token, owner

    rt = open_runtime()
    with transaction(rt.sessions) as session:
        company = get_company(session, slug)
        token = issue_sign_in_token(
            session, rt.clock, owner(session, company), rt.settings.login_link_minutes
        )
    click.echo(f"{rt.settings.base_url}/sign-in/{token}")
