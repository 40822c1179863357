"""Day one: a ledger just connected brings its old overdue invoices, and nothing goes out until
the owner chooses how reminders start. The dashboard asks; the choice shows tomorrow's dry run
under it before the owner confirms (and may pause invoices from the list first)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from arbridge.collections.reminder_policy import MAX_SKIP_DAYS, SequenceError, reminder_policy
from arbridge.inputs import InputError, parse_int
from arbridge.services.reminders.preview import dry_run_rows, not_reminded, preview
from arbridge.sync.model import Company
from arbridge.sync.store import company_today, log_activity
from arbridge.web.common import company_required, db, runtime
from arbridge.web.reminders import plan_csv_response, plan_page

bp = Blueprint("reminders_start", __name__)
DEFAULT_SKIP_DAYS = 60
CHOICES = {
    "first_step": "Start every overdue invoice at the first overdue reminder",
    "skip_older": "Leave invoices more than N days overdue to me; start the rest at the first "
    "overdue reminder",
}


def waiting(company: Company) -> bool:
    try:
        start = reminder_policy(company.settings).start
    except SequenceError:
        return False
    return start is not None and start.mode == "waiting"


def _choice() -> tuple[str, int | None] | str:
    """The owner's choice from the form or query, or why it is not one."""
    values = request.form if request.method == "POST" else request.args
    mode = values.get("mode", "")
    if mode not in CHOICES:
        return "Choose how reminders start."
    if mode == "first_step":
        return mode, None
    try:
        days = parse_int(values.get("days", ""))
    except InputError:
        return f"Say after how many days overdue (1 to {MAX_SKIP_DAYS}) to leave an invoice to you."
    if not 1 <= days <= MAX_SKIP_DAYS:
        return f"Say after how many days overdue (1 to {MAX_SKIP_DAYS}) to leave an invoice to you."
    return mode, days


def _with_start(company: Company, start: dict[str, Any]) -> dict[str, Any]:
    stored = dict(company.settings or {})
    stored["reminders"] = {**(stored.get("reminders") or {}), "start": start}
    return stored


@bp.get("/c/<slug>/reminders/start")
@company_required
def page(company: Company) -> Any:
    rt = runtime()
    if request.args.get("format") == "csv" and not request.args.get("mode"):
        # The CSV of the page's own default choice (it answered with the page's HTML).
        return redirect(
            url_for("reminders_start.page", slug=company.slug, mode="first_step", format="csv")
        )
    if not request.args.get("mode"):
        return render_template(
            "reminders_start.html", company=company, choices=CHOICES, days=DEFAULT_SKIP_DAYS
        )
    choice = _choice()
    if isinstance(choice, str):
        flash(choice, "error")
        return render_template(
            "reminders_start.html", company=company, choices=CHOICES, days=DEFAULT_SKIP_DAYS
        ), 400
    mode, days = choice
    today = company_today(company, rt.clock)
    start = {"mode": mode, "on": today.isoformat(), **({"skip_days": days} if days else {})}
    tomorrow = preview(rt, company, today + timedelta(days=1), _with_start(company, start))
    if request.args.get("format") == "csv":
        return plan_csv_response(rt, company, tomorrow)
    chosen = {"mode": mode, **({"days": days} if days else {})}

    def page_url(n: int) -> str:
        return url_for("reminders_start.page", slug=company.slug, plan_page=n, **chosen)

    plan = plan_page(
        tomorrow,
        lambda n: page_url(n) + "#start-preview",
        url_for("reminders_start.page", slug=company.slug, format="csv", **chosen),
    )
    return render_template(
        "reminders_start.html",
        company=company,
        choices=CHOICES,
        mode=mode,
        days=days or DEFAULT_SKIP_DAYS,
        prev=tomorrow,
        rows=dry_run_rows(rt, tomorrow, plan.shown),
        plan=plan,
        not_reminded=not_reminded(tomorrow),
        due=len(tomorrow.loaded.day.due),
    )


@bp.post("/c/<slug>/reminders/start")
@company_required
def confirm(company: Company) -> Any:
    rt, s = runtime(), db()
    choice = _choice()
    if isinstance(choice, str):
        flash(choice, "error")
        return redirect(url_for("reminders_start.page", slug=company.slug))
    mode, days = choice
    today = company_today(company, rt.clock)
    start = {"mode": mode, "on": today.isoformat(), **({"skip_days": days} if days else {})}
    company.settings = _with_start(company, start)
    how = CHOICES[mode].replace("N days", f"{days} days")
    log_activity(s, rt.clock, company.id, "reminders.started", f"Reminders started: {how}")
    s.commit()
    flash(f"Reminders are on: {how.lower()}.", "ok")
    return redirect(url_for("owner.dashboard", slug=company.slug))


@bp.app_template_global()
def reminders_waiting(company: Company) -> bool:
    return waiting(company)
