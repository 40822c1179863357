"""The `arbridge` command line. Every failure it expects is one sentence and a non-zero exit."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections import Counter
from datetime import date
from typing import Any

import click

from arbridge.config import Settings
from arbridge.errors import AlreadyInitialised, ArbridgeError

log = logging.getLogger("arbridge")


class Group(click.Group):
    """Turns arbridge's own errors into one line on stderr and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ArbridgeError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except Exception:
            # A bug, not bad input: the trace goes to the log, the terminal gets one sentence.
            log.exception("arbridge %s failed", ctx.invoked_subcommand)
            click.echo(
                "Error: arbridge hit an unexpected problem; the log above has the details "
                "(please report it).",
                err=True,
            )
            ctx.exit(2)


class Day(click.ParamType):
    """YYYY-MM-DD in ASCII digits, 1900-01-01 to 2999-12-31 (click.DateTime takes '２０２６'
    and 0001-01-01, from which the reminder arithmetic overflowed: a traceback)."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        from arbridge.inputs import InputError, parse_day

        try:
            return parse_day(str(value))
        except InputError as e:
            self.fail(f"{e}.", param, ctx)


DAY = Day()


def _settings() -> Settings:
    return Settings.from_env()


def _runtime() -> Any:
    """The instance's runtime, closed (its database pool disposed) when the command ends."""
    from arbridge.runtime import Runtime

    rt = Runtime.open(_settings())
    click.get_current_context().call_on_close(rt.close)
    return rt


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not a line per tick


@click.group(cls=Group)
@click.version_option(package_name="arbridge")
def main() -> None:
    """arbridge: get paid sooner on your QuickBooks Online and Xero invoices.

    Configuration comes from ARBRIDGE_* environment variables (and a .env file);
    see the README for the list. Start with `arbridge demo`.
    """


@main.command()
@click.option("--upgrade", is_flag=True, help="Apply new migrations to an existing database.")
def init(upgrade: bool) -> None:
    """Create the database and the instance secret file (mode 0600).

    The secret file holds the Flask secret key and the token-encryption key;
    ARBRIDGE_ENCRYPTION_KEYS overrides its keys. Running init a second time
    changes nothing and says so (use --upgrade after installing a new version).
    """
    settings = _settings()
    message = initialise(settings, upgrade=upgrade)
    click.echo(message)


