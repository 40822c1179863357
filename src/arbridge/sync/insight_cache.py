"""The insight (the KPIs of a period, the forecast, the flags and the 12 months of trends)
computed once per change of the data behind it, not on every view.

A company's insight reads its whole history: at a million invoices it takes seconds, while what
it says changes only when the ledger or the owner changes something. So:

- `insight_versions` counts the changes per company. Every write to the tables the insight
  reads (invoices, payments, credit notes, allocations, customers, plans, the company's
  settings) bumps it in the same transaction: ORM writes through a session listener
  (`watch`, on every session the runtime makes), the sync's set-based writes through
  `PageWriter`, which calls `bump` itself.
- `insight_snapshots` keeps the latest insight per company and kind (period, live plans or
  not) with the as-of date and the version it was computed from. A view whose as-of date and
  version match reads it; any other computes afresh (`sync.insight_store`, unchanged) and
  stores the result. The version is read before computing: a change that lands meanwhile
  leaves the stored snapshot with the older version, so it is never shown as current.
- A page never computes a big company's insight inside the request (`shown`): a stale one is
  shown with the time it was computed and the worker's `insight` job (a `company_jobs` row, so
  claimed by one worker at a time) is queued to compute it; a company with few invoices
  (`Settings.insight_inline_invoices`) has it computed at once, as `arbridge report` always does.

The figures are the ones the queries give, serialised exactly (decimal strings, ISO dates).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import chain
from typing import Any

from sqlalchemy import event, func, inspect, literal, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from arbridge.collections.insight import Flag, Forecast, Week
from arbridge.collections.kpis import Kpis
from arbridge.collections.policy import Policy
from arbridge.sync.db import dialect_insert
from arbridge.sync.insight_store import (
    CustomerRow,
    Insight,
    Proposal,
    forecast_flags_dict,
    insight,
    trends_list,
)
from arbridge.sync.model import (
    Company,
    CompanyJob,
    CreditNote,
    Customer,
    InsightSnapshot,
    InsightVersion,
    Invoice,
    Payment,
    PaymentAllocation,
    Plan,
    PlanInstallment,
    PlanInvoice,
)
from arbridge.sync.settled_store import flushed_invoices, refresh
from arbridge.sync.store import aging_report, kpi_report, report_dict
from arbridge.sync.trends_store import kpi_trends

log = logging.getLogger(__name__)

# What the insight reads: a change to any of these bumps the company's version.
WATCHED = (
    Company,
    Customer,
    Invoice,
    Payment,
    CreditNote,
    PaymentAllocation,
    Plan,
    PlanInvoice,
    PlanInstallment,
)


# Of these, only the columns the insight reads: an invoice paused, marked payment-pending or
# collected on (its balances: the insight counts allocations) leaves it as it was.
READ_ONLY_THESE = {
    Invoice: (
        "company_id",
        "customer_id",
        "issued_on",
        "due_on",
        "currency",
        "exchange_rate",
        "total_minor",
        "status",
        "terms",
    ),
    Customer: (
        "company_id",
        "name",
        "source_id",
        "deleted",
        "credit_limit_minor",
        "limit_reviewed_on",
    ),
}


def _changed(obj: Any) -> bool:
    """Did this flush change anything of a dirty row that the insight reads?"""
    columns = READ_ONLY_THESE.get(type(obj))
    state = inspect(obj)
    if columns is None:
        return any(a.history.has_changes() for a in state.attrs)
    return any(state.attrs[name].history.has_changes() for name in columns)


def watch(factory: sessionmaker[Session]) -> None:
    """Bump the version of every company whose watched rows a flush of these sessions wrote."""
    event.listen(factory, "after_flush", _after_flush)


def _after_flush(session: Session, _context: Any) -> None:
    # The figures stored for the insight (sync.settled_store), in the same transaction.
    touched = flushed_invoices(session, session.new, session.dirty, session.deleted)
    if touched:
        refresh(session, touched)
    companies: set[int] = set()
    plans: set[int] = set()
    for obj in chain(session.new, session.dirty, session.deleted):
        if not isinstance(obj, WATCHED):
            continue
        if obj in session.dirty and not _changed(obj):
            continue
        if isinstance(obj, Company):
            if obj not in session.deleted:
                companies.add(obj.id)
        elif isinstance(obj, (PlanInvoice, PlanInstallment)):
            plans.add(obj.plan_id)
        else:
            companies.add(obj.company_id)
    conn = session.connection()
    if plans - {None}:
        companies |= set(
            conn.execute(select(Plan.company_id).where(Plan.id.in_(plans - {None}))).scalars()
        )
    for company_id in sorted(companies - {None}):
        _bump(session, conn, company_id)


def bump(session: Session, company_id: int) -> None:
    """The company's insight data changed (in this session's transaction)."""
    _bump(session, session.connection(), company_id)


def _bump(session: Session, conn: Any, company_id: int) -> None:
    # INSERT ... SELECT from companies: a company deleted in the same transaction gets none.
    stmt = dialect_insert(session)(InsightVersion).from_select(
        ["company_id", "version"],
        select(Company.id, literal(1)).where(Company.id == company_id),
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["company_id"], set_={"version": InsightVersion.version + 1}
        )
    )


def version(session: Session, company_id: int) -> int:
    found = session.scalar(
        select(InsightVersion.version).where(InsightVersion.company_id == company_id)
    )
    return int(found or 0)


@dataclass(frozen=True)
class Snapshot:
    """The insight as the dashboard and the report show it (`forecast.exposure`, each
    customer's open amount, is not kept: the flags already say who is near their limit)."""

    as_of: date
    kpi: Kpis
    forecast: Forecast
    flags: list[Flag]
    proposals: int  # how many higher credit limits are proposed
    trends: list[Kpis]
    computed_at: datetime | None = None  # UTC; None in a snapshot stored before it was kept
    # What the insight page shows beside it, kept in a row of its own (kind + ":page") so the
    # dashboard never reads it; None when not read.
    details: Details | None = None
    # Each customer's lateness in days (the details' own), also kept in a row of its own (kind +
    # ":lateness") for the forecast week's invoices list, which needs nothing else of the
    # details (at 20,000 customers, decoding them was a third of that page: issue 14); None
    # when neither was read.
    lateness: dict[int, int] | None = None


@dataclass(frozen=True)
class Details:
    """The insight page's: each customer (terms, own limit), their lateness and open amount,
    the proposed raises, the default limit."""

    customers: dict[int, CustomerRow]
    lateness: dict[int, int]
    exposure: dict[int, int]
    proposals: list[Proposal]
    default_limit_minor: int | None

    def insight(self, found: Snapshot, pol: Policy) -> Insight:
        return Insight(
            replace(found.forecast, exposure=self.exposure),
            self.lateness,
            found.flags,
            self.proposals,
            self.customers,
            self.default_limit_minor,
            pol,
        )


def compute(
    session: Session,
    company: Company,
    as_of: date,
    period_days: int,
    live_plans: bool,
    now: datetime,
) -> Snapshot:
    kpi = kpi_report(session, company, as_of, period_days)
    found = insight(session, company, as_of, kpi, live_plans=live_plans)
    return Snapshot(
        as_of,
        kpi,
        found.forecast,
        found.flags,
        len(found.proposals),
        kpi_trends(session, company, as_of),
        now.astimezone(UTC),
        Details(
            found.customers,
            found.lateness,
            dict(found.forecast.exposure),
            found.proposals,
            found.default_limit_minor,
        ),
        found.lateness,
    )


def _kind(period_days: int, live_plans: bool) -> str:
    return f"{period_days}:{'live' if live_plans else 'as_of'}"


def snapshot(
    session: Session,
    company: Company,
    as_of: date,
    period_days: int,
    live_plans: bool,
    now: datetime,
    details: bool = False,
) -> Snapshot:
    """The company's insight on as_of: the stored one while nothing changed since, else
    computed now (and stored for the next view). With `details`, all of it: computed again
    too when a row the pages read is missing (one stored before that row was kept)."""
    found = shown(
        session, company, as_of, period_days, now, None, details=details, live_plans=live_plans
    ).found
    assert found is not None  # computed when not stored
    return found


# The worker's job that computes a stale insight (worker.run_insight); queued by the pages.
INSIGHT_JOB = "insight"
# An insight job's row waits this long once done: only a page queues it again.
IDLE = timedelta(days=3650)


@dataclass(frozen=True)
class Shown:
    """What a page shows of today's insight: the snapshot (None: none was ever computed) and
    whether it is older than the data (the worker is computing the current one)."""

    found: Snapshot | None
    stale: bool


def shown(
    session: Session,
    company: Company,
    as_of: date,
    period_days: int,
    now: datetime,
    inline_invoices: int | None,
    details: bool = False,
    live_plans: bool = True,
    lateness: bool = False,
) -> Shown:
    """Today's insight (live plans) for a page, never computed in the request for a company
    with more than `inline_invoices` invoices (None: any is computed): the stored one, stale
    or not, while the worker computes the current one. With `details`, what the insight page
    shows besides; with `lateness`, each customer's lateness alone (without the details)."""
    current = version(session, company.id)
    kind = _kind(period_days, live_plans)
    extra = (PAGE, LATENESS) if details else (LATENESS,) if lateness else ()
    kinds = [kind, *(kind + suffix for suffix in extra)]
    got = [session.get(InsightSnapshot, (company.id, k), populate_existing=True) for k in kinds]
    rows = [row for row in got if row is not None]
    whole = len(rows) == len(kinds)
    if whole and all(row.version == current and row.as_of == as_of for row in rows):
        return Shown(_decoded(rows), stale=False)
    if inline_invoices is None or _invoices_at_most(session, company.id, inline_invoices):
        found = compute(session, company, as_of, period_days, live_plans, now)
        _store(session, company.id, kind, current, found)
        return Shown(found, stale=False)
    queue(session, company.id, now)
    return Shown(_decoded(rows) if whole else None, stale=True)


PAGE = ":page"
LATENESS = ":lateness"


def _decoded(rows: list[InsightSnapshot]) -> Snapshot:
    found = decode(rows[0].payload)
    for row in rows[1:]:
        if row.kind.endswith(PAGE):
            found = replace(found, details=decode_details(row.payload))
        else:
            found = replace(found, lateness=decode_lateness(row.payload))
    return found


def _invoices_at_most(session: Session, company_id: int, limit: int) -> bool:
    """Has the company at most `limit` invoices? (Counts no more than limit + 1 of them.)"""
    few = select(Invoice.id).where(Invoice.company_id == company_id).limit(limit + 1)
    return int(session.scalar(select(func.count()).select_from(few.subquery())) or 0) <= limit


def queue(session: Session, company_id: int, now: datetime) -> None:
    """Have the worker compute the company's insight on its next tick, in a transaction of its
    own. Queued already, or being computed (its row's run time is then in the past): nothing
    to do, and nothing waits on the running job's lock."""
    try:
        with Session(session.get_bind()) as writer, writer.begin():
            found = writer.scalar(
                select(CompanyJob.next_run_at).where(
                    CompanyJob.company_id == company_id, CompanyJob.job == INSIGHT_JOB
                )
            )
            if found is None:
                stmt = dialect_insert(writer)(CompanyJob).values(
                    company_id=company_id, job=INSIGHT_JOB, next_run_at=now
                )
                writer.execute(stmt.on_conflict_do_nothing(index_elements=["company_id", "job"]))
            elif _aware(found) > now:
                writer.execute(
                    update(CompanyJob)
                    .where(
                        CompanyJob.company_id == company_id,
                        CompanyJob.job == INSIGHT_JOB,
                        CompanyJob.next_run_at > now,
                    )
                    .values(next_run_at=now)
                )
    except SQLAlchemyError:
        log.warning("insight job for company %s not queued", company_id, exc_info=True)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _store(session: Session, company_id: int, kind: str, at: int, found: Snapshot) -> None:
    """Keep the snapshot, in a transaction of its own (the caller's session may be a page's
    read-only one). A failure to store costs the next view a computation, nothing else."""
    values = [
        {
            "company_id": company_id,
            "kind": kind,
            "as_of": found.as_of,
            "version": at,
            "payload": encode(found),
        }
    ]
    if found.details is not None:
        for suffix, payload in (
            (PAGE, encode_details(found.details)),
            (LATENESS, encode_lateness(found.details.lateness)),
        ):
            values.append(
                {
                    "company_id": company_id,
                    "kind": kind + suffix,
                    "as_of": found.as_of,
                    "version": at,
                    "payload": payload,
                }
            )
    stmt = dialect_insert(session)(InsightSnapshot).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["company_id", "kind"],
        set_={k: stmt.excluded[k] for k in ("as_of", "version", "payload")},
    )
    try:
        with Session(session.get_bind()) as writer, writer.begin():
            writer.execute(stmt)
    except SQLAlchemyError:
        log.warning("insight snapshot for company %s not stored", company_id, exc_info=True)


