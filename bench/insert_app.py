"""The second floor for bench_webhook_ingest: the same server storing each body durably, with no
framework and no verification: one prepared INSERT in autocommit per request through psycopg
(a commit PostgreSQL flushes to disk before it answers, as for any receiver that acknowledges
only what it stored). What is left between this and an empty 200 is the database's."""

import os
import threading

import psycopg

_local = threading.local()


def app(environ, start_response):
    conn = getattr(_local, "conn", None)
    if conn is None:  # one connection per worker thread, made on its first request
        conn = _local.conn = psycopg.connect(os.environ["BENCH_FLOOR_CONNINFO"], autocommit=True)
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    conn.execute("INSERT INTO bench_floor (body) VALUES (%s)", (body.decode(),), prepare=True)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]
