"""Shared fixtures: a fresh database per test (SQLite, or PostgreSQL when ARBRIDGE_DATABASE_URL
names one), a fixed clock, a runtime, the demo company, the Flask app and its test client.

Each test process migrates once and builds the demo company once; tests get copies
(tests/database.py says how, and when a test gets the slow way instead)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import Engine, select, text

from arbridge.clock import FixedClock
from arbridge.config import Settings
from arbridge.crypto import new_key
from arbridge.runtime import Runtime
from arbridge.sync import db
from arbridge.sync.model import Company
from tests.database import (
    DemoSnapshot,
    copy_sqlite,
    demo_snapshot_fits,
    empty_postgres,
    migrate_sqlite_template,
    restore_demo,
)

PG_URL = os.environ.get("ARBRIDGE_DATABASE_URL", "")
ON_POSTGRES = PG_URL.startswith("postgresql")
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 09:00 in America/Chicago
# One key per test process (a fresh random key, like each test had): the demo snapshot's
# encrypted rows must be readable by every test that copies them.
ENCRYPTION_KEYS = (new_key(),)


def _pg_schema_url(worker: str, suffix: str = "") -> tuple[str, str]:
    """Each test process (and pytest-xdist worker) gets its own schema in the shared database."""
    schema = f"arbridge_test_{re.sub(r'[^a-z0-9]', '', worker.lower()) or 'main'}_{os.getpid()}"
    schema += suffix
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}", schema


@contextmanager
def _pg_schema(suffix: str = "") -> Iterator[tuple[str, str]]:
    """A migrated schema of this test process's own, dropped at the end."""
    url, schema = _pg_schema_url(os.environ.get("PYTEST_XDIST_WORKER", "main"), suffix)
    admin = db.make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    try:
        yield url, schema
    finally:
        admin = db.make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def short_template_time_limit(monkeypatch: pytest.MonkeyPatch) -> float:
    """A runaway reminder template is stopped after a quarter second instead of the real two:
    the same stop, the same sentence, without burning the limit in full."""
    from arbridge.collections import templates

    monkeypatch.setattr(templates, "TIME_LIMIT", 0.25)
    return templates.TIME_LIMIT


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    if not ON_POSTGRES:
        yield None
        return
    with _pg_schema() as (url, _schema):
        yield url


@pytest.fixture(scope="session")
def pg_emptier(pg_url: str | None) -> Iterator[Engine | None]:
    """One engine for the whole run that empties the schema before each test: a new engine a
    test cost a PostgreSQL connection each time (about 20 ms of a test's 30 ms of setup)."""
    if pg_url is None:
        yield None
        return
    engine = db.make_engine(pg_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A SQLite file migrated to head once per test process; each test gets a copy."""
    if ON_POSTGRES:
        return None
    return migrate_sqlite_template(tmp_path_factory.mktemp("migrated") / "arbridge.db")


@pytest.fixture
def database_url(
    tmp_path: Path,
    pg_url: str | None,
    pg_emptier: Engine | None,
    migrated_sqlite: Path | None,
) -> Iterator[str]:
    if pg_url is None:
        assert migrated_sqlite is not None
        path = tmp_path / "instance" / "arbridge.db"
        copy_sqlite(migrated_sqlite, path)
        yield f"sqlite:///{path}"
        return
    assert pg_emptier is not None
    empty_postgres(pg_emptier)
    yield pg_url


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def _settings(root: Path, database_url: str) -> Settings:
    return Settings(
        instance_path=root / "instance",
        database_url=database_url,
        base_url="http://127.0.0.1:5000",
        secret_key="test-secret-key-" + "x" * 32,
        encryption_keys=ENCRYPTION_KEYS,
    )


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return _settings(tmp_path, database_url)


@pytest.fixture
def rt(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    runtime = Runtime.open(settings, clock)
    yield runtime
    runtime.close()


def sync_now(rt: Runtime, conn, full: bool = False):
    from arbridge.sync.runner import sync_connection

    return sync_connection(rt.sessions, conn.id, rt.connector_for(conn), rt.clock, full=full)


def build_demo(rt: Runtime):
    """The demo company the way `arbridge demo` makes it: generate the ledger, sync it."""
    from arbridge import demo

    company, _link = demo.prepare(
        rt, sync=lambda conn, full: sync_now(rt, conn, full), echo=lambda _m: None
    )
    return company


@pytest.fixture(scope="session")
def demo_snapshot(
    tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path | None
) -> Iterator[DemoSnapshot]:
    """The demo company, built once per test process in a database of its own."""
    root = tmp_path_factory.mktemp("demo-snapshot")
    with ExitStack() as stack:
        if migrated_sqlite is not None:
            path = root / "instance" / "arbridge.db"
            copy_sqlite(migrated_sqlite, path)
            url, schema = f"sqlite:///{path}", None
        else:
            (root / "instance").mkdir()
            url, schema = stack.enter_context(_pg_schema("_demo"))
        settings = _settings(root, url)
        rt = Runtime.open(settings, FixedClock(NOW))
        try:
            company = build_demo(rt)
        finally:
            rt.close()
        yield DemoSnapshot(
            instance_path=settings.instance_path,
            database_url=url,
            schema=schema,
            slug=company.slug,
            now=NOW,
            encryption_keys=settings.encryption_keys,
            login_link_minutes=settings.login_link_minutes,
        )


@pytest.fixture
def demo_company(request: pytest.FixtureRequest, rt: Runtime):
    """The demo company (40 customers, 300 invoices), synced from its simulated ledger.

    A copy of this process's demo snapshot when the test's database and clock are where the
    snapshot started; otherwise built here, the same way."""
    snapshot: DemoSnapshot = request.getfixturevalue("demo_snapshot")
    if not demo_snapshot_fits(snapshot, rt):
        return build_demo(rt)
    restore_demo(snapshot, rt)
    with rt.sessions() as s:
        company = s.scalars(select(Company).where(Company.slug == snapshot.slug)).one()
        s.expunge(company)
    return company


# Flask apps built in this test process, by what create_app reads of the settings.
_APPS: dict[str, Flask] = {}


def _app_key(settings: Settings) -> str:
    """The settings without what differs from test to test (the instance folder, the database);
    apps built from equal keys are alike, whichever test's runtime they serve."""
    return repr(replace(settings, instance_path=Path("/instance"), database_url="-"))


@pytest.fixture
def app(rt: Runtime) -> Iterator[Flask]:
    """The app for this test's runtime: views find the runtime in app.extensions, so one app per
    settings serves every test of the process (building one compiles every route, ~0.1 s).
    A test that adds routes gets its own app from create_app."""
    from arbridge.web import create_app

    key = _app_key(rt.settings)
    app = _APPS.get(key)
    if app is None:
        app = _APPS[key] = create_app(rt, TESTING=True)
    app.extensions["arbridge"] = rt
    routes, config = len(app.url_map._rules), dict(app.config)
    yield app
    app.extensions["arbridge"] = None
    if len(app.url_map._rules) != routes or dict(app.config) != config:
        del _APPS[key]  # changed by the test: the next one gets a new app


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