def report_data(
    session: Session,
    company: Company,
    as_of: date,
    period_days: int,
    live_plans: bool,
    now: datetime,
) -> dict[str, Any]:
    """What `arbridge report` prints: the aging, the KPIs of the period, the forecast and flags
    (`live_plans`: today's, with current installment plans on their dates) and the trends."""
    found = snapshot(session, company, as_of, period_days, live_plans, now)
    data = report_dict(company, aging_report(session, company, as_of), found.kpi)
    data.update(forecast_flags_dict(found.forecast, found.flags))
    data["trends"] = trends_list(found.trends)
    return data


# The payload: plain JSON, decimals as strings (exact), dates as ISO strings.
_KPI_DATES = ("start", "end")


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _kpis(k: Kpis) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in vars(k).items():
        if name in _KPI_DATES:
            out[name] = value.isoformat()
        elif name == "days":
            out[name] = value
        else:
            out[name] = _dec(value)
    return out


def _unkpis(d: dict[str, Any]) -> Kpis:
    return Kpis(
        **{
            name: (
                date.fromisoformat(value)
                if name in _KPI_DATES
                else value
                if name == "days"
                else _undec(value)
            )
            for name, value in d.items()
        }
    )


def encode(found: Snapshot) -> dict[str, Any]:
    fc = found.forecast
    return {
        "as_of": found.as_of.isoformat(),
        "kpi": _kpis(found.kpi),
        "forecast": {
            "as_of": fc.as_of.isoformat(),
            "weeks": [[w.start.isoformat(), w.end.isoformat(), str(w.amount)] for w in fc.weeks],
            "later": str(fc.later),
            "ar_end": str(fc.ar_end),
            "next_30": str(fc.next_30),
            "projected_dso": _dec(fc.projected_dso),
        },
        "flags": [vars(f) for f in found.flags],
        "proposals": found.proposals,
        "trends": [_kpis(k) for k in found.trends],
        "computed_at": None if found.computed_at is None else found.computed_at.isoformat(),
    }


