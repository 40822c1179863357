"""`arbridge remind --dry-run` and the reminders page for one company with a large ledger, at two
sizes, against a SUM.

    .venv/bin/python bench/bench_dry_run.py [--invoices 100000 1000000] [--customers 2000]
        [--due 200] [--runs 9] [--database-url URL]

Builds one company straight through SQL (no ledger sync): `--customers` customers with a contact
each, `--due` open invoices due for a step today, and the rest of its open invoices either not
due yet or already reminded at the step in force for their due date (with the ReminderSend that
says so), as in bench_reminders.py. It times the dry run as the CLI does it (`preview` and its
lines) and the owner's reminders page (`GET /c/dry-run/reminders`, signed in: its time, SQL
statements and bytes of HTML) and, in the same run, the floor: one `SELECT SUM(ledger_balance_minor)` over the
company's invoices. Then it grows the ledger to the larger size and times both again. Medians
of `--runs` runs; ratios as JSON. A PostgreSQL run works in a schema of its own, dropped after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, select, text

from arbridge.runtime import Runtime
from arbridge.services.reminders.preview import preview, preview_lines
from arbridge.sync import db
from arbridge.sync.model import Company, Contact, Customer, Invoice, ReminderSend, User
from scratch import scratch_dir

sys.path.insert(0, str(Path(__file__).parent))
from bench_reminders import AS_OF, NOW, _insert, _invoice

# Its own schema, named after the process: runs side by side never drop each other's.
SCHEMA = f"arbridge_bench_dry_run_{os.getpid()}"


def _setup(url: str, tmp: Path) -> tuple[Runtime, str]:
    from arbridge.clock import FixedClock
    from arbridge.config import Settings
    from arbridge.crypto import new_key

    if url.startswith("postgresql"):
        engine = db.make_engine(url)
        with engine.begin() as c:
            c.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            c.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        engine.dispose()
        url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{SCHEMA}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    settings = Settings(
        instance_path=tmp, database_url=url, secret_key="x" * 40, encryption_keys=(new_key(),)
    )
    return Runtime.open(settings, FixedClock(NOW)), url


def _company(rt: Runtime, customers: int) -> tuple[int, list[int]]:
    [company_id] = _insert(
        rt,
        Company,
        [
            {
                "name": "Dry Run Co",
                "slug": "dry-run",
                "home_currency": "USD",
                "timezone": "America/Chicago",
                "country": "US",
                "sync_interval_minutes": 15,
                "collections_hour": 9,
                "settings": {},
                "created_at": NOW,
            }
        ],
    )
    customer_ids = _insert(
        rt,
        Customer,
        (
            {
                "company_id": company_id,
                "source": "demo",
                "source_id": f"C{j}",
                "synced_at": NOW,
                "name": f"Customer {j}",
                "currency": "USD",
                "active": True,
                "deleted": False,
                "do_not_chase": False,
            }
            for j in range(customers)
        ),
    )
    _insert(
        rt,
        Contact,
        (
            {
                "company_id": company_id,
                "customer_id": cust,
                "source": "demo",
                "source_id": f"P{cust}",
                "synced_at": NOW,
                "name": "Pat",
                "email": f"pat{cust}@bench.example",
                "is_primary": True,
            }
            for cust in customer_ids
        ),
    )
    return company_id, customer_ids


def _grow(rt: Runtime, company_id: int, customers: list[int], start: int, end: int, due: int):
    """Invoices start..end: the first `due` due today (3 days overdue, never reminded), then
    alternately not due yet and long overdue but already reminded at the step in force."""
    fresh, done = [], []
    for n in range(start, end):
        cust = customers[n % len(customers)]
        if n < due:
            fresh.append(_invoice(company_id, cust, n, AS_OF - timedelta(days=3)))
        elif n % 2:
            fresh.append(_invoice(company_id, cust, n, AS_OF + timedelta(days=10 + n % 30)))
        else:
            done.append(
                {
                    **_invoice(company_id, cust, n, AS_OF - timedelta(days=60 + n % 200)),
                    "highest_step_claimed": 6,
                }
            )
    _insert(rt, Invoice, fresh)
    done_ids = _insert(rt, Invoice, done)
    _insert(
        rt,
        ReminderSend,
        (
            {
                "company_id": company_id,
                "invoice_id": inv_id,
                "customer_id": row["customer_id"],
                "step_key": "after-45",
                "step_index": 6,
                "channel": "call",
                "run_on": AS_OF - timedelta(days=10),
                "status": "sent",
                "currency": "USD",
                "balance_minor": row["ledger_balance_minor"],
                "created_at": NOW - timedelta(days=10),
            }
            for row, inv_id in zip(done, done_ids, strict=True)
        ),
    )
    with rt.engine.begin() as c:
        c.execute(text("ANALYZE"))


def _median(runs: int, work: Callable[[], Any]) -> tuple[float, Any, float]:
    """The median time of `runs` runs, the last run's result, and the median CPU time this
    process spent (on SQLite the whole of the work, database included: what a busy machine's
    other jobs do not lengthen, where the elapsed time of a 50 ms run varies 2x with them)."""
    times, cpu, out = [], [], None
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        out = work()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), out, statistics.median(cpu)


def _signed_in(rt: Runtime, company_id: int) -> Any:
    """A test client of the web app, signed in as the company's owner."""
    from arbridge.sync.store import issue_sign_in_token
    from arbridge.web import create_app

    with rt.sessions() as s:
        user = User(company_id=company_id, email="owner@bench.example", created_at=NOW)
        s.add(user)
        s.flush()
        token = issue_sign_in_token(s, rt.clock, user, 10)
        s.commit()
    client = create_app(rt, TESTING=True, WTF_CSRF_ENABLED=False).test_client()
    assert client.post(f"/sign-in/{token}").status_code == 302
    return client


