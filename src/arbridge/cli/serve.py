"""Running arbridge: `demo` (a simulated ledger, set up and served), `serve` and `worker`."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import threading
from typing import Any

import click

from arbridge.cli.common import load_settings, open_runtime, setup_logging
from arbridge.cli.instance import initialise
from arbridge.cli.ledger import run_sync_with_progress
from arbridge.clock import DEMO_CLOCK_FILE, DemoClock
from arbridge.config import DEMO_ADDRESS_FILE, Settings
from arbridge.crypto import write_private_text
from arbridge.wording import counted


def _host(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A host to serve on and to put in links: an IP address or a host name (RFC 1123)."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise click.BadParameter(f"{value!r} is not a host name or an IP address")
    return value


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
HOST = click.option("--host", default="127.0.0.1", show_default=True, callback=_host)
PORT = click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))


@click.command()
@HOST
@PORT
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

    settings = load_settings()
    base_url = f"http://{host}:{port}"
    if not settings.base_url_given:
        settings = settings.with_(base_url=base_url)
    setup_logging(settings)
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
    # A demo install's clock can be moved forward to watch plans charge (`arbridge clock`).
    DemoClock.start(settings.instance_path / DEMO_CLOCK_FILE)
    if not settings.base_url_given:  # every later command's links lead here
        write_private_text(settings.instance_path / DEMO_ADDRESS_FILE, f"{base_url}\n")
    settings = settings.with_(demo=True)
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


@click.command()
@HOST
@PORT
@click.option("--with-worker", is_flag=True, help="Run the scheduler in this process too.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 1000))
def serve(host: str, port: int, with_worker: bool, threads: int) -> None:
    """Serve the web app (owner pages, payment pages, webhooks) with waitress."""
    rt = open_runtime()
    setup_logging(rt.settings)
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


@click.command()
@click.option("--once", is_flag=True, help="Run every due job once and exit.")
def worker(once: bool) -> None:
    """Run the scheduler alone: syncs every N minutes, the daily collections run.

    On PostgreSQL several workers may run side by side; each company's job
    runs in one of them at a time.
    """
    from arbridge.worker import build_scheduler, tick

    rt = open_runtime()
    setup_logging(rt.settings)
    if once:
        click.echo(f"Ran {counted(tick(rt), 'job')}.")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    scheduler = build_scheduler(rt)
    scheduler.start()
    click.echo(f"Worker running (tick every {rt.settings.worker_tick_seconds}s); Ctrl+C to stop.")
    stop.wait()
    scheduler.shutdown(wait=True)