def initialise(settings: Settings, *, upgrade: bool = False) -> str:
    from arbridge.crypto import Keyring, create_secret_file
    from arbridge.sync import db
    from arbridge.sync.store import check_keys

    settings.instance_path.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(settings.database_url)
    path = db.sqlite_path(engine)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        current = db.current_revision(engine)
        if current is not None and not upgrade:
            raise AlreadyInitialised(
                f"arbridge is already initialised in {settings.database_url.split('@')[-1]}; "
                "nothing was changed (use `arbridge init --upgrade` to apply new migrations)"
            )
        if current is None and not db.is_empty(engine):
            raise ArbridgeError(
                "the database already holds tables that are not arbridge's; "
                "point ARBRIDGE_DATABASE_URL at an empty database"
            )
        created = None
        if not settings.secret_key or not settings.encryption_keys:
            created = create_secret_file(settings.instance_path)
            settings = Settings.from_env()
        keyring = Keyring(settings.require_secrets().encryption_keys)
        db.upgrade(engine)
        with db.transaction(db.session_factory(engine)) as session:
            check_keys(session, keyring)
        if path is not None:
            path.chmod(0o600)  # the database holds customers' data and encrypted tokens
    finally:
        engine.dispose()
    lines = [f"Database ready at migration {db.head_revision()}."]
    if created:
        lines.append(
            f"Secrets written to {created} (mode 0600). Back it up: without it, stored tokens are lost."
        )
    return "\n".join(lines)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option(
    "--no-serve", is_flag=True, help="Set up and sync the demo, print the link, then exit."
)
@click.option("--reset", is_flag=True, help="Rebuild the demo ledger from scratch first.")
def demo(host: str, port: int, no_serve: bool, reset: bool) -> None:
    """Run arbridge on a simulated ledger: no accounts, no network needed.

    Creates the demo company (about 40 customers and 300 invoices in every
    aging bucket, partial payments, a credit note, a second currency), syncs it
    through the real sync layer, prints a one-time sign-in link and serves the
    app and the worker on http://HOST:PORT.
    """
    from arbridge import demo as demo_setup
    from arbridge.runtime import Runtime

    settings = _settings()
    base_url = f"http://{host}:{port}"
    if not os.environ.get("ARBRIDGE_BASE_URL"):
        settings = settings.with_(base_url=base_url)
    _setup_logging(settings)
    from arbridge.sync import db

    engine = db.make_engine(settings.database_url)
    try:
        fresh = db.current_revision(engine) is None
    finally:
        engine.dispose()
    if fresh:
        click.echo(initialise(settings))
        settings = Settings.from_env().with_(base_url=settings.base_url)
    if not os.environ.get("ARBRIDGE_WORKER_TICK_SECONDS"):
        # The demo's bank payments clear in seconds, not days: look for work often.
        settings = settings.with_(worker_tick_seconds=5)
    rt = Runtime.open(settings)
    company, link = demo_setup.prepare(
        rt,
        reset=reset,
        echo=click.echo,
        sync=lambda conn, full: run_sync_with_progress(rt, conn, full=full),
    )
    click.echo("")
    click.echo(f"Demo company {company.name!r} is ready.")
    click.echo(
        f"Sign in as its owner (one-time link, valid {settings.login_link_minutes} minutes):"
    )
    click.echo(f"  {link}")
    click.echo("")
    if no_serve:
        return
    _serve(rt, host, port, with_worker=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--with-worker", is_flag=True, help="Run the scheduler in this process too.")
@click.option("--threads", default=8, show_default=True, type=int)
def serve(host: str, port: int, with_worker: bool, threads: int) -> None:
    """Serve the web app (owner pages, payment pages, webhooks) with waitress."""
    rt = _runtime()
    _setup_logging(rt.settings)
    _serve(rt, host, port, with_worker=with_worker, threads=threads)


def _serve(rt: Any, host: str, port: int, *, with_worker: bool, threads: int = 8) -> None:
    import errno

    from waitress import create_server

    from arbridge.web import create_app

    app = create_app(rt)
    try:  # bind first: a port in use is one sentence, before the worker starts
        server = create_server(app, host=host, port=port, threads=threads, ident="arbridge")
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"{host}:{port} is already in use: is arbridge already running there? "
                "Stop it, or choose another --port"
            ) from e
        raise click.ClickException(f"cannot serve on {host}:{port}: {e.strerror or e}") from e
    scheduler = None
    if with_worker:
        from arbridge.worker import build_scheduler

        scheduler = build_scheduler(rt)
        scheduler.start()
        click.echo("Worker started in this process.")
    click.echo(f"Serving on http://{host}:{port} (Ctrl+C to stop)")
    try:
        server.run()
    finally:
        if scheduler:
            scheduler.shutdown(wait=False)


@main.command()
@click.option("--once", is_flag=True, help="Run every due job once and exit.")
def worker(once: bool) -> None:
    """Run the scheduler alone: syncs every N minutes, the daily collections run.

    On PostgreSQL several workers may run side by side; each company's job
    runs in one of them at a time.
    """
    from arbridge.worker import build_scheduler, tick

    rt = _runtime()
    _setup_logging(rt.settings)
    if once:
        click.echo(f"Ran {tick(rt)} job(s).")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    scheduler = build_scheduler(rt)
    scheduler.start()
    click.echo(f"Worker running (tick every {rt.settings.worker_tick_seconds}s); Ctrl+C to stop.")
    stop.wait()
    scheduler.shutdown(wait=True)


@main.command()
@click.option("--company", "slug", required=True, help="The company's slug.")
@click.option("--full", is_flag=True, help="Ignore the cursors and fetch everything again.")
def sync(slug: str, full: bool) -> None:
    """Sync one company's ledger now, showing progress."""
    from arbridge.sync.store import get_company, ledger_connection

    rt = _runtime()
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
        + (f"; {result.errors} record(s) skipped, see the settings page" if result.errors else "")
    )


def run_sync_with_progress(rt: Any, conn: Any, *, full: bool = False) -> Any:
    from arbridge.sync.runner import sync_connection

    bars: dict[str, Any] = {}

    def progress(entity: str, done: int, total: int | None) -> None:
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
        for bar in bars.values():
            if not bar.finished:
                bar.__exit__(None, None, None)


