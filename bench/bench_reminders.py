"""The daily reminder run over many companies, at two ledger sizes with the same messages due.

    .venv/bin/python bench/bench_reminders.py [--companies 10000] [--invoices 100000 1000000]
        [--due-per-company 2] [--batch 1000] [--runs 3] [--sample 500] [--database-url URL]

Builds a synthetic receivables database straight through SQL (no ledger sync): every company has
ten customers, a demo ledger synced just now, and the same `--due-per-company` invoices due for a
step today; the rest of its invoices are either not due yet or already reminded at the step in
force for their due date (they carry the ReminderSend row that says so). It then times, first
with the smaller ledger, then after growing it to the larger one (medians of `--runs` runs, with
the SQL statements each way):

- the day's decisions (load the facts, run the pure decision) for every company `--batch`
  companies at a time (`load_days`: one candidate query per policy shape, the facts in one
  pass), and for the first `--sample` companies one at a time (`load_day`, projected to all);
- the whole run (`whole_run_*`): `run_reminders_of` over every company, `--batch` at a time as
  the worker takes them: decide, claim each (invoice, step), write the payment links, outbox
  rows and activity a table at a time; then the same run again (`rerun_*`, which must queue
  nothing), and everything it wrote undone for the next run;
- the floor under the run's writes (`writes_floor_*`): the rows one run keeps written again by
  bare statements (an executemany INSERT a table, an UPDATE a step) into the same tables.

Decisions that grow with the messages due, not with the ledger, keep the growth ratio near 1.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import delete, event, func, insert, select, text, update

from arbridge.clock import FixedClock
from arbridge.config import Settings
from arbridge.crypto import new_key
from arbridge.runtime import Runtime
from arbridge.services.reminders.facts import load_days
from arbridge.services.reminders.run import run_reminders_of
from arbridge.sync import db
from arbridge.sync.model import (
    Activity,
    Company,
    Connection,
    Contact,
    Customer,
    Invoice,
    OutboxMessage,
    PayToken,
    ReminderSend,
)
from arbridge.sync.store import ledger_states
from floors import bare_insert
from scratch import scratch_dir, scratch_schema

AS_OF = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 15, tzinfo=UTC)
CUSTOMERS_PER_COMPANY = 10
BATCH = 20_000


def _setup(url: str, tmp: Path) -> tuple[Runtime, str]:
    if url.startswith("postgresql"):
        # A scratch schema of its own, so the benchmark never touches anything else.
        url = scratch_schema(url, "arbridge_bench_reminders")
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    settings = Settings(
        instance_path=tmp, database_url=url, secret_key="x" * 40, encryption_keys=(new_key(),)
    )
    return Runtime.open(settings, FixedClock(NOW)), url


def _insert(rt: Runtime, model, rows) -> list[int]:
    """Insert in batches; returns the new ids in order."""
    ids: list[int] = []
    table = model.__table__
    batch: list[dict] = []

    def flush() -> None:
        with rt.engine.begin() as c:
            result = c.execute(
                insert(table).returning(table.c.id, sort_by_parameter_order=True), batch
            )
            ids.extend(r[0] for r in result)
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return ids


def _companies(rt: Runtime, n: int, first: int = 0) -> tuple[list[int], dict[int, list[int]]]:
    company_ids = _insert(
        rt,
        Company,
        (
            {
                "name": f"Company {i}",
                "slug": f"bench-{i}",
                "home_currency": "USD",
                "timezone": "America/Chicago",
                "country": "US",
                "sync_interval_minutes": 15,
                "collections_hour": 9,
                "settings": {},
                "created_at": NOW,
            }
            for i in range(first, first + n)
        ),
    )
    # Each on a demo ledger synced just now, so the whole run reminds them (none is held to sync).
    _insert(
        rt,
        Connection,
        (
            {
                "company_id": cid,
                "provider": "demo",
                "tenant_id": f"bench-{cid}",
                "status": "active",
                "last_sync_at": NOW,
                "created_at": NOW,
            }
            for cid in company_ids
        ),
    )
    customer_ids = _insert(
        rt,
        Customer,
        (
            {
                "company_id": cid,
                "source": "demo",
                "source_id": f"C{j}",
                "synced_at": NOW,
                "name": f"Customer {cid}-{j}",
                "currency": "USD",
                "active": True,
                "deleted": False,
                "do_not_chase": False,
            }
            for cid in company_ids
            for j in range(CUSTOMERS_PER_COMPANY)
        ),
    )
    by_company: dict[int, list[int]] = {}
    for k, cust in enumerate(customer_ids):
        by_company.setdefault(company_ids[k // CUSTOMERS_PER_COMPANY], []).append(cust)
    _insert(
        rt,
        Contact,
        (
            {
                "company_id": company_ids[k // CUSTOMERS_PER_COMPANY],
                "customer_id": cust,
                "source": "demo",
                "source_id": f"P{cust}",
                "synced_at": NOW,
                "name": "Pat",
                "email": f"pat{cust}@bench.example",
                "is_primary": True,
            }
            for k, cust in enumerate(customer_ids)
        ),
    )
    return company_ids, by_company


def _invoice(company_id: int, customer_id: int, n: int, due_on: date) -> dict:
    return {
        "company_id": company_id,
        "customer_id": customer_id,
        "source": "demo",
        "source_id": f"I{n}",
        "number": f"INV-{n}",
        "issued_on": due_on - timedelta(days=30),
        "due_on": due_on,
        "currency": "USD",
        "exchange_rate": Decimal(1),
        "total_minor": 100_00,
        "ledger_balance_minor": 100_00,
        "status": "open",
        "paused": False,
        "synced_at": NOW,
    }


def _grow(
    rt: Runtime,
    companies: list[int],
    customers: dict[int, list[int]],
    per_company: int,
    start: int,
    due: int,
) -> None:
    """Add invoices per company: `due` due today (first call only), half the rest not yet due,
    half already reminded at their step in force (after-45) with the ReminderSend to prove it."""
    serial = start * len(companies)
    fresh, done = [], []
    for cid in companies:
        custs = customers[cid]
        for k in range(per_company):
            serial += 1
            cust = custs[k % len(custs)]
            if start == 0 and k < due:
                fresh.append(_invoice(cid, custs[k], serial, AS_OF - timedelta(days=3)))
            elif k % 2:
                fresh.append(_invoice(cid, cust, serial, AS_OF + timedelta(days=10 + k % 30)))
            else:
                done.append(
                    {
                        **_invoice(cid, cust, serial, AS_OF - timedelta(days=60 + k % 200)),
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
                "company_id": row["company_id"],
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
    if rt.engine.dialect.name == "postgresql":
        with rt.engine.begin() as c:
            c.execute(text("ANALYZE"))


def _decide_all(
    rt: Runtime, batch: int, limit: int | None = None
) -> tuple[float, int, int, int, float]:
    """Every company's decisions for the day (the first `limit` companies), `batch` companies to
    a `load_days` call (1: one company at a time, as `load_day`); seconds, messages, invoices
    due, SQL statements, and CPU seconds in this process (the machine may be shared)."""
    with rt.sessions() as s:
        companies = s.scalars(select(Company).order_by(Company.id).limit(limit)).all()
        for c in companies:
            s.expunge(c)
    messages = invoices_due = 0
    statements = [0]

    def count(*_args: object) -> None:
        statements[0] += 1

    event.listen(rt.engine, "before_cursor_execute", count)
    t, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(companies), batch):
        # One session per batch, as the daily job runs them.
        with rt.sessions() as s:
            days = [(company, AS_OF) for company in companies[start : start + batch]]
            # As the daily run reads them: four columns of each ledger connection.
            states = ledger_states(s, [company.id for company, _ in days])
            for loaded in load_days(s, rt, days, connections=states):
                messages += len(loaded.day.messages)
                invoices_due += len(loaded.day.due)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    event.remove(rt.engine, "before_cursor_execute", count)
    return seconds, messages, invoices_due, statements[0], cpu


def _decide_both(rt: Runtime, batch: int, runs: int, sample: int) -> dict[str, float | int]:
    """Medians of `runs` runs: every company `batch` at a time, and the first `sample` companies
    one at a time (as many statements each as the whole run would take, in a tenth of the time:
    projected to all the companies)."""
    together = [_decide_all(rt, batch) for _ in range(runs)]
    alone = [_decide_all(rt, 1, sample) for _ in range(runs)]
    companies = len(_company_ids(rt))
    set_s = statistics.median(r[0] for r in together)
    one_s = statistics.median(r[0] for r in alone) * companies / sample
    return {
        f"batches_of_{batch}_seconds": round(set_s, 2),
        f"batches_of_{batch}_statements": together[0][3],
        f"batches_of_{batch}_cpu_seconds": round(statistics.median(r[4] for r in together), 2),
        "one_company_at_a_time_seconds_projected": round(one_s, 1),
        "one_company_at_a_time_statements_per_company": round(alone[0][3] / sample, 1),
        "speedup": round(one_s / set_s, 1),
        "messages": together[0][1],
        "invoices_due": together[0][2],
    }


def _remind_all(rt: Runtime, batch: int) -> tuple[float, int, int, float, int, float, float]:
    """The whole daily reminders run of every company, `batch` companies to a run as the worker
    takes them (`run_reminders_of`: decide, claim, then the links, outbox rows and activity a
    table at a time), then the same run again (it must queue nothing); seconds, outbox rows
    queued and SQL statements of each, and the CPU seconds of each in this process (the
    machine may be shared). Undone afterwards, so the next run finds the same day."""
    with rt.sessions() as s:
        companies = s.scalars(select(Company).order_by(Company.id)).all()
        for c in companies:
            s.expunge(c)
        marks = {t: s.scalar(select(func.coalesce(func.max(t.id), 0))) for t in _WRITTEN}
    figures: list[float | int] = []
    statements = [0]

    def count(*_args: object) -> None:
        statements[0] += 1

    for _ in range(2):
        statements[0] = 0
        event.listen(rt.engine, "before_cursor_execute", count)
        t, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(companies), batch):
            for result in run_reminders_of(rt, companies[start : start + batch]).values():
                assert not isinstance(result, Exception), result
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        event.remove(rt.engine, "before_cursor_execute", count)
        with rt.sessions() as s:
            queued = s.scalar(select(func.count()).where(OutboxMessage.id > marks[OutboxMessage]))
        figures += [seconds, queued or 0, statements[0], cpu]
    _undo(rt, marks)
    first_s, queued, first_n, first_cpu, again_s, again_queued, again_n, again_cpu = figures
    assert again_queued == queued, "a rerun queued more"
    return (
        float(first_s),
        int(queued),
        int(first_n),
        float(again_s),
        int(again_n),
        float(first_cpu),
        float(again_cpu),
    )


_WRITTEN = (OutboxMessage, ReminderSend, PayToken, Activity)


def _undo(rt: Runtime, marks: dict[type, int]) -> None:
    with rt.engine.begin() as c:
        c.execute(
            update(Invoice)
            .where(
                Invoice.id.in_(
                    select(ReminderSend.invoice_id).where(ReminderSend.id > marks[ReminderSend])
                )
            )
            .values(highest_step_claimed=-1)
        )
        for table in _WRITTEN:
            c.execute(delete(table).where(table.id > marks[table]))


def _writes_floor(rt: Runtime, batch: int) -> tuple[float, float]:
    """The floor under a whole run's writes: what one run keeps (its claims, payment links,
    outbox rows and activity, every column as it wrote them, and its invoices' highest step
    claimed) written again by bare statements into the same tables, with their indexes and
    foreign keys: an executemany INSERT a table, an UPDATE a step, in one transaction. Seconds
    and CPU seconds; undone afterwards, as a run is."""
    with rt.sessions() as s:
        marks = {t: s.scalar(select(func.coalesce(func.max(t.id), 0))) for t in _WRITTEN}
        companies = s.scalars(select(Company).order_by(Company.id)).all()
        for c in companies:
            s.expunge(c)
    for start in range(0, len(companies), batch):
        run_reminders_of(rt, companies[start : start + batch])
    kept: dict[type, list[dict]] = {}
    with rt.sessions() as s:
        for model in _WRITTEN:
            columns = [c for c in model.__table__.c if c.name != "id"]
            kept[model] = [
                dict(r._mapping)
                for r in s.execute(
                    select(*columns).where(model.id > marks[model]).order_by(model.id)
                )
            ]
    steps: dict[int, list[int]] = {}
    for claim in kept[ReminderSend]:
        steps.setdefault(claim["step_index"], []).append(claim["invoice_id"])
    _undo(rt, marks)
    t, cpu = time.perf_counter(), time.process_time()
    with rt.engine.begin() as c:
        for step_index, ids in sorted(steps.items()):
            c.execute(
                update(Invoice)
                .where(Invoice.id.in_(ids), Invoice.highest_step_claimed < step_index)
                .values(highest_step_claimed=step_index)
            )
        for model in (ReminderSend, PayToken, OutboxMessage, Activity):
            if kept[model]:
                bare_insert(c, model.__table__, kept[model])
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    _undo(rt, marks)
    return seconds, cpu


def _run_both(rt: Runtime, batch: int, runs: int) -> dict[str, float | int]:
    """Medians of `runs` whole runs (and of the rerun right after each), and of the floor under
    their writes (`_writes_floor`)."""
    done = [_remind_all(rt, batch) for _ in range(runs)]
    floors = [_writes_floor(rt, batch) for _ in range(runs)]
    run_s = statistics.median(r[0] for r in done)
    floor_s = statistics.median(f[0] for f in floors)
    return {
        f"whole_run_batches_of_{batch}_seconds": round(run_s, 2),
        "whole_run_cpu_seconds": round(statistics.median(r[5] for r in done), 2),
        "whole_run_statements": done[0][2],
        "whole_run_outbox_rows": done[0][1],
        "rerun_seconds": round(statistics.median(r[3] for r in done), 2),
        "rerun_statements": done[0][4],
        "rerun_cpu_seconds": round(statistics.median(r[6] for r in done), 2),
        "rerun_outbox_rows": 0,
        # The same rows written by bare statements, every index and foreign key kept: the
        # floor under any run that keeps them (`_writes_floor`).
        "writes_floor_seconds": round(floor_s, 2),
        "writes_floor_cpu_seconds": round(statistics.median(f[1] for f in floors), 2),
        "whole_run_vs_writes_floor_ratio": round(run_s / floor_s, 2),
    }


def _company_ids(rt: Runtime) -> list[int]:
    with rt.sessions() as s:
        return list(s.scalars(select(Company.id)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--invoices", type=int, nargs=2, default=[100_000, 1_000_000])
    parser.add_argument("--due-per-company", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000, help="companies per load_days call")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--sample", type=int, default=500, help="companies timed one at a time (projected)"
    )
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    small, large = args.invoices
    if large % args.companies or small % args.companies or large <= small:
        parser.error("invoice counts must be multiples of --companies, the second larger")
    tmp = scratch_dir("arbridge-bench-")
    rt, url = _setup(args.database_url or f"sqlite:///{tmp / 'bench.db'}", tmp)
    t = time.perf_counter()
    companies, customers = _companies(rt, args.companies)
    _grow(rt, companies, customers, small // args.companies, 0, args.due_per_company)
    print(f"built {small} invoices in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    at_small = _decide_both(rt, args.batch, args.runs, args.sample)
    at_small |= _run_both(rt, args.batch, args.runs)
    t = time.perf_counter()
    _grow(rt, companies, customers, (large - small) // args.companies, small, 0)
    print(f"grew to {large} invoices in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    at_large = _decide_both(rt, args.batch, args.runs, args.sample)
    at_large |= _run_both(rt, args.batch, args.runs)
    assert (at_small["messages"], at_small["invoices_due"]) == (
        at_large["messages"],
        at_large["invoices_due"],
    ), "the due messages must not change"
    key = f"batches_of_{args.batch}_seconds"
    print(
        json.dumps(
            {
                "database": url.split(":")[0],
                "companies": args.companies,
                f"at_{small}_invoices": at_small,
                f"at_{large}_invoices": at_large,
                "growth_ratio": round(at_large[key] / at_small[key], 2),
                "invoice_ratio": large // small,
                "ms_per_company": round(at_large[key] / args.companies * 1000, 3),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            },
            indent=2,
        )
    )
    rt.close()


if __name__ == "__main__":
    main()
