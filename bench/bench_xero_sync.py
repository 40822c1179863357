"""Xero full sync of a large ledger from the fake Xero server used by the tests (a real local
HTTP server: xero-python speaks urllib3), into SQLite or PostgreSQL. Run by hand, not in CI.

    .venv/bin/python bench/bench_xero_sync.py [--invoices 100000] [--page-size 100]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--trace-memory]

The page size is ARBRIDGE_XERO_PAGE_SIZE's (1 to 1000), and reaches the connector the way the
setting does (through xero_config); its default is the setting's, 100, what a sync asks for
unless the install sets the variable.

Reports invoices per second (the fake server answers in this same process: the time it spends
building pages, `fake_server_seconds`, is inside the sync's time), the API calls used against the
minimum (ceil(n / page size) pages per endpoint, one for an empty one), the time the
60-calls-a-minute limiter made us wait against the floor that limit imposes on that many calls
(the limiter's clock is the real time plus the waits, which are added up, not slept: the wait is
what a real sync at this speed would sleep, and `projected_sync_seconds` the sync's time with
it), peak memory (the process's max RSS, which also holds the fake ledger, and how much it grew
during the sync), and the ratio of our mapping time (JSON parse and map) to xero-python's own
deserialisation (`ApiClient.deserialize` into `Invoices`) of the same pages.

--trace-memory also reports the peak of what Python allocated during the sync (tracemalloc,
including the fake server's pages); tracing slows the sync several times over, so the speed and
waits of such a run are not comparable with one without it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import resource
import sys
import time
import tracemalloc
import urllib.request
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.contract.xero.fake import FakeXero

from arbridge.clock import FixedClock
from arbridge.config import Settings, XeroSettings
from arbridge.connectors.xero import Grant, TenantLimiter, XeroConnector, XeroIdentity
from arbridge.connectors.xero.sdk import PAGE_SIZE
from arbridge.crypto import new_key
from arbridge.runtime import Runtime
from arbridge.sync import connections, db
from arbridge.sync.mappers.xero import map_record
from arbridge.sync.runner import sync_connection
from arbridge.sync.store import aging_report, create_company
from arbridge.sync.xero_store import xero_config
from scratch import scratch_dir, scratch_schema


class SimulatedMinute:
    """The limiter's clock: the real time since the start plus the waits, which are added up
    instead of slept (so work done between calls counts against the minute, as it would)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.waited = 0.0

    def monotonic(self) -> float:
        return time.perf_counter() - self.start + self.waited

    def sleep(self, seconds: float) -> None:
        self.waited += seconds


class UnloggedServer(HTTPServer):
    """pytest-httpserver keeps every request and response it serves (for tests to look at):
    over 100,000 invoices those pages would be counted as the sync's memory."""

    def application(self, request: Request) -> Response:
        request.get_data()
        return self.dispatch(request)


class TimedHandler:
    """The fake server's handler, timed: it runs in this process, under the same GIL."""

    def __init__(self, fake: FakeXero) -> None:
        self.fake = fake
        self.seconds = 0.0

    def __call__(self, request: Request) -> Response:
        t = time.perf_counter()
        try:
            return self.fake.handle(request)
        finally:
            self.seconds += time.perf_counter() - t


def page_size(raw: str) -> int:
    """ARBRIDGE_XERO_PAGE_SIZE's range."""
    value = int(raw)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"a page size is 1 to 1000, not {value}")
    return value


