"""The customer's installment plan, reached through their payment link: choose a plan and read
its schedule, agree and pay the first amount, see each installment, pay a failed one, cancel
future charges. The link is the customer's authority; plans, amounts and dates come from the
server (a form names only the choice and the agreement's version it showed)."""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from arbridge.collections import plans as rules
from arbridge.errors import ArbridgeError, NotFound, Rejected
from arbridge.inputs import InputError, parse_int
from arbridge.services.payments.checkout import handle_checkout_return
from arbridge.services.payments.plans import (
    PlanRefused,
    agree_to_offer,
    cancel_by_customer,
    choose_and_agree,
    installment_checkout,
    live_plan_of_invoices,
    open_offer_of_invoices,
    plan_choice,
    propose_for_customer,
)
from arbridge.services.payments.quote import quote
from arbridge.sync.pay_links import LinkGone
from arbridge.sync.store import company_today, find_pay_token
from arbridge.web.common import db, runtime
from arbridge.web.pay import RETURNED, _gone, _no_store

bp = Blueprint("plan_pay", __name__)
log = logging.getLogger(__name__)


def _number(name: str, default: int) -> int | None:
    """The number asked for, the default when none; None for one that is no count of
    installments (then refused with the plan's own sentence, the choice still on the page)."""
    raw = request.values.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse_int(raw, minimum=1, maximum=rules.MAX_INSTALLMENTS)
    except InputError:
        return None


@bp.get("/pay/<token>/plan")
def plan_page(token: str) -> Any:
    return _render(token)


def _render(token: str, status: int = 200, error: str | None = None) -> Any:
    rt, s = runtime(), db()
    try:
        link = find_pay_token(s, token)
        q = quote(rt, s, link)
    except LinkGone as e:
        return _gone(e)
    except NotFound:
        abort(404)
    today = company_today(q.company, rt.clock)
    ids = [i.id for i in q.invoices]
    live = live_plan_of_invoices(s, ids)
    offer = None if live else open_offer_of_invoices(s, ids, rt.clock.now())
    choice = plan_choice(s, q, today) if live is None and offer is None else None
    proposal, chosen = None, None
    if choice is not None and choice.offer is not None:
        counts, freqs = choice.offer.installment_counts, choice.offer.frequencies
        usual = (counts[min(2, len(counts) - 1)], freqs[0])
        asked = _number("installments", usual[0])
        chosen = (asked or 0, request.values.get("every") or usual[1])
        try:
            proposal = propose_for_customer(choice, chosen[0], chosen[1], today)
        except PlanRefused as e:
            # What was asked is not offered: say so, and show the usual choice to pick from (it
            # said the plan was not available at all, and the choice was gone).
            error = error or str(e)
            chosen = usual
            try:
                proposal = propose_for_customer(choice, *usual, today)
            except PlanRefused:
                proposal = None
    response = make_response(
        render_template(
            "plan.html",
            token=token,
            q=q,
            company=q.company,
            customer=q.customer,
            live=live,
            offer=offer,
            choice=choice,
            proposal=proposal,
            chosen=chosen,
            labels=rules.FREQUENCY_LABELS,
            remainder_rule=rules.REMAINDER_RULE,
            error=error,
            today=today,
        ),
        status,
    )
    return _no_store(response)


def _refused(token: str, e: ArbridgeError) -> Any:
    if isinstance(e, LinkGone):
        return _gone(e)
    if isinstance(e, NotFound):
        abort(404)
    if isinstance(e, Rejected):
        log.info("plan action refused: %s", e)
        message = str(e)
        return _render(token, 409, error=message[:1].upper() + message[1:].rstrip(".") + ".")
    log.warning("plan action could not finish: %s", e)
    return _render(
        token, 503, error="We could not reach the payment service. Please try again in a minute."
    )


def _acceptance() -> dict[str, Any]:
    return {
        "agreed": request.form.get("agree") == "yes",
        "version": request.form.get("agreement_version", ""),
        "ip": request.remote_addr,
        "user_agent": request.headers.get("User-Agent"),
    }


@bp.post("/pay/<token>/plan/agree")
def agree(token: str) -> Any:
    installments = _number("installments", 0) or 0
    try:
        url = choose_and_agree(
            runtime(),
            token,
            installments=installments,
            every=request.form.get("every", ""),
            **_acceptance(),
        )
    except ArbridgeError as e:
        return _refused(token, e)
    return _no_store(redirect(url, code=303))


@bp.post("/pay/<token>/plan/<int:plan_id>/agree")
def agree_offer(token: str, plan_id: int) -> Any:
    try:
        url = agree_to_offer(runtime(), token, plan_id, **_acceptance())
    except ArbridgeError as e:
        return _refused(token, e)
    return _no_store(redirect(url, code=303))


@bp.post("/pay/<token>/plan/<int:plan_id>/pay/<int:number>")
def pay_installment(token: str, plan_id: int, number: int) -> Any:
    try:
        url = installment_checkout(runtime(), token, plan_id, number)
    except ArbridgeError as e:
        return _refused(token, e)
    return _no_store(redirect(url, code=303))


@bp.post("/pay/<token>/plan/<int:plan_id>/cancel")
def cancel(token: str, plan_id: int) -> Any:
    try:
        cancel_by_customer(runtime(), token, plan_id)
    except ArbridgeError as e:
        return _refused(token, e)
    flash(
        "Your plan is cancelled: nothing more will be charged. What is still owed is due now; "
        "you can pay it below.",
        "info",
    )
    return _no_store(redirect(url_for("pay.pay_page", token=token), code=303))


@bp.get("/pay/<token>/plan/return")
def plan_return(token: str) -> Any:
    if request.args.get("cancelled"):
        try:
            find_pay_token(db(), token)
        except NotFound:
            abort(404)
        outcome = "cancelled"
    else:
        try:
            outcome = handle_checkout_return(runtime(), token, request.args.get("session_id", ""))
        except NotFound:
            abort(404)
        except ArbridgeError as e:
            log.warning("could not confirm a plan's checkout on return: %s", e)
            outcome = "unknown"
    category, message = RETURNED[outcome]
    if outcome == "paid":
        message = "Thank you! Your payment was received and your plan is set up."
    elif outcome == "pending":
        message = (
            "Thank you! Your bank payment has started and your plan is set up. Bank payments "
            "take a few business days to clear."
        )
    flash(message, category)
    return _no_store(redirect(url_for("plan_pay.plan_page", token=token), code=303))
