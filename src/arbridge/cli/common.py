"""What every command shares: arbridge's errors as one sentence and an exit status, strict dates,
and the instance's settings and runtime."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from datetime import date
from typing import Any

import click

from arbridge.config import Settings
from arbridge.errors import ArbridgeError

log = logging.getLogger("arbridge")


class Group(click.Group):
    """Turns arbridge's own errors into one line on stderr and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ArbridgeError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # The reader went away (`arbridge report | head`): nothing more to say to it. Point
            # stdout at /dev/null so the interpreter's last flush does not fail again.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(1)
        except Exception:
            # A bug, not bad input: the trace goes to the log, the terminal gets one sentence.
            log.exception("arbridge %s failed", ctx.invoked_subcommand)
            click.echo(
                "Error: arbridge hit an unexpected problem; the log above has the details "
                "(please report it).",
                err=True,
            )
            ctx.exit(2)


class Day(click.ParamType):
    """YYYY-MM-DD in ASCII digits, 1900-01-01 to 2999-12-31 (click.DateTime takes '２０２６'
    and 0001-01-01, from which the reminder arithmetic overflowed: a traceback)."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        from arbridge.inputs import InputError, parse_day

        try:
            return parse_day(str(value))
        except InputError as e:
            self.fail(f"{e}.", param, ctx)


DAY = Day()


class WholeNumber(click.ParamType):
    """A whole number in ASCII digits within [minimum, maximum] (click's INT takes '１２')."""

    name = "N"

    def __init__(self, minimum: int, maximum: int) -> None:
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from arbridge.inputs import InputError, parse_int

        try:
            return parse_int(str(value), minimum=self.minimum, maximum=self.maximum)
        except InputError as e:
            self.fail(f"{e}.", param, ctx)


def load_settings() -> Settings:
    return Settings.from_env()


def open_runtime() -> Any:
    """The instance's runtime, closed (its database pool disposed) when the command ends."""
    from arbridge.runtime import Runtime

    settings = load_settings()
    if settings.log_level_given:  # else only warnings and errors, beside what the command prints
        setup_logging(settings)
    rt = Runtime.open(settings)
    click.get_current_context().call_on_close(rt.close)
    return rt


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not a line per tick
