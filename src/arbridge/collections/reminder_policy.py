"""The owner's reminder settings: sequences of steps, and the policy read from what the settings
page stored. Stored values are checked as carefully as a form's: one that cannot be used raises
SequenceError with a sentence for the owner. Pure, like the decisions in `reminders.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from arbridge.inputs import MAX_WHOLE_DIGITS, InputError, parse_int
from arbridge.wording import days_text

CHANNELS = ("email", "call", "sms")
ESCALATIONS = ("none", "notify_owner", "agency")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SequenceError(ValueError):
    """A sequence or reminder setting that cannot be used; the message is for the owner."""


@dataclass(frozen=True)
class Step:
    """One step: `offset_days` relative to the due date (negative: before it)."""

    key: str
    offset_days: int
    channel: str = "email"
    template: str = "overdue"
    min_balance: Decimal | None = None  # in the invoice's currency; None: any balance
    escalation: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "offset_days": self.offset_days,
            "channel": self.channel,
            "template": self.template,
            "min_balance": str(self.min_balance) if self.min_balance is not None else None,
            "escalation": self.escalation,
        }

    def describe(self) -> str:
        when = (
            "on the due date"
            if self.offset_days == 0
            else f"{days_text(abs(self.offset_days))} "
            f"{'before' if self.offset_days < 0 else 'after'}"
        )
        return f"{when}: {self.channel} ({self.template})"


@dataclass(frozen=True)
class ReminderSequence:
    name: str
    steps: tuple[Step, ...]

    def index(self, key: str) -> int:
        for i, step in enumerate(self.steps):
            if step.key == key:
                return i
        raise KeyError(key)


DEFAULT_STEPS = (
    Step("before-3", -3, "email", "upcoming"),
    Step("due", 0, "email", "due_today"),
    Step("after-3", 3, "email", "overdue_friendly"),
    Step("after-10", 10, "email", "overdue"),
    Step("after-20", 20, "email", "overdue_firm"),
    Step("after-30", 30, "email", "final_notice", escalation="notify_owner"),
    Step("after-45", 45, "call", "call_guide", escalation="notify_owner"),
)
DEFAULT_SEQUENCE = ReminderSequence("default", DEFAULT_STEPS)


def parse_step(raw: Mapping[str, Any], position: int) -> Step:
    where = f"step {position + 1}"
    offset_raw = raw.get("offset_days")
    try:
        # Stored steps hold ints; typed ones are strings in ASCII digits only (int() would take
        # '١٢' and '１２' too).
        offset = (
            offset_raw
            if isinstance(offset_raw, int) and not isinstance(offset_raw, bool)
            else parse_int(offset_raw if isinstance(offset_raw, str) else None)
        )
    except InputError as e:
        raise SequenceError(f"{where}: the number of days must be a whole number") from e
    if not -60 <= offset <= 365:
        raise SequenceError(f"{where}: days must be between -60 and 365, not {offset}")
    channel = str(raw.get("channel") or "email")
    if channel not in CHANNELS:
        raise SequenceError(f"{where}: unknown channel {channel!r}")
    escalation = str(raw.get("escalation") or "none")
    if escalation not in ESCALATIONS:
        raise SequenceError(f"{where}: unknown escalation {escalation!r}")
    template = str(raw.get("template") or "overdue").strip()
    if not template or len(template) > 40:
        raise SequenceError(f"{where}: a template name is needed (up to 40 characters)")
    min_raw = raw.get("min_balance")
    min_balance = None
    if min_raw not in (None, ""):
        text = str(min_raw).strip()
        try:
            if not text.isascii():
                raise InvalidOperation(text)
            min_balance = Decimal(text)
        except InvalidOperation as e:
            raise SequenceError(f"{where}: minimum balance {min_raw!r} is not an amount") from e
        if not min_balance.is_finite() or min_balance < 0:
            raise SequenceError(f"{where}: minimum balance must be zero or more")
        if min_balance.adjusted() >= MAX_WHOLE_DIGITS:  # 1e999999 is finite, and no balance
            raise SequenceError(f"{where}: minimum balance {min_raw!r} is too large")
    key = str(raw.get("key") or "").strip() or step_key(offset)
    return Step(key[:40], offset, channel, template, min_balance, escalation)


def step_key(offset: int) -> str:
    return "due" if offset == 0 else (f"before-{-offset}" if offset < 0 else f"after-{offset}")


_STEP_KEY = re.compile(r"(before|after)-(\d{1,5})|due")


def step_offset(key: str) -> int | None:
    """The day a key of `step_key`'s form names; None for a key of another form (an owner's)."""
    m = _STEP_KEY.fullmatch(key)
    if m is None:
        return None
    if m.group(0) == "due":
        return 0
    return int(m.group(2)) * (-1 if m.group(1) == "before" else 1)


def parse_sequence(name: str, raw_steps: Iterable[Mapping[str, Any]]) -> ReminderSequence:
    steps = sorted((parse_step(r, i) for i, r in enumerate(raw_steps)), key=lambda s: s.offset_days)
    if not steps:
        raise SequenceError("a sequence needs at least one step")
    if len(steps) > 20:
        raise SequenceError("a sequence has at most 20 steps")
    offsets = [s.offset_days for s in steps]
    if len(set(offsets)) != len(offsets):
        raise SequenceError("two steps fall on the same day; give each step its own day")
    keys = [s.key for s in steps]
    if len(set(keys)) != len(keys):
        raise SequenceError("two steps have the same key")
    return ReminderSequence(name, tuple(steps))


@dataclass(frozen=True)
class ReminderStart:
    """How reminders began for a company whose ledger came with old overdue invoices.

    "waiting": just connected; nothing goes out until the owner chooses. "first_step": every
    invoice already past the first overdue step when reminders started gets that step first (on
    `on`), and the later steps keep their spacing from there: nobody's first message is a final
    notice. "skip_older": the same, and invoices more than `skip_days` overdue on `on` get no
    automatic reminders (left to the owner). No start stored: each invoice gets the step its age
    calls for (companies from before this choice existed, and the demo)."""

    mode: str  # START_MODES
    on: date | None = None
    skip_days: int | None = None


START_MODES = ("waiting", "first_step", "skip_older")
MAX_SKIP_DAYS = 3650


@dataclass(frozen=True)
class ReminderPolicy:
    enabled: bool = True
    max_per_week: int = 2
    quiet_start: int = 8  # the earliest local hour to send
    quiet_end: int = 18  # sends stop at this local hour
    weekdays: frozenset[int] = frozenset(range(5))  # Monday = 0
    max_sync_age_minutes: int = 60
    sequences: Mapping[str, ReminderSequence] = field(
        default_factory=lambda: {"default": DEFAULT_SEQUENCE}
    )
    signature: str = ""
    statement_day: int | None = None  # day of the month for statements; None: no statements
    statement_link_days: int = 60  # a statement link works this long after it goes out
    start: ReminderStart | None = None
    sms_template: str = ""  # the owner's wording of a text ("": collections.sms's default)

    def sequence(self, name: str | None) -> ReminderSequence:
        return self.sequences.get(name or "default") or self.sequences["default"]


def reminder_policies(
    stored: Iterable[Mapping[str, Any] | None],
) -> list[ReminderPolicy | SequenceError]:
    """`reminder_policy` of many companies' settings (each its policy, or why it cannot be
    used), each distinct choice read once: most companies share a few (a daily run reads
    thousands)."""
    read: dict[str, ReminderPolicy | SequenceError] = {}
    out: list[ReminderPolicy | SequenceError] = []
    for settings in stored:
        raw = (settings or {}).get("reminders")
        # Most companies keep the defaults: no JSON to write for them.
        key = "null" if raw is None else json.dumps(raw, sort_keys=True, default=repr)
        if key not in read:
            try:
                read[key] = reminder_policy(settings)
            except SequenceError as e:
                read[key] = e
        out.append(read[key])
    return out


def reminder_policy(stored: Mapping[str, Any] | None) -> ReminderPolicy:
    """The policy from the company's `settings["reminders"]` (validated; defaults fill gaps)."""
    r = (stored or {}).get("reminders") or {}
    if not isinstance(r, Mapping):
        raise SequenceError("the stored reminder settings are not readable; save them again")
    sequences: dict[str, ReminderSequence] = {"default": DEFAULT_SEQUENCE}
    stored_sequences = r.get("sequences") or {}
    if not isinstance(stored_sequences, Mapping):
        raise SequenceError("the stored reminder sequences are not readable; save them again")
    for name, steps in stored_sequences.items():
        sequences[str(name)] = parse_sequence(str(name), steps)
    days = r.get("weekdays")
    if days is not None and not isinstance(days, list | tuple):
        raise SequenceError("the stored sending weekdays are not readable; choose them again")
    weekdays = (
        frozenset(WEEKDAYS.index(d) for d in days if d in WEEKDAYS)
        if days is not None
        else frozenset(range(5))
    )
    if not weekdays:
        raise SequenceError("choose at least one weekday for sending reminders")
    window = "the sending window must start before it ends, within 0–24 h"
    start = _whole(r.get("quiet_start"), 8, 0, 24, window)
    end = _whole(r.get("quiet_end"), 18, 0, 24, window)
    if not start < end:
        raise SequenceError(window)
    return ReminderPolicy(
        enabled=bool(r.get("enabled", True)),
        max_per_week=_whole(
            r.get("max_per_week"), 2, 0, 50, "reminders per week must be a number (1–7)"
        ),
        quiet_start=start,
        quiet_end=end,
        weekdays=weekdays,
        max_sync_age_minutes=_whole(
            r.get("max_sync_age_minutes"),
            60,
            1,
            7 * 24 * 60,
            "the re-sync age must be a number of minutes (5–1440)",
        ),
        sequences=sequences,
        signature=str(r.get("signature") or ""),
        statement_day=_statement_day(r.get("statement_day")),
        statement_link_days=_link_days(r.get("statement_link_days")),
        start=reminder_start(r.get("start")),
        sms_template=_sms_template(r.get("sms_template")),
    )


