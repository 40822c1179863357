"""What one worker sends: the demo company's messages over simulated days, through real SMTP.

    .venv/bin/python bench/bench_send.py [--days 60] [--database-url URL]

The daily run decides which messages go (bench_reminders times that); each message is then
prepared, checked again, rendered (a statement or a final-notice letter as a PDF with its QR
code), handed to the mail server and recorded, by the worker draining the outbox. This builds
the demo company (40 customers, 300 invoices, the default policy) in a scratch instance whose
mail goes to an aiosmtpd server in a process of its own (it keeps every message's bytes),
then runs the worker's day `--days` times: the clock a day on, the due company jobs, then the
outbox drained, the drain alone timed (wall and this process's CPU, each message's handler
timed by the kind of mail it carries).

The floor, in the same run: every message the server kept, sent again as the same bytes with
plain smtplib over one connection (as the worker sends a round of emails) to the same server.
The ratio is the worker's emails against that floor: what preparing, rendering and recording a
message costs above putting its bytes on the wire.
"""

from __future__ import annotations

import argparse
import json
import smtplib
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from arbridge import demo
from arbridge.clock import FixedClock
from arbridge.config import Settings
from arbridge.crypto import new_key
from arbridge.runtime import Runtime
from arbridge.services.bootstrap import outbox_handlers
from arbridge.services.payments.plan_runs import run_due_plans
from arbridge.services.payments.simulated import settle_simulated_payments
from arbridge.sync import db
from arbridge.sync.model import OutboxMessage
from arbridge.sync.outbox import Handler, deliver
from arbridge.sync.runner import sync_connection
from arbridge.worker import JOBS, claim_and_run, claim_and_run_collections
from scratch import scratch_dir, scratch_schema

START = datetime(2026, 11, 24, 15, tzinfo=UTC)  # 09:00 in the demo's America/Chicago


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _smtp_server(kept: Path, port: int) -> subprocess.Popen[bytes]:
    """aiosmtpd in a process of its own, keeping each message's bytes in `kept`."""
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("smtp_keep.py")), str(port), str(kept)]
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the SMTP server did not start")


def _runtime(url: str, tmp: Path, smtp_port: int) -> tuple[Runtime, str]:
    if url.startswith("postgresql"):
        url = scratch_schema(url, "arbridge_bench_send")
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    settings = Settings(
        instance_path=tmp / "instance",
        database_url=url,
        base_url="http://127.0.0.1:5000",
        secret_key="x" * 40,
        encryption_keys=(new_key(),),
        smtp_url=f"smtp://127.0.0.1:{smtp_port}",
    )
    return Runtime.open(settings, FixedClock(START)), url


def _timed(
    handlers: dict[str, Handler], spent: dict[str, list[tuple[float, float]]]
) -> dict[str, Handler]:
    """The handlers, each send timed (wall, and CPU of this process) under its row's kind and
    the kind of mail it carries ("email reminder", "sms sms_reminder", "owner_digest ...")."""

    def wrap(kind: str, handler: Handler) -> Handler:
        def send(row: OutboxMessage) -> str | None:
            mail = f"{kind} {(row.payload or {}).get('mail') or '-'}"
            t, cpu = time.perf_counter(), time.process_time()
            try:
                return handler.send(row)
            finally:
                spent[mail].append((time.perf_counter() - t, time.process_time() - cpu))

        return replace(handler, send=send)

    return {kind: wrap(kind, h) for kind, h in handlers.items()}


def _day(rt: Runtime, handlers: dict[str, Handler]) -> tuple[float, float, int]:
    """One worker day: due company jobs, the inbox and plans, then the outbox drain (timed)."""
    for job in JOBS:
        if job == "collections":
            while claim_and_run_collections(rt, "bench"):
                pass
        else:
            while claim_and_run(rt, job, "bench"):
                pass
    # The simulated bank payments and the plans' charges first (they queue messages too), as
    # the worker's drain does; then the outbox alone, timed.
    settle_simulated_payments(rt)
    run_due_plans(rt)
    t, cpu = time.perf_counter(), time.process_time()
    sent = 0
    while n := deliver(rt.sessions, rt.clock, handlers, limit=1000):
        sent += n
    return time.perf_counter() - t, time.process_time() - cpu, sent


def _floor(kept: Path, port: int) -> tuple[float, int, int]:
    """Every kept message sent again as its bytes over one connection (as the worker sends a
    round of emails): seconds, count, bytes."""
    messages = [tuple(path.read_bytes().split(b"\n", 1)) for path in sorted(kept.glob("*.eml"))]
    t = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for to, data in messages:
            client.sendmail("bench@bench.example", [to.decode()], data)
    return time.perf_counter() - t, len(messages), sum(len(data) for _to, data in messages)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    tmp = scratch_dir("arbridge-bench-send-")
    port = _free_port()
    server = _smtp_server(tmp / "kept", port)
    try:
        rt, url = _runtime(args.database_url or f"sqlite:///{tmp / 'bench.db'}", tmp, port)
        company, _link = demo.prepare(
            rt,
            sync=lambda conn, full: sync_connection(
                rt.sessions, conn.id, rt.connector_for(conn), rt.clock, full=full
            ),
            echo=lambda _m: None,
        )
        spent: dict[str, list[tuple[float, float]]] = defaultdict(list)
        handlers = _timed(dict(outbox_handlers(rt)), spent)
        wall = cpu = 0.0
        sent = 0
        assert isinstance(rt.clock, FixedClock)
        for _ in range(args.days):
            rt.clock.advance(timedelta(days=1))
            w, c, n = _day(rt, handlers)
            wall, cpu, sent = wall + w, cpu + c, sent + n
        with rt.sessions() as s:
            statuses = Counter(
                s.scalars(
                    select(OutboxMessage.status).where(OutboxMessage.company_id == company.id)
                )
            )
        rt.close()
        floor_s, floor_n, floor_bytes = _floor(tmp / "kept", port)
    finally:
        server.terminate()
        server.wait(timeout=10)
    # The rows that went out by SMTP, against the same bytes sent again by plain smtplib.
    by_smtp = sum(wall for kind, v in spent.items() if kind.startswith("email ") for wall, _ in v)
    print(
        json.dumps(
            {
                "database": url.split(":")[0],
                "days": args.days,
                "sent": sent,
                "outbox_statuses": dict(statuses),
                "drain_seconds": round(wall, 2),
                "drain_cpu_seconds": round(cpu, 2),
                "ms_per_message": round(wall / max(sent, 1) * 1000, 1),
                "cpu_ms_by_kind": {
                    kind: {
                        "messages": len(v),
                        "median_ms": round(statistics.median(c for _, c in v) * 1000, 1),
                        "max_ms": round(max(c for _, c in v) * 1000, 1),
                    }
                    for kind, v in sorted(spent.items())
                },
                "messages_per_hour_one_worker": round(sent / wall * 3600) if wall else None,
                "floor_smtp_resend_seconds": round(floor_s, 3),
                "floor_messages": floor_n,
                "floor_mb": round(floor_bytes / 1e6, 1),
                "emails_seconds": round(by_smtp, 2),
                "emails_ratio_to_floor": round(by_smtp / floor_s, 1) if floor_s else None,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
