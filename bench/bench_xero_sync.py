"""Xero full sync of a large ledger from the fake Xero server used by the tests (a real local
HTTP server: xero-python speaks urllib3), into SQLite or PostgreSQL.

    .venv/bin/python bench/bench_xero_sync.py [--invoices 100000] [--page-size 100]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Reports invoices per second, the API calls used against the minimum (ceil(n / page size) pages
per endpoint, one for an empty one), the time the 60-calls-a-minute limiter made us wait against
the floor that limit imposes on that many calls (the limiter runs on a simulated clock: its
waits are added up, not slept), peak traced memory (tracemalloc, during the sync; it includes
the fake server's own allocations in this process), and the ratio of our mapping time (JSON
parse and map) to xero-python's own deserialisation (`ApiClient.deserialize` into `Invoices`) of
the same pages.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from pytest_httpserver import HTTPServer
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.contract.xero.fake import FakeXero

from arbridge.clock import FixedClock
from arbridge.config import Settings
from arbridge.connectors.xero import Grant, TenantLimiter, XeroConfig, XeroConnector, XeroIdentity
from arbridge.crypto import new_key
from arbridge.runtime import Runtime
from arbridge.sync import connections, db
from arbridge.sync.mappers.xero import map_record
from arbridge.sync.runner import sync_connection
from arbridge.sync.store import aging_report, create_company


class SimulatedMinute:
    """The limiter's clock: sleeping moves it on and adds to the time waited."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waited = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.waited += seconds


def scratch_url(url: str | None, tmp: Path) -> str:
    if not url:
        return f"sqlite:///{tmp / 'bench.db'}"
    admin = db.make_engine(url)
    with admin.begin() as c:
        c.execute(text("DROP SCHEMA IF EXISTS arbridge_bench_xero CASCADE"))
        c.execute(text("CREATE SCHEMA arbridge_bench_xero"))
    admin.dispose()
    return url + ("&" if "?" in url else "?") + "options=-csearch_path%3Darbridge_bench_xero"


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
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    n, size = args.invoices, args.page_size
    tmp = Path(tempfile.mkdtemp(prefix="arbridge-bench-xero-"))
    url = scratch_url(args.database_url, tmp)
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    clock = FixedClock(datetime(2026, 11, 24, 15, tzinfo=UTC))
    settings = Settings(
        instance_path=tmp, database_url=url, secret_key="x" * 40, encryption_keys=(new_key(),)
    )
    rt = Runtime.open(settings, clock)
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    base = server.url_for("/").rstrip("/")
    fake = FakeXero()
    fake.install(server)
    fake.day_limit = 10**9  # the daily allowance is not what this measures
    config = XeroConfig(
        client_id="bench",
        client_secret="bench-secret",
        redirect_uri="http://127.0.0.1/xero/callback",
        webhook_key="bench",
        api_base=base,
        identity_base=base,
        page_size=size,
    )
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
    tracemalloc.start()
    t = time.perf_counter()
    sync_connection(rt.sessions, conn.id, xero, clock, full=True)
    full = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Contacts, invoices, payments, then credit notes, overpayments and prepayments.
    minimum = sum(max(1, math.ceil(k / size)) for k in (len(contacts), n, 0, 0, 0, 0))
    results: dict[str, object] = {
        "database": url.split("://")[0],
        "invoices": n,
        "page_size": size,
        "full_sync_seconds": round(full, 2),
        "invoices_per_second": round(n / full),
        "api_calls": xero.calls,
        "api_calls_minimum": minimum,
        "rate_limit_wait_seconds": round(minute.waited, 1),
        # 60 starts in any minute: call k (from 0) can start no earlier than minute k // 60.
        "rate_limit_floor_seconds": ((xero.calls - 1) // 60) * 60 if xero.calls else 0,
        "peak_traced_memory_mb": round(peak / 2**20, 1),
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
