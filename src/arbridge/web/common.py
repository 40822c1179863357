"""Request-scoped helpers: the runtime, a database session per request, the signed-in user."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import wraps
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, request, session, url_for
from sqlalchemy import event, select
from sqlalchemy.orm import Mapped, Session
from werkzeug.routing import IntegerConverter, Map

from arbridge.inputs import MAX_ID, InputError, parse_id, parse_int
from arbridge.runtime import Runtime
from arbridge.sync.model import Activity, Company, User


class IdConverter(IntegerConverter):
    """`<int:...>` in every route: ASCII digits within the id columns' range, else a 404.

    Werkzeug's own matches `\\d+` (any script's digits, so /invoices/１２ was invoice 12) and has
    no upper bound (a 20-digit id reached the database and overflowed its driver: a 500)."""

    regex = r"[0-9]+"

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = MAX_ID,
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits, min, max, signed)


def id_arg(value: str | None) -> int | None:
    """An optional record id from a query string or form: absent is None, anything that cannot
    be an id is a 404 (no record has it), never a database overflow."""
    if value is None or not value.strip():
        return None
    try:
        return parse_id(value)
    except InputError:
        abort(404)


def page_arg(page_size: int) -> int:
    """`?page=N`: 1 when absent; a page that cannot exist (not a number, or an offset of
    `page_size` rows per page beyond any table of ours) is a 404."""
    raw = request.args.get("page")
    if raw is None or not raw.strip():
        return 1
    try:
        return parse_int(raw, minimum=1, maximum=MAX_ID // page_size)
    except InputError:
        abort(404)


def runtime() -> Runtime:
    return current_app.extensions["arbridge"]


def db() -> Session:
    if "db" not in g:
        g.db = runtime().sessions()
        event.listen(g.db, "before_flush", _stamp_actor)
    return g.db


def _stamp_actor(session: Session, _context: Any, _instances: Any) -> None:
    """Activity rows written by a signed-in person's change (a POST under /c/<slug>/, see
    `enforce_role`) name them: `data["by"]`, shown in the activity log."""
    actor = g.get("actor_email")
    if not actor:
        return
    for row in session.new:
        if isinstance(row, Activity) and "by" not in (row.data or {}):
            row.data = {**(row.data or {}), "by": actor}


class TenantRow(Protocol):
    """A table whose rows belong to one company (every row a view loads by an id does)."""

    id: Mapped[int]
    company_id: Mapped[int]


Row = TypeVar("Row", bound=TenantRow)


def get_scoped(model: type[Row], record_id: int | None, company: Company | int) -> Row | None:
    """The `model` row with this id if it belongs to `company`, else None.

    The company is part of the query itself, so a row of another company is never loaded,
    whatever the view does next (no hand-written `company_id !=` check to forget)."""
    if record_id is None:
        return None
    company_id = company if isinstance(company, int) else company.id
    return db().scalar(select(model).where(model.id == record_id, model.company_id == company_id))


def get_or_404(model: type[Row], record_id: int | None, company: Company | int) -> Row:
    """The `model` row with this id from the URL or a form, scoped to `company`; a 404 for an
    id that does not exist and, alike, for one of another company (which must not learn that it
    exists)."""
    row = get_scoped(model, record_id, company)
    if row is None:
        abort(404)
    return row


def current_user() -> User | None:
    user_id = session.get("user_id")
    if user_id is None:
        return None
    user = db().get(User, user_id)
    # A cookie from before the user's last sign-out (here or "everywhere") is dead, even a copy
    # that is still within its 12 hours.
    if user is None or session.get("v") != (user.session_version or 0):
        session.clear()
        return None
    return user


# Paths whose next segment is a secret: sign-in, invitation, pay and statement links (both
# /pay/<token>), unsubscribe. Anything that logs a path goes through `redact_path`.
TOKEN_PATH = re.compile(r"(/(?:sign-in|invitations|pay|u|statement)/)[^/?#\s]+")


def redact_path(path: str) -> str:
    return TOKEN_PATH.sub(r"\1[redacted]", path)


class RedactTokens(logging.Filter):
    """For loggers that print request lines we do not format ourselves (werkzeug's access log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_path(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def safe_next(value: str | None, fallback: str) -> str:
    """A `next=` target only if it is a path on this site; anything else gives the fallback.

    Refused: other hosts (`https://x`, `//x`, `/\\x`, which browsers read as `//x`), schemes
    (`javascript:`, `data:`), and control characters (a header split in the Location)."""
    if not value or len(value) > 2000:
        return fallback
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return fallback
    parts = urlsplit(value.replace("\\", "/"))
    if parts.scheme or parts.netloc or not value.startswith("/") or value[1:2] in ("/", "\\"):
        return fallback
    return value


def start_session(user_id: int, company_id: int, version: int) -> None:
    """Sign in: a fresh cookie (never the visitor's old one) stamped with the user's version."""
    session.clear()
    session.permanent = True
    session["user_id"], session["company_id"], session["v"] = user_id, company_id, version


# ---------------------------------------------------------------------------------------------
# Roles (sync/people.py ROLES). Every POST under /c/<slug>/ is an owner's, except these, which a
# collector may also use: working calls and replies. A viewer changes nothing. A new POST route
# is an owner's until it is added here, so forgetting errs on the safe side.

COLLECTOR_ENDPOINTS = frozenset(
    {
        "reminders.call_done",  # log a call's outcome
        "reminders.resolve",  # resolve a hold: a reply, a promise, a dispute
    }
)
log = logging.getLogger(__name__)


def role_allows(role: str | None, endpoint: str | None) -> bool:
    """May a user of this role POST to this endpoint (an owner page's)?"""
    if role == "owner":
        return True
    if role == "collector":
        return endpoint in COLLECTOR_ENDPOINTS
    return False


def can(endpoint: str) -> bool:
    """For templates: show a button only when the signed-in user's role may use its endpoint."""
    user = g.get("user") or current_user()
    return user is not None and role_allows(user.role, endpoint)


def enforce_role() -> Any:
    """before_request: refuse (403, a calm page) a POST under /c/<slug>/ the role may not make.
    Signed-out visitors pass through: the view sends them to sign in."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.url_rule is None:
        return None
    if not request.url_rule.rule.startswith("/c/<slug>/"):
        return None
    user = current_user()
    if user is None:
        return None
    if role_allows(user.role, request.endpoint):
        g.actor_email = user.email
        return None
    log.warning(
        "refused %s %s to user %s (role %s)", request.method, request.endpoint, user.id, user.role
    )
    abort(
        403,
        f"Your role in this company ({user.role}) lets you read this page but not make this "
        "change. Ask an owner of the company if you need to.",
    )


def company_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Owner pages live under /c/<slug>/; a user sees their own company's pages and no other's."""

    @wraps(view)
    def wrapper(slug: str, **kwargs: Any) -> Any:
        user = current_user()
        if user is None:
            return redirect(url_for("auth.signed_out"))
        company = db().get(Company, user.company_id)
        if company is None or company.slug != slug:
            abort(404)
        g.user, g.company = user, company
        return view(company, **kwargs)

    return wrapper
