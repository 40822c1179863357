"""QuickBooks full and incremental sync of a large ledger from the fake QuickBooks (HTTP level,
through `responses`), into SQLite or PostgreSQL.

    .venv/bin/python bench/bench_quickbooks_sync.py [--invoices 100000] [--changes 5000]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Reports invoices per second, the API calls used against the minimum (ceil(n / 1000) query pages
per entity for a full sync; one CDC call per entity and per 1,000 changes for an incremental one),
peak memory (max RSS of the process, which also holds the fake ledger), and the ratio of our
mapping time to python-quickbooks' own Invoice.from_json on the same payloads.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import responses
from quickbooks.objects.invoice import Invoice as PQInvoice

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.contract.quickbooks.fake import API, DISCOVERY, FakeQuickBooks

from arbridge.clock import FixedClock
from arbridge.config import Settings
from arbridge.connectors.quickbooks import Grant
from arbridge.crypto import new_key
from arbridge.runtime import Runtime
from arbridge.sync import db
from arbridge.sync.mappers.quickbooks import map_invoice
from arbridge.sync.quickbooks_store import attach, build_connector
from arbridge.sync.runner import sync_connection
from arbridge.sync.store import aging_report, create_company
from scratch import scratch_dir, scratch_schema


def scratch_url(url: str | None, tmp: Path) -> str:
    if not url:
        return f"sqlite:///{tmp / 'bench.db'}"
    # A scratch schema of its own, so the benchmark never touches anything else.
    return scratch_schema(url, "arbridge_bench_qbo")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=5_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    n = args.invoices
    tmp = scratch_dir("arbridge-bench-qbo-")
    url = scratch_url(args.database_url, tmp)
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    clock = FixedClock(datetime(2026, 11, 24, 15, tzinfo=UTC))
    settings = Settings(
        instance_path=tmp,
        database_url=url,
        secret_key="x" * 40,
        encryption_keys=(new_key(),),
        qbo_client_id="bench",
        qbo_client_secret="bench-secret",
        qbo_api_base=API,
        qbo_discovery_url=DISCOVERY,
    )
    rt = Runtime.open(settings, clock)
    fake = FakeQuickBooks(clock)
    today = date(2026, 11, 24)
    t = time.perf_counter()
    customers = [fake.add_customer(f"Customer {i}") for i in range(max(40, n // 50))]
    ids = []
    for i in range(n):
        issued = today - timedelta(days=i % 200)
        ids.append(
            fake.add_invoice(
                customers[i % len(customers)],
                f"{100 + i % 900}.{i % 100:02d}",
                issued=issued,
                due=issued + timedelta(days=30),
                balance="0.00" if i % 3 == 0 else None,
            )
        )
    print(
        f"fake ledger: {n} invoices, {len(customers)} customers in {time.perf_counter() - t:.1f}s"
    )
    clock.advance(timedelta(minutes=5))  # the ledger was written before the first sync
    access, refresh = fake.issue_grant()
    with db.transaction(rt.sessions) as s:
        company = create_company(
            s,
            clock,
            name="Bench",
            slug="bench",
            home_currency="USD",
            timezone="America/Los_Angeles",
            country="US",
            owner_email="o@bench.example",
        )
        conn = attach(
            s,
            rt.keyring,
            clock,
            company,
            fake.realm_id,
            Grant(access, refresh, clock.now() + timedelta(hours=1), None),
        )
        s.flush()
        s.expunge(conn)

    results: dict[str, object] = {"database": url.split("://")[0], "invoices": n}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.install(rsps)
        qbo = build_connector(settings, rt.sessions, rt.keyring, clock, conn)
        t = time.perf_counter()
        sync_connection(rt.sessions, conn.id, qbo, clock, full=True)
        full = time.perf_counter() - t
        # ceil(k / 1000) pages per entity, and one call for an entity that has no records.
        minimum = sum(max(1, math.ceil(k / 1000)) for k in (len(customers), n, 0, 0))
        results.update(
            full_sync_seconds=round(full, 2),
            invoices_per_second=round(n / full),
            full_sync_api_calls=qbo.calls,
            full_sync_api_minimum=minimum,
        )
        # Incremental: change some invoices, then sync by CDC.
        clock.advance(timedelta(minutes=15))
        for i in range(args.changes):
            fake.update_invoice(ids[(i * 7) % n], Balance=Decimal("1.00"))
        qbo = build_connector(settings, rt.sessions, rt.keyring, clock, conn)
        before = dict(fake.calls)
        t = time.perf_counter()
        sync_connection(rt.sessions, conn.id, qbo, clock)
        inc = time.perf_counter() - t
        calls = {k: v - before.get(k, 0) for k, v in fake.calls.items() if k in ("query", "cdc")}
        results.update(
            incremental_changes=args.changes,
            incremental_seconds=round(inc, 2),
            incremental_api_calls=qbo.calls,
            incremental_api_calls_by_endpoint=calls,
            # One CDC call per entity, and one per 1,000 changed invoices.
            incremental_api_minimum=3 + max(1, math.ceil(args.changes / 1000)),
        )
    with rt.sessions() as s:
        aging = aging_report(s, s.merge(company), today)
    expected = sum((raw["Balance"] for raw in fake.live("Invoice")), Decimal(0))
    assert aging.open_balance.amount == expected, (aging.open_balance, expected)
    results["open_balance_equals_ledger"] = str(aging.open_balance.amount)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    # Mapping: ours against python-quickbooks' Invoice.from_json, same payloads.
    payloads = [fake.records["Invoice"][i] for i in ids]
    t = time.perf_counter()
    for raw in payloads:
        map_invoice(raw)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    for raw in payloads:
        PQInvoice.from_json(raw)
    theirs = time.perf_counter() - t
    results.update(
        our_mapping_seconds=round(ours, 3),
        python_quickbooks_from_json_seconds=round(theirs, 3),
        mapping_time_ratio=round(ours / theirs, 2),
    )
    rt.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
