"""Two workers against one PostgreSQL: the daily collections jobs split without overlap.

    .venv/bin/python bench/bench_two_workers.py [--companies 200] [--runs 3]
        [--batch 50] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Builds 2 x `--companies` companies straight through SQL (as bench_reminders.py: ten customers
each, two invoices due for a reminder today, a demo ledger connection synced just now) with their
daily collections job due. One worker process then runs the first half's jobs as the worker's
tick does (`claim_and_run_collections`, `--batch` jobs at a time until none is due: aging
snapshot, plans, late fees, credit limits per company, the batch's reminders as one run), and two
worker processes run the second half's side by side, each claiming batches with SELECT ... FOR
UPDATE SKIP LOCKED (the worker takes up to 200; a smaller batch here lets two workers share
`--companies` of them). Checked: every job ran exactly once (`runs` = 1), no company by both workers, every
company's reminders claimed once. Reported as JSON: seconds for one worker and for two, the
speedup (two workers on two cores share them with the database server, so it stays under 2),
the split, and the machine's cores and load. `--runs` builds and runs again; medians. Works in a
schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import func, select, text, update

from arbridge.clock import FixedClock
from arbridge.config import Settings
from arbridge.crypto import new_key
from arbridge.runtime import Runtime
from arbridge.sync import db
from arbridge.sync.model import CompanyJob, ReminderSend
from arbridge.worker import claim_and_run_collections
from bench_reminders import AS_OF, NOW, _companies, _grow, _insert
from scratch import scratch_dir, scratch_schema

SCHEMA = "arbridge_bench_workers"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _runtime(url: str, tmp: Path, key: str) -> Runtime:
    settings = Settings(
        instance_path=tmp, database_url=url, secret_key="x" * 40, encryption_keys=(key,)
    )
    return Runtime.open(settings, FixedClock(NOW))


def _build(rt: Runtime, n: int, first: int) -> list[int]:
    companies, customers = _companies(rt, n, first)
    _grow(rt, companies, customers, 20, 0, 2)
    # Each on a demo ledger synced just now (bench_reminders' _companies).
    _insert(
        rt,
        CompanyJob,
        (
            {"company_id": cid, "job": "collections", "next_run_at": NOW, "paused": True}
            for cid in companies
        ),
    )
    return companies


def _work(args: tuple[str, str, str, str, int]) -> tuple[str, list[int], float, float]:
    """One worker process: claim and run due collections jobs until none is left; returns the
    companies it ran and when it started and stopped (wall clock: the phase is from the first
    start to the last stop, leaving out the processes' own start-up)."""
    url, tmp, key, name, batch = args
    rt = _runtime(url, Path(tmp), key)
    started = time.time()
    while claim_and_run_collections(rt, name, batch):
        pass
    stopped = time.time()
    with rt.sessions() as s:
        ran = list(s.scalars(select(CompanyJob.company_id).where(CompanyJob.last_worker == name)))
    rt.close()
    return name, ran, started, stopped


def _run(
    rt: Runtime, url: str, tmp: Path, key: str, companies: list[int], workers: int, batch: int
):
    with rt.engine.begin() as c:
        c.execute(
            update(CompanyJob).where(CompanyJob.company_id.in_(companies)).values(paused=False)
        )
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        done = pool.map(
            _work, [(url, str(tmp), key, f"w{workers}-{i}", batch) for i in range(workers)]
        )
    seconds = max(d[3] for d in done) - min(d[2] for d in done)
    with rt.engine.begin() as c:
        c.execute(update(CompanyJob).values(paused=True))
    ran = [cid for d in done for cid in d[1]]
    assert sorted(ran) == sorted(companies), "every company's job ran, by exactly one worker"
    with rt.sessions() as s:
        runs = set(s.scalars(select(CompanyJob.runs).where(CompanyJob.company_id.in_(companies))))
        errors = s.scalar(
            select(func.count()).where(
                CompanyJob.company_id.in_(companies), CompanyJob.last_error.is_not(None)
            )
        )
        claims = s.scalar(
            select(func.count()).where(
                ReminderSend.company_id.in_(companies), ReminderSend.run_on == AS_OF
            )
        )
    assert runs == {1}, f"a job ran more than once or not at all: {runs}"
    assert errors == 0, f"{errors} job(s) failed"
    assert claims == 2 * len(companies), f"each company's two reminders claimed once: {claims}"
    return seconds, [len(d[1]) for d in done], [round(d[3] - d[2], 2) for d in done]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--companies", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--database-url", default=PG)
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql"):
        parser.error("two workers need PostgreSQL's row locks (SQLite runs a single worker)")
    url = scratch_schema(args.database_url, SCHEMA)
    engine = db.make_engine(url)
    one, two, splits = [], [], []
    for _ in range(args.runs):
        with engine.begin() as c:
            c.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            c.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        db.upgrade(engine)
        tmp, key = scratch_dir("arbridge-bench-workers-"), new_key()
        rt = _runtime(url, tmp, key)
        first = _build(rt, args.companies, 0)
        second = _build(rt, args.companies, args.companies)
        one_s, _split, _ = _run(rt, url, tmp, key, first, 1, args.batch)
        two_s, split, each = _run(rt, url, tmp, key, second, 2, args.batch)
        rt.close()
        one.append(one_s)
        two.append(two_s)
        splits.append({"companies_per_worker": split, "seconds_per_worker": each})
        print(f"one worker {one_s:.1f}s, two {two_s:.1f}s, split {split}", file=sys.stderr)
    engine.dispose()
    print(
        json.dumps(
            {
                "database": "postgresql",
                "companies_per_phase": args.companies,
                "batch": args.batch,
                "one_worker_seconds": round(statistics.median(one), 2),
                "two_workers_seconds": round(statistics.median(two), 2),
                "speedup": round(statistics.median(one) / statistics.median(two), 2),
                "one_worker_companies_per_hour": round(
                    args.companies / statistics.median(one) * 3600
                ),
                "overlap": 0,
                "runs": splits,
                "cpu_count": os.cpu_count(),
                "load_average": [round(x, 1) for x in os.getloadavg()],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