def decode(payload: dict[str, Any]) -> Snapshot:
    fc = payload["forecast"]
    return Snapshot(
        date.fromisoformat(payload["as_of"]),
        _unkpis(payload["kpi"]),
        Forecast(
            date.fromisoformat(fc["as_of"]),
            tuple(
                Week(date.fromisoformat(s), date.fromisoformat(e), Decimal(a))
                for s, e, a in fc["weeks"]
            ),
            Decimal(fc["later"]),
            Decimal(fc["ar_end"]),
            Decimal(fc["next_30"]),
            _undec(fc["projected_dso"]),
            {},
        ),
        [Flag(**f) for f in payload["flags"]],
        int(payload["proposals"]),
        [_unkpis(k) for k in payload["trends"]],
        None
        if payload.get("computed_at") is None
        else _aware(datetime.fromisoformat(payload["computed_at"])),
    )


def encode_details(d: Details) -> dict[str, Any]:
    return {
        "customers": [asdict(c) for c in d.customers.values()],
        **encode_lateness(d.lateness),
        "exposure": [[k, v] for k, v in d.exposure.items()],
        "proposals": [[p.customer.id, p.limit_minor, p.proposed_minor, p.run] for p in d.proposals],
        "default_limit_minor": d.default_limit_minor,
    }


def encode_lateness(lateness: dict[int, int]) -> dict[str, Any]:
    return {"lateness": [[k, v] for k, v in lateness.items()]}


def decode_lateness(payload: dict[str, Any]) -> dict[int, int]:
    return {int(k): int(v) for k, v in payload["lateness"]}


def decode_details(payload: dict[str, Any]) -> Details:
    customers = {c["id"]: CustomerRow(**c) for c in payload["customers"]}
    return Details(
        customers,
        decode_lateness(payload),
        {int(k): int(v) for k, v in payload["exposure"]},
        [Proposal(customers[cid], lim, new, run) for cid, lim, new, run in payload["proposals"]],
        payload["default_limit_minor"],
    )