MAX_SMS_TEMPLATE = 600


def _sms_template(raw: Any) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str) or len(raw) > MAX_SMS_TEMPLATE:
        raise SequenceError(
            f"the text message wording must be text of at most {MAX_SMS_TEMPLATE} characters"
        )
    return raw.strip()


def reminder_start(raw: Any) -> ReminderStart | None:
    """The stored start (see ReminderStart), strictly: a start that cannot be read holds the
    reminders (SequenceError) rather than guess and send final notices."""
    if raw is None:
        return None
    problem = "the stored choice of how reminders start is not readable; choose it again"
    if not isinstance(raw, Mapping) or raw.get("mode") not in START_MODES:
        raise SequenceError(problem)
    if raw["mode"] == "waiting":
        return ReminderStart("waiting")
    try:
        on = date.fromisoformat(str(raw.get("on")))
    except ValueError as e:
        raise SequenceError(problem) from e
    skip = None
    if raw["mode"] == "skip_older":
        if raw.get("skip_days") is None:
            raise SequenceError(problem)
        skip = _whole(raw.get("skip_days"), 0, 1, MAX_SKIP_DAYS, problem)
    return ReminderStart(str(raw["mode"]), on, skip)


def _whole(raw: Any, default: int, lo: int, hi: int, problem: str) -> int:
    """A whole number from the stored settings, or SequenceError(problem): settings written by an
    older version, or by hand, may hold anything (a float, a 400-digit string, a list)."""
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | str | float):
        raise SequenceError(problem)
    if isinstance(raw, float) and not raw.is_integer():
        raise SequenceError(problem)
    try:
        value = int(raw)
    except (TypeError, ValueError, OverflowError) as e:
        raise SequenceError(problem) from e
    if not lo <= value <= hi:
        raise SequenceError(problem)
    return value


def _link_days(raw: Any) -> int:
    return _whole(raw, 60, 1, 366, "statement links must last a number of days (1–366)")


def _statement_day(raw: Any) -> int | None:
    if raw in (None, "", 0, "0"):
        return None
    return _whole(raw, 0, 1, 28, "the statement day must be a day of the month (1–28)")


def statement_due(policy: ReminderPolicy, as_of: date) -> bool:
    return policy.enabled and policy.statement_day is not None and as_of.day == policy.statement_day