def rss_mb() -> float:
    """The process's resident memory now (Linux), else its peak so far."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return max_rss_mb()
    return pages * resource.getpagesize() / 2**20


def max_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kb / 2**10 if sys.platform != "darwin" else kb / 2**20


def scratch_url(url: str | None, tmp: Path) -> str:
    if not url:
        return f"sqlite:///{tmp / 'bench.db'}"
    return scratch_schema(url, "arbridge_bench_xero")


def invoice_pages(base: str, fake: FakeXero, access: str, page_size: int) -> list[bytes]:
    """The raw invoice pages, as the sync asked for them."""
    pages = []
    for page in range(1, math.ceil(len(fake.store["Invoices"]) / page_size) + 1):
        request = urllib.request.Request(  # noqa: S310 (the local fake)
            f"{base}/api.xro/2.0/Invoices?page={page}&pageSize={page_size}",
            headers={"Authorization": f"Bearer {access}", "xero-tenant-id": fake.tenant_id},
        )
        with urllib.request.urlopen(request) as answer:  # noqa: S310 (the local fake)
            pages.append(answer.read())
    return pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument(
        "--page-size",
        type=page_size,
        default=PAGE_SIZE,
        help=f"records per page, as ARBRIDGE_XERO_PAGE_SIZE (1 to 1000; default {PAGE_SIZE})",
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="also trace Python's allocations during the sync (several times slower)",
    )
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    n, size = args.invoices, args.page_size
    tmp = scratch_dir("arbridge-bench-xero-")
    url = scratch_url(args.database_url, tmp)
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    clock = FixedClock(datetime(2026, 11, 24, 15, tzinfo=UTC))
    settings = Settings(
        instance_path=tmp, database_url=url, secret_key="x" * 40, encryption_keys=(new_key(),)
    )
    rt = Runtime.open(settings, clock)
    server = UnloggedServer(host="127.0.0.1", port=0)
    server.start()
    base = server.url_for("/").rstrip("/")
    fake = FakeXero()
    handler = TimedHandler(fake)
    server.expect_request(re.compile(r"^/.*")).respond_with_handler(handler)
    fake.day_limit = 10**9  # the daily allowance is not what this measures
    # The connector's config as the runtime builds it from the settings.
    config = xero_config(
        settings.with_(
            xero=XeroSettings(
                client_id="bench",
                client_secret="bench-secret",
                redirect_uri="http://127.0.0.1/xero/callback",
                webhook_key="bench",
                api_base=base,
                identity_base=base,
                page_size=size,
            )
        )
    )
    assert config.page_size == size
    today = date(2026, 11, 24)
    t = time.perf_counter()
    contacts = [fake.add_contact(f"Customer {i}") for i in range(max(40, n // 50))]
    for i in range(n):
        issued = today - timedelta(days=i % 200)
        fake.add_invoice(
            contacts[i % len(contacts)],
            f"{100 + i % 900}.{i % 100:02d}",
            issued=issued,
            due=issued + timedelta(days=30),
        )
    print(f"fake ledger: {n} invoices, {len(contacts)} contacts in {time.perf_counter() - t:.1f}s")
    access, refresh = fake.issue_grant()
    with db.transaction(rt.sessions) as s:
        company = create_company(
            s,
            clock,
            name="Bench",
            slug="bench",
            home_currency="NZD",
            timezone="Pacific/Auckland",
            country="NZ",
            owner_email="o@bench.example",
        )
        conn = connections.attach(
            s,
            rt.keyring,
            clock,
            company,
            provider="xero",
            label="Xero",
            tenant_id=fake.tenant_id,
            grant=Grant(access, refresh, clock.now() + timedelta(hours=1), None),
        )
        s.flush()
        s.expunge(conn)

    minute = SimulatedMinute()
    tokens = connections.ConnectionTokens(
        rt.sessions, rt.keyring, clock, conn.id, XeroIdentity(config, clock), label="Xero"
    )
    xero = XeroConnector(
        config,
        fake.tenant_id,
        tokens,
        clock,
        limiter=TenantLimiter(
            per_minute=60, monotonic=minute.monotonic, sleep=minute.sleep, max_wait=10**9
        ),
        sleep=minute.sleep,
    )
    rss_before = rss_mb()
    if args.trace_memory:
        tracemalloc.start()
    handler.seconds = 0.0
    minute.start, t = time.perf_counter(), time.perf_counter()
    sync_connection(rt.sessions, conn.id, xero, clock, full=True)
    full = time.perf_counter() - t
    served = handler.seconds
    peak_rss = max_rss_mb()
    traced: dict[str, object] = {}
    if args.trace_memory:
        traced["peak_traced_memory_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    # Contacts, invoices, payments, then credit notes, overpayments and prepayments.
    minimum = sum(max(1, math.ceil(k / size)) for k in (len(contacts), n, 0, 0, 0, 0))
    results: dict[str, object] = {
        "database": url.split("://")[0],
        "invoices": n,
        "page_size": size,
        "memory_traced": args.trace_memory,
        "full_sync_seconds": round(full, 2),
        "invoices_per_second": round(n / full),
        "fake_server_seconds": round(served, 2),
        # The client waits while the fake builds a page: without it, the speed of our side.
        "invoices_per_second_without_fake_server": round(n / (full - served)),
        "api_calls": xero.calls,
        "api_calls_minimum": minimum,
        "rate_limit_wait_seconds": round(minute.waited, 1),
        # 60 starts in any minute: call k (from 0) can start no earlier than minute k // 60.
        "rate_limit_floor_seconds": ((xero.calls - 1) // 60) * 60 if xero.calls else 0,
        "projected_sync_seconds": round(full + minute.waited, 1),
        "peak_rss_mb": round(peak_rss, 1),
        "rss_growth_during_sync_mb": round(max(0.0, peak_rss - rss_before), 1),
        **traced,
    }
    with rt.sessions() as s:
        aging = aging_report(s, s.merge(company), today)
    expected = fake.open_balance()["NZD"]
    assert aging.open_balance.amount == expected, (aging.open_balance, expected)
    results["open_balance_equals_ledger"] = str(aging.open_balance.amount)

    # Mapping: ours (parse and map) against xero-python's deserialisation, same pages.
    pages = invoice_pages(base, fake, access, size)
    t = time.perf_counter()
    for body in pages:
        for raw in json.loads(body, parse_float=Decimal)["Invoices"]:
            map_record("invoices", raw["InvoiceID"], False, raw)
    ours = time.perf_counter() - t
    client, finder = xero.api.api_client, xero.api.get_model_finder()
    t = time.perf_counter()
    for body in pages:
        client.deserialize(SimpleNamespace(text=body.decode(), data=body), "Invoices", finder)
    theirs = time.perf_counter() - t
    results.update(
        our_mapping_seconds=round(ours, 3),
        xero_python_deserialize_seconds=round(theirs, 3),
        mapping_time_ratio=round(ours / theirs, 2),
    )
    server.stop()
    rt.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
