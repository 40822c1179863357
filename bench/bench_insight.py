"""Issue 12's insight on a large synthetic demo ledger: the KPIs, the forecast and flags, the
12 months of trends, the whole dashboard page and the lists it links to, each against a plain
`SELECT SUM(...)` over the same invoices as the floor.

    .venv/bin/python bench/bench_insight.py [--invoices 100000] [--database-url URL]

The ledger is synced first (not timed here: bench_sync_report.py measures that).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import UTC, datetime

from sqlalchemy import text

from arbridge.clock import FixedClock, local_date
from arbridge.config import Settings
from arbridge.connectors.demo import DemoConnector, generate_demo_ledger
from arbridge.crypto import new_key
from arbridge.runtime import Runtime
from arbridge.sync import db
from arbridge.sync.insight_cache import snapshot
from arbridge.sync.insight_store import insight
from arbridge.sync.runner import sync_connection
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
from scratch import scratch_dir


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
            c.execute(text("DROP SCHEMA IF EXISTS arbridge_bench CASCADE"))
            c.execute(text("CREATE SCHEMA arbridge_bench"))
        admin.dispose()
        url += ("&" if "?" in url else "?") + "options=-csearch_path%3Darbridge_bench"
        engine = db.make_engine(url)
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

    connector = DemoConnector(ledger, page_size=1000)
    t = time.perf_counter()
    sync_connection(rt.sessions, conn.id, connector, clock)
    print(f"synced in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    as_of = local_date(clock.now(), company.timezone)

    def best(fn, runs: int = 3) -> float:
        """The fastest of a few runs (the first warms the caches)."""
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    with rt.sessions() as s:
        floor = best(
            lambda: s.execute(
                text("SELECT sum(ledger_balance_minor) FROM invoices WHERE company_id = :c"),
                {"c": company.id},
            ).one()
        )
        kpi = kpi_report(s, company, as_of, 90)
        figures = {
            "aging": best(lambda: aging_report(s, company, as_of)),
            "kpis": best(lambda: kpi_report(s, company, as_of, 90)),
            "forecast_and_flags": best(lambda: insight(s, company, as_of, kpi)),
            "trends_12_months": best(lambda: kpi_trends(s, company, as_of), runs=1),
        }
        user = owner(s, company)
        token = issue_sign_in_token(s, clock, user, 10)
        s.commit()
    app = create_app(rt, TESTING=True, WTF_CSRF_ENABLED=False)
    client = app.test_client()
    client.post(f"/sign-in/{token}")
    figures["dashboard_page"] = best(lambda: client.get("/c/bench/"), runs=2)
    assert client.get("/c/bench/").status_code == 200
    # The drill-downs the dashboard links to: the invoices behind the forecast's first week
    # (the most of them) and "later", and the customers list sorted by flags; with today's
    # insight stored, as the worker leaves it (they read its lateness and flags).
    with rt.sessions() as s:
        snapshot(s, company, as_of, 90, True, clock.now())
    for name, path in (
        ("forecast_week_1_invoices_page", "/c/bench/invoices?expected=1"),
        ("forecast_later_invoices_page", "/c/bench/invoices?expected=later"),
        ("customers_page_by_flags", "/c/bench/customers?sort=flags&dir=desc"),
    ):
        assert client.get(path).status_code == 200, path
        figures[name] = best(lambda path=path: client.get(path), runs=2)

    print(
        json.dumps(
            {
                "database": url.split(":")[0],
                "invoices": args.invoices,
                "floor_sql_sum_seconds": round(floor, 4),
                **{f"{k}_seconds": round(v, 3) for k, v in figures.items()},
                **{f"{k}_vs_floor": round(v / floor, 1) for k, v in figures.items()},
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            },
            indent=2,
        )
    )
    rt.close()


if __name__ == "__main__":
    main()