@main.command()
@click.option("--company", "slug", required=True, help="The company's slug.")
@click.option(
    "--as-of",
    "as_of",
    type=DAY,
    default=None,
    help="Age invoices as of this date (default: today in the company's timezone).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["json", "table"]), default="table", show_default=True
)
def report(slug: str, as_of: Any, fmt: str) -> None:
    """Print open and overdue balances and the aging of a company's receivables.

    Amounts are in the company's home currency, each invoice converted at its
    own exchange rate; days past due are counted on the as-of date in the
    company's timezone.
    """
    from arbridge.collections.aging import BUCKET_LABELS
    from arbridge.sync.store import aging_report, company_today, get_company, report_dict

    rt = _runtime()
    with rt.sessions() as session:
        company = get_company(session, slug)
        day: date = as_of or company_today(company, rt.clock)
        data = report_dict(company, aging_report(session, company, day))
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"{company.name} ({data['company']}) receivables as of {data['as_of']}, in {data['currency']}"
    )
    click.echo(f"  {'Open invoices':<16}{data['open_invoices']:>18}")
    click.echo(f"  {'Open balance':<16}{data['open_balance']:>18}")
    click.echo(f"  {'Overdue balance':<16}{data['overdue_balance']:>18}")
    click.echo("  Aging")
    for key, label in BUCKET_LABELS.items():
        click.echo(
            f"    {label:<14}{data['aging'][key]:>18}  ({data['aging_counts'][key]} invoices)"
        )


@main.command()
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

    rt = _runtime()
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
        f"Queued {result.emails} email(s) and {result.calls} call task(s); "
        f"{result.held} held (weekly limit or no usable contact)."
    )


@main.group(cls=Group)
def companies() -> None:
    """List and create companies, and issue owner sign-in links."""


@companies.command("list")
def companies_list() -> None:
    """List every company with its ledger connection and last sync."""
    from sqlalchemy import select

    from arbridge.sync.model import Company
    from arbridge.sync.store import ledger_connection

    rt = _runtime()
    with rt.sessions() as session:
        rows = session.scalars(select(Company).order_by(Company.slug)).all()
        if not rows:
            click.echo("No companies yet: run `arbridge demo` or `arbridge companies create`.")
        for c in rows:
            conn = ledger_connection(session, c.id)
            ledger = (
                f"{conn.provider} ({conn.status}, last sync {conn.last_sync_at or 'never'})"
                if conn
                else "no ledger"
            )
            click.echo(f"{c.slug:<20} {c.name:<32} {c.home_currency} {c.timezone:<20} {ledger}")


@companies.command("create")
@click.option("--name", required=True)
@click.option("--slug", required=True)
@click.option("--currency", "home_currency", default="USD", show_default=True)
@click.option("--timezone", default="UTC", show_default=True)
@click.option("--country", default="US", show_default=True)
@click.option("--owner-email", required=True)
def companies_create(
    name: str, slug: str, home_currency: str, timezone: str, country: str, owner_email: str
) -> None:
    """Create a company and its owner, and print the owner's sign-in link."""
    from arbridge.sync.db import transaction
    from arbridge.sync.store import create_company, issue_sign_in_token, owner

    rt = _runtime()
    with transaction(rt.sessions) as session:
        company = create_company(
            session,
            rt.clock,
            name=name,
            slug=slug,
            home_currency=home_currency,
            timezone=timezone,
            country=country,
            owner_email=owner_email,
        )
        token = issue_sign_in_token(
            session, rt.clock, owner(session, company), rt.settings.login_link_minutes
        )
    click.echo(f"Created {slug}. Owner sign-in link: {rt.settings.base_url}/sign-in/{token}")


@companies.command("sign-in-link")
@click.argument("slug")
def companies_sign_in_link(slug: str) -> None:
    """Print a new one-time sign-in link for the company's owner."""
    from arbridge.sync.db import transaction
    from arbridge.sync.store import get_company, issue_sign_in_token, owner

    rt = _runtime()
    with transaction(rt.sessions) as session:
        company = get_company(session, slug)
        token = issue_sign_in_token(
            session, rt.clock, owner(session, company), rt.settings.login_link_minutes
        )
    click.echo(f"{rt.settings.base_url}/sign-in/{token}")


@main.group(cls=Group)
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
    from arbridge.providers import quickbooks as qbo
    from arbridge.sync.db import transaction
    from arbridge.sync.quickbooks_store import attach
    from arbridge.sync.store import get_company

    if not (realm_id.isascii() and realm_id.isdigit()):  # isdigit() alone takes '١٢٣', '²'
        raise ArbridgeError(f"{realm_id!r} is not a QuickBooks realm id (digits only)")
    rt = _runtime()
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


