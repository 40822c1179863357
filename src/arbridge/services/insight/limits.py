"""The owner's daily word on credit limits: customers whose open invoices take them over their
limit, or within 10% of it, in one email a day (the dashboard shows the same warning)."""

from __future__ import annotations

from sqlalchemy import func, select

from arbridge.runtime import Runtime
from arbridge.sync.db import transaction
from arbridge.sync.insight_store import default_limit_minor, insight
from arbridge.sync.model import Company, Customer
from arbridge.sync.notices import tell_owner
from arbridge.sync.store import company_today
from arbridge.wording import counted

LIMIT_KINDS = ("over_limit", "near_limit")


def tell_limits(rt: Runtime, company: Company) -> int:
    """Email the owner the customers over or near their credit limit today, once a day; returns
    how many were named. Nothing is computed for a company that sets no limits."""
    from arbridge.collections.policy import policy

    today = company_today(company, rt.clock)
    with transaction(rt.sessions) as s:
        own_limits = s.scalar(
            select(func.count())
            .select_from(Customer)
            .where(Customer.company_id == company.id, Customer.credit_limit_minor.is_not(None))
        )
        if not own_limits and default_limit_minor(company, policy(company.settings)) is None:
            return 0
        found = [
            f
            for f in insight(s, company, today, None, live_plans=True).flags
            if f.kind in LIMIT_KINDS
        ]
        if not found:
            return 0
        over = [f for f in found if f.kind == "over_limit"]
        lines = [f"- {f.customer}: {f.reason}" for f in found]
        tell_owner(
            s,
            rt.clock,
            company.id,
            key=f"owner:credit-limits:{company.id}:{today.isoformat()}",
            subject=(
                f"{counted(len(over), 'customer')} over their credit limit"
                if over
                else f"{counted(len(found), 'customer')} near their credit limit"
            ),
            text="Open invoices take these customers over or close to their credit limit:\n\n"
            + "\n".join(lines)
            + f"\n\n{rt.settings.base_url}/c/{company.slug}/insight\n",
            activity="owner.notified",
        )
        return len(found)
