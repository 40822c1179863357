"""Stripe webhook ingest on PostgreSQL behind gunicorn, driven from other processes on loopback.

    .venv/bin/pip install gunicorn==27.0.1
    .venv/bin/python bench/bench_webhook_ingest.py [--events 4000] [--clients 4] [--workers 2]

Each delivery is a distinct, correctly signed Stripe event: the server verifies the signature over
the raw body, stores the delivery and the event once (unique event id) and answers 200. The
baseline is the same gunicorn answering an empty 200 without reading anything. Reported: stored
events per second and p50/p99 latency for both, and their ratios.

A second floor, `insert_200`, is the same gunicorn storing each body with one prepared INSERT in
autocommit and nothing else (bench/insert_app.py): every acknowledged delivery waits for
PostgreSQL to flush its commit to disk, so that floor is the most a durable receiver can do on
this machine's disk, and `throughput_ratio_vs_insert` says how much of it arbridge reaches.

CPU per request (Linux /proc): `server_cpu_ms` of gunicorn's processes (master and workers) and
`postgres_cpu_ms` of every PostgreSQL process (other work on the server counts too), over the
timed run only; with the load average at the end of each run, as the wall figures are noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from arbridge.crypto import create_secret_file
from arbridge.sync import db
from scratch import scratch_dir

ROOT = Path(__file__).resolve().parent.parent
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCHEMA = "arbridge_bench_hooks"
SECRET = "whsec_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body_and_header(n: int, worker: int) -> tuple[bytes, str]:
    event = {
        "id": f"evt_bench_{worker}_{n}",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "livemode": False,
        "api_version": "2026-10-28.endive",
        "data": {
            "object": {
                "id": f"cs_bench_{worker}_{n}",
                "object": "checkout.session",
                "payment_intent": f"pi_bench_{worker}_{n}",
                "amount_total": 12345,
                "currency": "usd",
                "payment_status": "paid",
                "status": "complete",
                "metadata": {},
            }
        },
    }
    body = json.dumps(event).encode()
    t = int(time.time())
    sig = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={t},v1={sig}"


def client(args: tuple[int, int, int, str]) -> list[float]:
    port, worker, count, path = args
    latencies = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for n in range(count):
        body, header = body_and_header(n, worker)
        start = time.perf_counter()
        conn.request(
            "POST", path, body, {"Stripe-Signature": header, "Content-Type": "application/json"}
        )
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status}")
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    return latencies


def serve(
    app: str, port: int, workers: int, threads: int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            app,
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
            *(["--threads", str(threads)] if threads > 1 else []),
            "--log-level",
            "warning",
            "--chdir",
            str(ROOT / "bench") if app.startswith(("empty", "insert")) else str(ROOT),
        ],
        env=env,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit("gunicorn did not start")


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU of each of these processes so far (one gone is left out)."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # ticks
    return found


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """What the processes alive at the end spent since `before` (one started since: all of it;
    one that ended meanwhile is not counted)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def family(pid: int) -> list[int]:
    """A process and its children (gunicorn's master and workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *map(int, children)]


def postgres_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def run(port: int, path: str, events: int, clients: int) -> tuple[float, list[float]]:
    per = events // clients
    start = time.perf_counter()
    with multiprocessing.Pool(clients) as pool:
        results = pool.map(client, [(port, w, per, path) for w in range(clients)])
    elapsed = time.perf_counter() - start
    return elapsed, [x for r in results for x in r]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    admin = db.make_engine(PG)
    with admin.begin() as c:
        c.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        c.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    url = f"{PG}?options=-csearch_path%3D{SCHEMA}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    instance = scratch_dir("arbridge-bench-hooks-")
    create_secret_file(instance)
    env = {
        **os.environ,
        "ARBRIDGE_DATABASE_URL": url,
        "ARBRIDGE_INSTANCE_PATH": str(instance),
        "ARBRIDGE_STRIPE_WEBHOOK_SECRET": SECRET,
        "ARBRIDGE_STRIPE_SECRET_KEY": "sk_test_bench",
        "ARBRIDGE_LOG_LEVEL": "WARNING",
    }
    from arbridge.config import Settings
    from arbridge.runtime import Runtime

    Runtime.open(Settings.from_env(env, dotenv=False)).close()  # writes the key check row
    with engine.begin() as c:
        c.execute(text("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, body text NOT NULL)"))
    env["BENCH_FLOOR_CONNINFO"] = url.replace("postgresql+psycopg://", "postgresql://")

    results = {}
    for name, app, path in (
        ("empty_200", "empty_app:app", "/"),
        ("insert_200", "insert_app:app", "/"),
        ("arbridge", "arbridge.web.wsgi:app", "/webhooks/stripe"),
    ):
        port = free_port()
        proc = serve(app, port, args.workers, args.threads, env)
        try:
            run(port, path, args.clients * 20, args.clients)  # warm up
            server = family(proc.pid)
            server_before, pg_before = cpu_seconds(server), cpu_seconds(postgres_pids())
            elapsed, lat = run(port, path, args.events, args.clients)
            server_cpu = cpu_since(server_before, cpu_seconds(server))
            pg_cpu = cpu_since(pg_before, cpu_seconds(postgres_pids()))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        lat.sort()
        results[name] = {
            "requests_per_second": round(len(lat) / elapsed),
            "p50_ms": round(statistics.median(lat) * 1000, 2),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2),
            "server_cpu_ms": round(server_cpu / len(lat) * 1000, 3),
            "postgres_cpu_ms": round(pg_cpu / len(lat) * 1000, 3),
            "load_average": round(os.getloadavg()[0], 2),
        }
    with engine.connect() as c:
        stored = c.execute(text("SELECT count(*) FROM webhook_events")).scalar()
    results["stored_events"] = stored
    results["throughput_ratio_vs_empty"] = round(
        results["arbridge"]["requests_per_second"] / results["empty_200"]["requests_per_second"], 3
    )
    results["throughput_ratio_vs_insert"] = round(
        results["arbridge"]["requests_per_second"] / results["insert_200"]["requests_per_second"], 3
    )
    results["p99_ratio_vs_empty"] = round(
        results["arbridge"]["p99_ms"] / results["empty_200"]["p99_ms"], 1
    )
    print(json.dumps(results, indent=2))
    engine.dispose()
    with admin.begin() as c:
        c.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))


if __name__ == "__main__":
    main()
