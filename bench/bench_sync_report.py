"""Full sync and aging report on a large synthetic demo ledger, against same-process baselines.

    .venv/bin/python bench/bench_sync_report.py [--invoices 100000] [--database-url URL]

Sync baselines: a bare executemany INSERT of the same invoice rows into a scratch table (the
cost of simply writing the data), and a bare executemany INSERT of the invoices as the sync
stored them into a copy of the invoices table, with its indexes and foreign keys, by COPY on
PostgreSQL (the cost of writing them where arbridge keeps them, without the sync's reading,
mapping and upserting). Report baseline: a single SQL SUM over the open invoices (the
cost of reading them). The ratios say what mapping, upserting and exact per-invoice conversion
cost on top of that.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, select, text

from arbridge.clock import FixedClock, local_date
from arbridge.config import Settings
from arbridge.connectors.demo import DemoConnector, generate_demo_ledger
from arbridge.crypto import new_key
from arbridge.runtime import Runtime
from arbridge.sync import db
from arbridge.sync.model import Invoice
from arbridge.sync.runner import sync_connection
from arbridge.sync.store import add_connection, aging_report, create_company
from floors import bare_insert
from scratch import scratch_dir

# A scratch schema named after the process: runs side by side never drop each other's.
SCHEMA = f"arbridge_bench_{os.getpid()}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    tmp = scratch_dir("arbridge-bench-")
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    engine = db.make_engine(url)
    if url.startswith("postgresql"):
        # A scratch schema of its own, so the benchmark never touches anything else.
        admin = db.make_engine(url)
        with admin.begin() as c:
            c.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            c.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        admin.dispose()
        url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{SCHEMA}"
        engine = db.make_engine(url)
    try:
        _run(args, tmp, url, engine)
    finally:
        if args.database_url and args.database_url.startswith("postgresql"):
            admin = db.make_engine(args.database_url)
            with admin.begin() as c:
                c.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            admin.dispose()


def _run(args: argparse.Namespace, tmp: Path, url: str, engine: Any) -> None:
    db.upgrade(engine)
    engine.dispose()
    clock = FixedClock(datetime(2026, 11, 24, 15, tzinfo=UTC))
    rt = Runtime.open(
        Settings(
            instance_path=tmp, database_url=url, secret_key="x" * 40, encryption_keys=(new_key(),)
        ),
        clock,
    )
    with db.transaction(rt.sessions) as s:
        company = create_company(
            s,
            clock,
            name="Bench",
            slug="bench",
            home_currency="USD",
            timezone="America/Chicago",
            country="US",
            owner_email="o@bench.example",
        )
        conn = add_connection(s, rt.keyring, clock, company, "demo", "bench", None)
    ledger = rt.demo_ledger("bench")
    t = time.perf_counter()
    generate_demo_ledger(
        ledger,
        local_date(clock.now(), company.timezone),
        customers=max(40, args.invoices // 50),
        invoices=args.invoices,
    )
    print(
        f"generated ledger with {args.invoices} invoices in {time.perf_counter() - t:.1f}s",
        file=sys.stderr,
    )

    # Sync.
    connector = DemoConnector(ledger, page_size=1000)
    t, cpu = time.perf_counter(), time.process_time()
    result = sync_connection(rt.sessions, conn.id, connector, clock)
    sync_s, sync_cpu = time.perf_counter() - t, time.process_time() - cpu
    records = sum(result.upserted.values())

    raw = [r for r in ledger.read()["Invoice"]]
    t, cpu = time.perf_counter(), time.process_time()
    with rt.engine.begin() as c:
        c.execute(text("CREATE TABLE bench_raw (id VARCHAR(64), body TEXT)"))
        c.execute(
            text("INSERT INTO bench_raw (id, body) VALUES (:id, :body)"),
            [{"id": r["id"], "body": json.dumps(r)} for r in raw],
        )
    baseline_s, baseline_cpu = time.perf_counter() - t, time.process_time() - cpu
    invoice_share = len(raw) / records
    indexed_s, indexed_cpu = _indexed_insert(rt.engine)

    # Report.
    as_of = local_date(clock.now(), company.timezone)
    with rt.sessions() as s:
        t = time.perf_counter()
        aging = aging_report(s, company, as_of)
        report_s = time.perf_counter() - t
        t = time.perf_counter()
        s.execute(
            text(
                "SELECT count(*), sum(ledger_balance_minor) FROM invoices WHERE company_id = :c AND status = 'open'"
            ),
            {"c": company.id},
        ).one()
        report_base_s = time.perf_counter() - t

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "database": url.split(":")[0],
                "invoices": len(raw),
                "records_synced": records,
                "sync_seconds": round(sync_s, 2),
                "invoices_per_second": round(len(raw) / (sync_s * invoice_share)),
                "sync_vs_bare_insert_ratio": round(sync_s * invoice_share / baseline_s, 2),
                # This process's CPU time alone: on SQLite the whole of both (the database runs
                # in process), and what other jobs on a busy machine do not lengthen.
                "sync_cpu_vs_bare_insert_cpu_ratio": round(
                    sync_cpu * invoice_share / baseline_cpu, 2
                ),
                # The two CPU times the ratio above divides (the sync's of all its records, the
                # bare INSERT's of the invoices alone): which of them a loaded machine moved.
                "sync_cpu_seconds": round(sync_cpu, 2),
                "bare_insert_cpu_seconds": round(baseline_cpu, 2),
                # The same invoices into a copy of their own table, every index and foreign key
                # kept: what storing them costs before any of the sync's own work.
                "sync_vs_indexed_insert_ratio": round(sync_s * invoice_share / indexed_s, 2),
                "indexed_insert_seconds": round(indexed_s, 2),
                "indexed_insert_cpu_seconds": round(indexed_cpu, 2),
                "indexed_insert_vs_bare_insert_ratio": round(indexed_s / baseline_s, 2),
                "open_invoices": aging.open_invoices,
                "report_seconds": round(report_s, 3),
                "report_vs_sql_sum_ratio": round(report_s / report_base_s, 1),
                "peak_rss_mb": round(peak_mb),
            },
            indent=2,
        )
    )
    rt.close()


def _indexed_insert(engine: Any) -> tuple[float, float]:
    """Seconds and CPU seconds of writing every invoice the sync stored (as it stored them, all
    columns but the id) into a copy of the invoices table with its indexes and foreign keys, the
    cheapest way the database takes rows (`floors.bare_insert`: SQLite's executemany INSERT,
    PostgreSQL's COPY), in one transaction; the copy is dropped after."""
    meta = MetaData()
    meta.reflect(engine, only=["companies", "customers"])
    copy = Invoice.__table__.to_metadata(meta, name="bench_indexed")
    for item in [*copy.indexes, *copy.constraints]:
        if item.name:
            item.name = f"b_{item.name}"
    columns = [c for c in Invoice.__table__.c if c.name != "id"]
    with engine.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(select(*columns))]
    copy.create(engine)
    try:
        t, cpu = time.perf_counter(), time.process_time()
        with engine.begin() as c:
            bare_insert(c, copy, rows)
        return time.perf_counter() - t, time.process_time() - cpu
    finally:
        copy.drop(engine)


if __name__ == "__main__":
    main()
