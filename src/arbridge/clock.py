"""Time comes from a Clock passed in; nothing else in arbridge calls now()."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo, available_timezones


@cache
def timezone_names() -> frozenset[str]:
    """Every IANA timezone this machine knows. `zoneinfo.available_timezones` walks the zone
    files on each call (some 600 of them: half of the settings page's time); they do not change
    while the process runs (a new tzdata needs a restart to be read anyway)."""
    return frozenset(available_timezones())


@cache
def place_timezones() -> tuple[str, ...]:
    """The zones named after a place ("America/Chicago", not "EST5EDT"), sorted: the lists an
    owner picks from."""
    return tuple(sorted(tz for tz in timezone_names() if "/" in tz))


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant as an aware UTC datetime."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FixedClock:
    """A clock for tests and simulations: it moves only when told to."""

    at: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self.at = self.at.astimezone(UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


def local_date(instant: datetime, timezone: str) -> date:
    """The calendar date at `instant` in the business's own timezone."""
    if instant.tzinfo is None:
        raise ValueError("local_date needs an aware datetime")
    return instant.astimezone(ZoneInfo(timezone)).date()


def utc(instant: datetime) -> datetime:
    """Normalise an aware datetime to UTC; SQLite hands back naive UTC values, so accept those."""
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


DEMO_CLOCK_FILE = "demo-clock.json"


class DemoClock:
    """The demo's clock: the system clock moved forward by an offset kept in a file of the
    instance (`arbridge clock advance`), so the server, the worker, the simulated Stripe and the
    demo ledger all read the same time, and a move made by one process is seen by the others
    (the file is read again whenever it changes). Only a demo instance has the file."""

    def __init__(self, path: Path, base: Clock | None = None) -> None:
        self.path = path
        self.base = base or SystemClock()
        self._seen: tuple[float, int] | None = None
        self._offset = timedelta(0)

    @classmethod
    def start(cls, path: Path) -> DemoClock:
        """Make the file (offset zero) unless it is there."""
        if not path.exists():
            path.write_text(json.dumps({"offset_seconds": 0}) + "\n")
        return cls(path)

    @property
    def offset(self) -> timedelta:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return timedelta(0)
        stamp = (st.st_mtime, st.st_size)
        if stamp != self._seen:
            try:
                seconds = int(json.loads(self.path.read_text())["offset_seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                seconds = int(self._offset.total_seconds())  # a half-written file: keep the last
            self._offset, self._seen = timedelta(seconds=max(seconds, 0)), stamp
        return self._offset

    def now(self) -> datetime:
        return self.base.now() + self.offset

    def advance(self, delta: timedelta) -> timedelta:
        """Move the clock forward (never back: what happened stays in the past); returns the
        new offset."""
        if delta < timedelta(0):
            raise ValueError("the demo clock only moves forward")
        offset = self.offset + delta
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"offset_seconds": int(offset.total_seconds())}) + "\n")
        os.replace(tmp, self.path)
        return offset


def local_text(instant: datetime, timezone: str) -> str:
    """'Nov 29, 2026, 18:12 CST': the moment in the business's timezone, the zone named (a zone
    without an abbreviation, such as Asia/Dubai's "+04", reads "UTC+04")."""
    local = utc(instant).astimezone(ZoneInfo(timezone))
    return f"{day_text(local.date())}, {_hour_text(local)}"


@lru_cache(maxsize=4096)
def day_text(day: date) -> str:
    """'Nov 24, 2026': a day as every page, notice and reason writes it (babel parses its pattern
    on every call, so each day is formatted once)."""
    from babel.dates import format_date

    return format_date(day, "medium", locale="en_US")


def local_hour_text(instant: datetime, timezone: str) -> str:
    """'18:12 CST': the hour of `local_text`, for a moment of the business's own today."""
    return _hour_text(utc(instant).astimezone(ZoneInfo(timezone)))


def _hour_text(local: datetime) -> str:
    zone = local.strftime("%Z")
    if zone[:1] in "+-":
        zone = f"UTC{zone}"
    return f"{local:%H:%M} {zone}"