def _measure(rt: Runtime, company: Company, runs: int, client: Any) -> dict[str, Any]:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    def page() -> bytes:
        response = client.get(f"/c/{company.slug}/reminders")
        assert response.status_code == 200, response.status_code
        return response.data

    def dry_run() -> list[str]:
        return preview_lines(preview(rt, company, AS_OF))

    def floor() -> int:
        with rt.engine.connect() as c:
            return c.execute(
                text("SELECT SUM(ledger_balance_minor) FROM invoices WHERE company_id = :c"),
                {"c": company.id},
            ).scalar_one()

    dry_run(), page()  # warm the caches: every timed run then starts alike
    dry_s, lines, dry_cpu = _median(runs, dry_run)
    page_s, html, _ = _median(runs, page)
    floor_s, _, _ = _median(runs, floor)
    event.listen(rt.engine, "before_cursor_execute", count)
    dry_run()
    dry_statements = len(statements)
    statements.clear()
    page()
    event.remove(rt.engine, "before_cursor_execute", count)
    return {
        "seconds": round(dry_s, 3),
        "cpu_seconds": round(dry_cpu, 3),
        "sum_floor_seconds": round(floor_s, 4),
        "ratio_to_sum": round(dry_s / floor_s, 1),
        "statements": dry_statements,
        "lines": len(lines),
        "due_line": next(line.strip() for line in lines if "due for a step today" in line),
        "page_seconds": round(page_s, 3),
        "page_ratio_to_sum": round(page_s / floor_s, 1),
        "page_statements": len(statements),
        "page_html_kb": round(len(html) / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, nargs=2, default=[100_000, 1_000_000])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--due", type=int, default=200)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    small, large = args.invoices
    if not args.due < small < large:
        parser.error("need --due < the first invoice count < the second")
    tmp = scratch_dir("arbridge-bench-")
    base = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    rt, url = _setup(base, tmp)
    try:
        t = time.perf_counter()
        company_id, customers = _company(rt, args.customers)
        _grow(rt, company_id, customers, 0, small, args.due)
        print(f"built {small} invoices in {time.perf_counter() - t:.0f}s", file=sys.stderr)
        with rt.sessions() as s:
            company = s.scalars(select(Company).where(Company.id == company_id)).one()
            s.expunge(company)
        client = _signed_in(rt, company_id)
        at_small = _measure(rt, company, args.runs, client)
        t = time.perf_counter()
        _grow(rt, company_id, customers, small, large, args.due)
        print(f"grew to {large} invoices in {time.perf_counter() - t:.0f}s", file=sys.stderr)
        at_large = _measure(rt, company, args.runs, client)
        assert at_small["due_line"].split(":")[1] == at_large["due_line"].split(":")[1], (
            "the invoices due today must not change"
        )
        print(
            json.dumps(
                {
                    "database": url.split(":")[0],
                    "customers": args.customers,
                    "invoices_due": args.due,
                    f"at_{small}": at_small,
                    f"at_{large}": at_large,
                    "growth_ratio": round(at_large["seconds"] / at_small["seconds"], 2),
                    "cpu_growth_ratio": round(at_large["cpu_seconds"] / at_small["cpu_seconds"], 2),
                    "page_growth_ratio": round(
                        at_large["page_seconds"] / at_small["page_seconds"], 2
                    ),
                    "sum_floor_growth_ratio": round(
                        at_large["sum_floor_seconds"] / at_small["sum_floor_seconds"], 2
                    ),
                    "invoice_ratio": round(large / small, 1),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                },
                indent=2,
            )
        )
    finally:
        rt.close()
        if base.startswith("postgresql"):
            engine = db.make_engine(base)
            with engine.begin() as c:
                c.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            engine.dispose()


if __name__ == "__main__":
    main()
