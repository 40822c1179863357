"""A PostgreSQL schema and a directory of a benchmark's own, removed when the benchmark ends
(issue 14: a benchmark leaves nothing behind, on the server it ran against or on disk: a
1M-invoice SQLite build and its demo ledger are gigabytes)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import text

from arbridge.sync import db


def _run(url: str, *statements: str) -> None:
    engine = db.make_engine(url)
    with engine.begin() as c:
        for statement in statements:
            c.execute(text(statement))
    engine.dispose()


def scratch_schema(url: str, name: str) -> str:
    """Create schema `name` afresh on `url`'s server and return `url` working in it; the schema
    is dropped when the process exits, after a failure too."""
    _run(url, f"DROP SCHEMA IF EXISTS {name} CASCADE", f"CREATE SCHEMA {name}")
    atexit.register(_run, url, f"DROP SCHEMA IF EXISTS {name} CASCADE")
    return url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{name}"


def scratch_dir(prefix: str) -> Path:
    """A new temporary directory, removed with everything in it when the process exits, after a
    failure too."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
