"""Shared fixtures: a fresh database per test (SQLite, or PostgreSQL when ARBRIDGE_DATABASE_URL
names one), a fixed clock, a runtime, the demo company, the Flask app and its test client."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from arbridge.clock import FixedClock
from arbridge.config import Settings
from arbridge.crypto import new_key
from arbridge.runtime import Runtime
from arbridge.sync import db
from arbridge.sync.model import Base

PG_URL = os.environ.get("ARBRIDGE_DATABASE_URL", "")
ON_POSTGRES = PG_URL.startswith("postgresql")
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 09:00 in America/Chicago


def _pg_schema_url(worker: str) -> tuple[str, str]:
    """Each test process (and pytest-xdist worker) gets its own schema in the shared database."""
    schema = f"arbridge_test_{re.sub(r'[^a-z0-9]', '', worker.lower()) or 'main'}_{os.getpid()}"
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}", schema


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    if not ON_POSTGRES:
        yield None
        return
    url, schema = _pg_schema_url(os.environ.get("PYTEST_XDIST_WORKER", "main"))
    admin = db.make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    yield url
    admin = db.make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def database_url(tmp_path: Path, pg_url: str | None) -> Iterator[str]:
    if pg_url is None:
        url = f"sqlite:///{tmp_path / 'instance' / 'arbridge.db'}"
        (tmp_path / "instance").mkdir(exist_ok=True)
        engine = db.make_engine(url)
        db.upgrade(engine)
        engine.dispose()
        yield url
        return
    engine = db.make_engine(pg_url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield pg_url


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        instance_path=tmp_path / "instance",
        database_url=database_url,
        base_url="http://127.0.0.1:5000",
        secret_key="test-secret-key-" + "x" * 32,
        encryption_keys=(new_key(),),
    )


@pytest.fixture
def rt(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    runtime = Runtime.open(settings, clock)
    yield runtime
    runtime.close()


def sync_now(rt: Runtime, conn, full: bool = False):
    from arbridge.sync.runner import sync_connection

    return sync_connection(rt.sessions, conn.id, rt.connector_for(conn), rt.clock, full=full)


@pytest.fixture
def demo_company(rt: Runtime):
    from arbridge import demo

    company, _link = demo.prepare(
        rt, sync=lambda conn, full: sync_now(rt, conn, full), echo=lambda _m: None
    )
    return company


@pytest.fixture
def app(rt: Runtime):
    from arbridge.web import create_app

    app = create_app(rt, TESTING=True)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def env_for_subprocess(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a CLI subprocess needs to reach the same instance as the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARBRIDGE_")}
    env.update(
        ARBRIDGE_INSTANCE_PATH=str(settings.instance_path),
        ARBRIDGE_DATABASE_URL=settings.database_url,
        ARBRIDGE_SECRET_KEY=settings.secret_key or "",
        ARBRIDGE_ENCRYPTION_KEYS=",".join(settings.encryption_keys),
        **extra,
    )
    return env
