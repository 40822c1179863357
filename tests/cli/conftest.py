"""Run the `arbridge` command line against an instance of the test's own.

A fresh instance is an empty directory (SQLite, the default database inside it) or, on
PostgreSQL runs, an empty schema of its own, dropped afterwards.

Commands run in this process through Click's CliRunner (tests/cli_runner.py: same environment,
working directory, stdout/stderr and exit status as a process would have), except in tests
marked `@pytest.mark.subprocess`, and through `Instance.in_subprocess`, which run the real
console script: at least one such test per command group keeps the entry point covered.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from arbridge.config import Settings
from arbridge.runtime import Runtime
from arbridge.sync import db
from tests.cli_runner import ARBRIDGE, run_in_process, run_subprocess
from tests.conftest import ON_POSTGRES, PG_URL

__all__ = ["ARBRIDGE", "Instance", "assert_one_sentence_error", "fresh_instance"]

# Set for the duration of a test marked `subprocess` (see `_command_line_mode` below).
_SUBPROCESS_TEST = False


@dataclass
class Instance:
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    subprocess: bool = False  # always run the real console script

    @property
    def path(self) -> Path:
        return self.root / "instance"

    @property
    def secret_file(self) -> Path:
        return self.path / "secret.json"

    def secrets(self) -> dict[str, Any]:
        return json.loads(self.secret_file.read_text())

    def secret_mode(self) -> int:
        return stat.S_IMODE(self.secret_file.stat().st_mode)

    @property
    def in_subprocess(self) -> Instance:
        """The same instance, its commands run by the real console script."""
        return replace(self, subprocess=True)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        # cwd: no stray .env file is read
        if self.subprocess or _SUBPROCESS_TEST:
            return run_subprocess(args, {**self.env, **env}, cwd=self.root)
        return run_in_process(args, {**self.env, **env}, cwd=self.root)

    def ok(self, *args: str, **env: str) -> str:
        result = self.run(*args, **env)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        return result.stdout

    def settings(self, **env: str) -> Settings:
        return Settings.from_env({**self.env, **env}, dotenv=False)

    @contextmanager
    def runtime(self, **env: str) -> Iterator[Runtime]:
        rt = Runtime.open(self.settings(**env))
        try:
            yield rt
        finally:
            rt.close()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ARBRIDGE_")}


@contextmanager
def fresh_instance(root: Path) -> Iterator[Instance]:
    root.mkdir(parents=True, exist_ok=True)
    env = clean_env()
    env["ARBRIDGE_INSTANCE_PATH"] = str(root / "instance")
    if not ON_POSTGRES:
        yield Instance(root, env)
        return
    schema = f"arbridge_cli_{uuid.uuid4().hex[:16]}"
    admin = db.make_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        sep = "&" if "?" in PG_URL else "?"
        env["ARBRIDGE_DATABASE_URL"] = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
        yield Instance(root, env)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(autouse=True)
def _command_line_mode(request: pytest.FixtureRequest) -> Iterator[None]:
    global _SUBPROCESS_TEST
    _SUBPROCESS_TEST = request.node.get_closest_marker("subprocess") is not None
    try:
        yield
    finally:
        _SUBPROCESS_TEST = False


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Instance]:
    """An instance nobody has initialised: no secret file, an empty database."""
    with fresh_instance(tmp_path / "fresh") as instance:
        yield instance


def assert_one_sentence_error(result: subprocess.CompletedProcess[str], *says: str) -> str:
    """A non-zero exit with one line on stderr, `Error: ...`, and no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert result.stdout == "", output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: "), output
    for words in says:
        assert words in lines[0], output
    return lines[0]
