"""Issue 14's dashboard and report at a million invoices (and issue 12's KPI queries), each
against a floor measured in the same run: `SELECT SUM(ledger_balance_minor) FROM invoices
WHERE company_id = ?` over the same company.

    .venv/bin/python bench/bench_dashboard.py [--invoices 1000000] [--customers 20000]
        [--runs 3] [--database-url URL] [--cache PATH] [--keep] [--pages-only]
        [--only invoices_forecast,customers_by]

Builds one company straight through SQL (no ledger sync; bench_sync_report.py measures that):
`--customers` customers (1 in 20 billing in EUR or GBP), `--invoices` invoices issued over the
two years before the as-of date, due 30 days later, each customer paying a steady number of
days late; the older ones paid (one payment each, a few in two parts), the rest open, so the
ledger has payments and allocations to match. Invoices carry the home-currency balance a sync
stores (migration 0024).

Times, as medians of `--runs` runs, each run timing the floor first:
- the dashboard page (first page, the last page of open invoices through the pager's keyset
  link, one aging bucket), the invoices list filtered to a week of the cash forecast (weeks 1
  and 3, the dashboard's forecast links) and the customers list sorted by balance and by days
  to pay, through the Flask test client, signed in as the owner;
- the report as `arbridge report --format json` computes it (`report_data` + json.dumps);
- issue 12's parts one by one: aging, KPIs, forecast and flags, the 12 months of trends.
The first view after the ledger changed pays for the insight (forecast, flags, trends) once
and stores it (`insight_cache`); `cold` figures force that, the others are the views after. A
company too big to compute it in the request has the worker compute it: the bench runs that
job once before timing (`worker.run_insight`), as a running worker would have, so the pages
show today's forecast and its week lists read the lateness stored with it.

On SQLite the built database is kept in `--cache` (default under /tmp) and reused by later
runs of the same size; a PostgreSQL run works in a schema of its own, dropped at the end unless
`--keep` (then reused by the next run with `--keep`); a PostgreSQL build ends with VACUUM
ANALYZE, as autovacuum would run after such a load (`--vacuum` runs it again first).
`--pages-only` times the floor, the pages, the report and the aging, not the insight computed
afresh (`--only PREFIX,...`: of those, only the floor and the ones named so); `--computed-only` times the floor and the insight computed afresh, nothing else.
Prints the figures and ratios as JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, insert, select, text

from arbridge.clock import FixedClock
from arbridge.collections.insight import home_minor
from arbridge.config import Settings
from arbridge.runtime import Runtime
from arbridge.sync import db
from arbridge.sync.insight_cache import bump, report_data
from arbridge.sync.insight_store import insight
from arbridge.sync.model import (
    Company,
    Customer,
    Invoice,
    Payment,
    PaymentAllocation,
)
from arbridge.sync.settled_store import refresh_company
from arbridge.sync.store import (
    add_connection,
    aging_report,
    create_company,
    issue_sign_in_token,
    kpi_report,
    owner,
)
from arbridge.sync.trends_store import kpi_trends
from arbridge.web import create_app
from arbridge.web.owner import PAGE_SIZE
from arbridge.worker import run_insight

AS_OF = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 15, tzinfo=UTC)
SCHEMA = "arbridge_bench_dashboard"
SLUG = "bench"
BATCH = 20_000
RATES = {"EUR": Decimal("1.0842"), "GBP": Decimal("1.2650")}
BUILT = "bench_dashboard built"  # the instance_meta key saying the build finished
# A fixed key, so a kept database opens again on the next run (a benchmark's, no secret).
KEY = base64.urlsafe_b64encode(b"bench-dashboard-key-32-bytes-abc").decode()


def _settings(url: str, tmp: Path) -> Settings:
    return Settings(
        instance_path=tmp, database_url=url, secret_key="x" * 40, encryption_keys=(KEY,)
    )


def _insert_all(rt: Runtime, model: Any, rows: Any) -> None:
    table, batch = model.__table__, []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            with rt.engine.begin() as c:
                c.execute(insert(table), batch)
            batch.clear()
    if batch:
        with rt.engine.begin() as c:
            c.execute(insert(table), batch)


def build(rt: Runtime, invoices: int, customers: int) -> None:
    """The company and its ledger, with explicit ids (a fresh database or schema)."""
    rng = random.Random(12)
    with db.transaction(rt.sessions) as s:
        company = create_company(
            s,
            rt.clock,
            name="Bench",
            slug=SLUG,
            home_currency="USD",
            timezone="America/Chicago",
            country="US",
            owner_email="o@bench.example",
        )
        add_connection(s, rt.keyring, rt.clock, company, "demo", "bench", None)
        company_id = company.id
    currencies = [
        "EUR" if j % 40 == 0 else "GBP" if j % 40 == 20 else "USD" for j in range(customers)
    ]
    late = [rng.choice((-3, 0, 2, 5, 8, 12, 20, 35)) for _ in range(customers)]
    base = dict(source="demo", synced_at=NOW, source_version=None, source_updated_at=None)
    _insert_all(
        rt,
        Customer,
        (
            {
                **base,
                "id": j + 1,
                "company_id": company_id,
                "source_id": f"C{j}",
                "name": f"Customer {j:05d}",
                "currency": currencies[j],
                "active": True,
                "deleted": False,
                "do_not_chase": False,
                "credit_limit_minor": 2_000_000 if j % 7 == 0 else None,
            }
            for j in range(customers)
        ),
    )
    inv_rows: list[dict[str, Any]] = []
    pay_rows: list[dict[str, Any]] = []
    alloc_rows: list[dict[str, Any]] = []

    def flush(final: bool = False) -> None:
        if len(inv_rows) >= BATCH or final:
            _insert_all(rt, Invoice, inv_rows)
            _insert_all(rt, Payment, pay_rows)
            _insert_all(rt, PaymentAllocation, alloc_rows)
            inv_rows.clear()
            pay_rows.clear()
            alloc_rows.clear()

    pay_id = alloc_id = 0
    for i in range(1, invoices + 1):
        cust = rng.randrange(customers)
        cur = currencies[cust]
        rate = RATES.get(cur, Decimal(1))
        issued = AS_OF - timedelta(days=rng.randrange(730))
        due = issued + timedelta(days=30)
        total = rng.randrange(50_00, 5_000_00)
        paid_on = due + timedelta(days=late[cust] + rng.randrange(-2, 3))
        paid = 0
        payments: list[tuple[date, int]] = []
        if paid_on <= AS_OF and rng.random() < 0.97:
            if rng.random() < 0.1:  # in two parts
                first = total // 3
                payments = [(paid_on - timedelta(days=10), first), (paid_on, total - first)]
            else:
                payments = [(paid_on, total)]
        elif rng.random() < 0.1:
            payments = [(min(AS_OF, issued + timedelta(days=5)), total // 2)]
        for on, amount in payments:
            if on > AS_OF:
                continue
            pay_id += 1
            alloc_id += 1
            paid += amount
            pay_rows.append(
                {
                    **base,
                    "id": pay_id,
                    "company_id": company_id,
                    "source_id": f"P{pay_id}",
                    "customer_id": cust + 1,
                    "received_on": on,
                    "currency": cur,
                    "exchange_rate": rate,
                    "amount_minor": amount,
                    "unapplied_minor": 0,
                    "status": "closed",
                }
            )
            alloc_rows.append(
                {
                    "id": alloc_id,
                    "company_id": company_id,
                    "invoice_id": i,
                    "payment_id": pay_id,
                    "credit_note_id": None,
                    "amount_minor": amount,
                    "applied_on": on,
                }
            )
        balance = total - paid
        inv_rows.append(
            {
                **base,
                "id": i,
                "company_id": company_id,
                "customer_id": cust + 1,
                "source_id": f"I{i}",
                "number": f"INV-{i:07d}",
                "issued_on": issued,
                "due_on": due,
                "currency": cur,
                "exchange_rate": rate,
                "total_minor": total,
                "ledger_balance_minor": balance,
                "unposted_minor": 0,
                "status": "open" if balance else "paid",
                "terms": "Net 30",
                "paused": False,
                "payment_pending": False,
                "lines": [{"description": "Goods", "amount": str(Decimal(total) / 100)}],
                "home_balance_minor": home_minor(balance, cur, rate, "USD"),
                "home_basis_minor": balance,
            }
        )
        flush()
    flush(final=True)
    t = time.perf_counter()
    with db.transaction(rt.sessions) as s:
        refresh_company(s, company_id)  # what a sync stores for the insight (migration 0029)
    print(f"stored the insight's figures in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    with rt.engine.begin() as c:
        if c.dialect.name == "postgresql":
            for table in ("customers", "invoices", "payments", "payment_allocations"):
                c.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"  # noqa: S608
                        f" (SELECT max(id) FROM {table}))"
                    )
                )
        else:
            c.execute(text("ANALYZE"))
    if rt.engine.dialect.name == "postgresql":
        vacuum(rt)
    with rt.engine.begin() as c:
        c.execute(
            text("INSERT INTO instance_meta (key, value) VALUES (:k, :v)"),
            {"k": BUILT, "v": str(invoices)},
        )


def vacuum(rt: Runtime) -> None:
    """VACUUM ANALYZE the bench's tables, as autovacuum does after a large load on a server
    that runs it (it sets the visibility map, which index-only scans need)."""
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        for table in ("customers", "invoices", "payments", "payment_allocations"):
            c.execute(text(f"VACUUM ANALYZE {table}"))


def _built(url: str) -> bool:
    engine = db.make_engine(url)
    try:
        with engine.connect() as c:
            return (
                c.execute(
                    text("SELECT value FROM instance_meta WHERE key = :k"), {"k": BUILT}
                ).scalar()
                is not None
            )
    except Exception:  # no such table yet: not built
        return False
    finally:
        engine.dispose()


def open_database(args: argparse.Namespace, tmp: Path) -> tuple[Runtime, str, bool]:
    """The runtime on a built database (building it when there is none to reuse)."""
    url = args.database_url
    if url and url.startswith("postgresql"):
        admin = db.make_engine(url)
        schema_url = url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{SCHEMA}"
        reuse = args.keep and _built(schema_url)
        if not reuse:
            with admin.begin() as c:
                c.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
                c.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        admin.dispose()
        url = schema_url
    else:
        cache = Path(args.cache or f"/tmp/arbridge-bench-dashboard-{args.invoices}.db")  # noqa: S108
        url = f"sqlite:///{cache}"
        reuse = cache.exists() and _built(url)
        if not reuse and cache.exists():
            cache.unlink()
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    rt = Runtime.open(_settings(url, tmp), FixedClock(NOW))
    if not reuse:
        t = time.perf_counter()
        build(rt, args.invoices, args.customers)
        print(f"built {args.invoices} invoices in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    return rt, url, reuse


# Each timed function's median CPU time of this process (time.process_time: SQLite's work is
# in it, a PostgreSQL server's is not), printed beside the wall times (the machine is shared).
CPU: dict[str, float] = {}


def median_of(runs: int, fns: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Each function's median over `runs` rounds; each round runs them all in order."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    CPU.update({name: statistics.median(ts) for name, ts in cpu.items()})
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--cache", default=None, help="SQLite: the built database to reuse")
    parser.add_argument("--keep", action="store_true", help="PostgreSQL: keep the schema")
    parser.add_argument("--build-only", action="store_true", help="build (or check) and stop")
    parser.add_argument(
        "--pages-only",
        action="store_true",
        help="only the floor, the pages, the report and the aging (not the insight computed)",
    )
    parser.add_argument(
        "--computed-only",
        action="store_true",
        help="only the floor and the insight computed afresh (KPIs, forecast and flags, trends)",
    )
    parser.add_argument("--vacuum", action="store_true", help="PostgreSQL: VACUUM ANALYZE first")
    parser.add_argument(
        "--only",
        default=None,
        help="with --pages-only: time only the floor and the figures whose names start with"
        " one of these comma-separated prefixes (e.g. invoices_forecast,customers_by)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="arbridge-bench-"))
    rt, url, reused = open_database(args, tmp)
    if args.build_only:
        rt.close()
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if args.vacuum and url.startswith("postgresql"):
        vacuum(rt)
    try:
        if args.computed_only:
            figures, counts = measure_computed(rt, args.runs), {}
        else:
            only = tuple(args.only.split(",")) if args.only else None
            figures, counts = measure(rt, args.runs, args.pages_only or bool(only), only)
    finally:
        rt.close()
        if url.startswith("postgresql") and not args.keep:
            admin = db.make_engine(args.database_url)
            with admin.begin() as c:
                c.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    floor = figures.pop("floor")
    print(
        json.dumps(
            {
                "database": url.split(":")[0].split("+")[0],
                "invoices": args.invoices,
                "customers": args.customers,
                "runs": args.runs,
                "reused_build": reused,
                "floor_sql_sum_seconds": round(floor, 4),
                **{f"{k}_seconds": round(v, 4) for k, v in figures.items()},
                **{f"{k}_vs_floor": round(v / floor, 2) for k, v in figures.items()},
                **{f"{k}_cpu_seconds": round(v, 4) for k, v in CPU.items()},
                "load_average": [round(x, 2) for x in os.getloadavg()],
                **counts,
            },
            indent=2,
        )
    )


def measure_computed(rt: Runtime, runs: int) -> dict[str, float]:
    """The floor and issue 12's figures computed afresh, nothing else (`--computed-only`)."""
    with rt.sessions() as session:
        company = session.scalar(select(Company).where(Company.slug == SLUG))
        assert company is not None
        floor_sql = text("SELECT sum(ledger_balance_minor) FROM invoices WHERE company_id = :c")
        kpi = kpi_report(session, company, AS_OF, 90)
        return median_of(
            runs,
            {
                "floor": lambda: session.execute(floor_sql, {"c": company.id}).one(),
                "kpis": lambda: kpi_report(session, company, AS_OF, 90),
                "forecast_and_flags": lambda: insight(session, company, AS_OF, kpi),
                "trends_12_months": lambda: kpi_trends(session, company, AS_OF),
            },
        )