@main.group(cls=Group)
def events() -> None:
    """See webhook events that failed, and replay them once the cause is fixed."""


EVENT_PROVIDERS = click.Choice(["stripe", "quickbooks"])


@events.command("list")
@click.option("--failed", is_flag=True, help="Only events that failed (what replay takes).")
@click.option("--provider", type=EVENT_PROVIDERS, default=None, help="Only this provider's.")
def events_list(failed: bool, provider: str | None) -> None:
    """List stored webhook events, newest first (at most 200), with the error of each."""
    from arbridge.webhooks.replay import list_events

    rt = _runtime()
    with rt.sessions() as session:
        rows = list_events(session, failed_only=failed, provider=provider)
        if not rows:
            click.echo("No failed webhook events." if failed else "No webhook events.")
            return
        for event, slug in rows:
            error = " ".join((event.last_error or "").split())
            click.echo(
                f"{event.provider:<10} {event.event_id:<40} {event.event_type:<40} "
                f"{slug or '-':<20} {event.status:<9} {event.attempts} attempt(s) "
                f"{event.received_at:%Y-%m-%d %H:%M}" + (f"  {error[:200]}" if error else "")
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
    rt = _runtime()
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
            f"Re-queued {len(queued)} failed event(s) ({which}); the worker processes them "
            "on its next tick."
        )
        return
    from arbridge.services.bootstrap import webhook_handlers
    from arbridge.webhooks.dispatch import process_pending

    process_pending(rt.sessions, rt.clock, webhook_handlers(rt))
    with rt.sessions() as session:
        now = outcome(session, list(queued))
    click.echo(
        f"Replayed {len(queued)} failed event(s) ({which}): "
        + ", ".join(f"{n} {status}" for status, n in sorted(now.items()))
        + "."
    )


@main.command("rotate-keys")
@click.option(
    "--drop-old",
    is_flag=True,
    help="After re-encrypting, remove old keys from the secret file (refused while a stored "
    "secret still needs one).",
)
def rotate_keys(drop_old: bool) -> None:
    """Re-encrypt every stored secret with the newest encryption key.

    With keys in ARBRIDGE_ENCRYPTION_KEYS, put the new key first in that list
    and run this. With the instance secret file, this adds a new key to it;
    running servers re-read the file, so they need no restart.
    """
    from arbridge.crypto import (
        Keyring,
        drop_old_keys_from_secret_file,
        new_key,
        prepend_key_to_secret_file,
        restore_keys_to_secret_file,
    )
    from arbridge.runtime import Runtime
    from arbridge.sync.db import transaction
    from arbridge.sync.store import rotate_secrets, secrets_needing_old_keys

    settings = _settings()
    rt = Runtime.open(settings)  # proves the current keys read the database first
    click.get_current_context().call_on_close(rt.close)
    if not settings.encryption_keys_from_env:
        prepend_key_to_secret_file(settings.instance_path, new_key())
        settings = Settings.from_env()
    keyring = Keyring(settings.encryption_keys)
    with transaction(rt.sessions) as session:
        count = rotate_secrets(session, keyring)

    def still_needing_old_keys() -> int:
        with rt.sessions() as session:
            return secrets_needing_old_keys(session, keyring)

    def refuse(stale: int) -> ArbridgeError:
        return ArbridgeError(
            f"{stale} stored secret(s) were written with an old key while this ran (by a server "
            "that has not picked up the new key?), so the old keys were kept: run "
            "`arbridge rotate-keys --drop-old` again"
        )

    if drop_old:
        stale = still_needing_old_keys()
        if stale:
            raise refuse(stale)
        if settings.encryption_keys_from_env:
            click.echo(
                "Every stored secret now uses the newest key: remove the old ones from "
                "ARBRIDGE_ENCRYPTION_KEYS, and restart servers started with the old list."
            )
        else:
            dropped = drop_old_keys_from_secret_file(settings.instance_path)
            # A server may have written between the check and the drop: look once more, and
            # put the old keys back rather than lose what it wrote.
            stale = still_needing_old_keys()
            if stale:
                restore_keys_to_secret_file(settings.instance_path, dropped)
                raise refuse(stale)
    click.echo(f"Re-encrypted {count} stored secret(s) with the newest key.")
