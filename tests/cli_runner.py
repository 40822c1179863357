"""Run the `arbridge` command line two ways, with one result type.

`run_in_process` calls the Click group through Click's `CliRunner`: no interpreter start-up and
no re-import of arbridge, so it costs milliseconds instead of a second or more. It reproduces what
a shell would see from a fresh process: the same environment (and nothing else of ours), the same
working directory, stdout and stderr apart, the exit status, a traceback on stderr for an
exception that escapes (as Python prints one), and logging as a fresh interpreter has it (no
handlers: warnings and errors reach stderr; `basicConfig` in a command takes effect).

`run_subprocess` runs the real console script: the entry point, the exit status as the shell sees
it. Each command group keeps at least one test that way (`@pytest.mark.subprocess`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from click.testing import CliRunner

ARBRIDGE = str(Path(sys.executable).with_name("arbridge"))


def run_subprocess(
    args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ARBRIDGE, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def _logging_of_a_fresh_process() -> Iterator[None]:
    """No root handlers (pytest's included) while the command runs, then everything as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    root.handlers = []
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers = handlers
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


def run_in_process(
    args: Sequence[str], env: Mapping[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    from arbridge.cli import main

    # The child process would see exactly `env`: unset what this process has beyond it.
    patch: dict[str, str | None] = {k: None for k in os.environ if k not in env}
    patch.update(env)
    runner = CliRunner(env=patch)
    with contextlib.chdir(cwd), _logging_of_a_fresh_process():
        result = runner.invoke(main, list(args), prog_name="arbridge")
    stderr = result.stderr
    if result.exc_info is not None and not isinstance(result.exc_info[1], SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    # A command may leave its runtime's database pool to the garbage collector (the process
    # would have ended): collect it now, quietly, rather than in some later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()
    return subprocess.CompletedProcess(
        [ARBRIDGE, *args], result.exit_code, stdout=result.stdout, stderr=stderr
    )