def measure(
    rt: Runtime, runs: int, pages_only: bool, only: tuple[str, ...] | None = None
) -> tuple[dict[str, float], dict[str, int]]:
    with rt.sessions() as s:
        company = s.scalar(select(Company).where(Company.slug == SLUG))
        assert company is not None
        user = owner(s, company)
        token = issue_sign_in_token(s, rt.clock, user, 10)
        company_id = company.id
        open_count = s.scalar(
            select(func.count()).where(Invoice.company_id == company_id, Invoice.is_open)
        )
        # The pager's link to the last page: "later due" after the row before it.
        before_last = s.execute(
            select(Invoice.due_on, Invoice.id)
            .where(Invoice.company_id == company_id, Invoice.is_open)
            .order_by(Invoice.due_on.desc(), Invoice.id.desc())
            .offset(((open_count - 1) % PAGE_SIZE) + 1)
            .limit(1)
        ).one()
        s.commit()
    last_page = (open_count + PAGE_SIZE - 1) // PAGE_SIZE
    last_url = f"/c/{SLUG}/?page={last_page}&after={before_last[0].isoformat()}.{before_last[1]}"
    app = create_app(rt, TESTING=True, WTF_CSRF_ENABLED=False)
    client = app.test_client()
    client.post(f"/sign-in/{token}")

    def page(url: str) -> Callable[[], None]:
        def get() -> None:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        return get

    statements = [0]

    @event.listens_for(rt.engine, "before_cursor_execute")
    def count(*_: Any) -> None:
        statements[0] += 1

    session = rt.sessions()
    floor_sql = text("SELECT sum(ledger_balance_minor) FROM invoices WHERE company_id = :c")

    def floor() -> None:
        session.execute(floor_sql, {"c": company_id}).one()

    def report() -> None:
        json.dumps(report_data(session, company, AS_OF, 90, True, rt.clock.now()))

    company = session.get(Company, company_id)
    kpi = None if pages_only else kpi_report(session, company, AS_OF, 90)

    def cold(fn: Callable[[], None]) -> Callable[[], None]:
        """Run `fn` as the first view after the ledger changed (nothing stored yet)."""

        def run() -> None:
            with db.transaction(rt.sessions) as s:
                bump(s, company_id)
            fn()

        return run

    client.get(f"/c/{SLUG}/")  # warms the caches (and stores today's insight)
    # What the worker does when the dashboard found no current insight (a company too big to
    # compute it in the request): the forecast's figures, and the lateness its week lists read.
    run_insight(rt, company)
    statements[0] = 0
    page(f"/c/{SLUG}/")()
    counts = {"dashboard_statements": statements[0]}
    timed: dict[str, Callable[[], Any]] = {
        "floor": floor,
        "dashboard_page": page(f"/c/{SLUG}/"),
        "dashboard_last_page": page(last_url),
        "dashboard_bucket_over_90": page(f"/c/{SLUG}/?bucket=over_90"),
        # The dashboard's cash-forecast links (week 1 takes every invoice whose day passed).
        "invoices_forecast_week_1": page(f"/c/{SLUG}/invoices?expected=1"),
        "invoices_forecast_week_3": page(f"/c/{SLUG}/invoices?expected=3"),
        # The invoices list in one currency (the filter's own index, migration 0036, must not
        # be taken for the list's due-date order).
        "invoices_currency_eur": page(f"/c/{SLUG}/invoices?currency=EUR"),
        "customers_by_balance": page(f"/c/{SLUG}/customers?sort=balance&dir=desc"),
        "customers_by_days_to_pay": page(f"/c/{SLUG}/customers?sort=days_to_pay"),
        "report_json": report,
        "aging": lambda: aging_report(session, company, AS_OF),
    }
    if not pages_only:
        timed |= {
            "kpis": lambda: kpi_report(session, company, AS_OF, 90),
            "forecast_and_flags": lambda: insight(session, company, AS_OF, kpi),
            "trends_12_months": lambda: kpi_trends(session, company, AS_OF),
        }
    if only:
        timed = {k: fn for k, fn in timed.items() if k == "floor" or k.startswith(only)}
    figures = median_of(runs, timed)
    if not pages_only:
        figures |= median_of(
            runs,
            {
                "dashboard_page_cold": cold(page(f"/c/{SLUG}/")),
                "report_json_cold": cold(report),
            },
        )
    session.close()
    counts["open_invoices"] = open_count
    return figures, counts


if __name__ == "__main__":
    main()
