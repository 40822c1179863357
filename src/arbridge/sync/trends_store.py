"""The KPI trends (each KPI for each of the last 12 calendar months, period = that month, as of
its last day) in one pass: five queries over the figures stored at sync (sync.settled_store)
give the totals and allocations per day, the credit notes and the closings per day, and the
receivables on the 13 month-ends, each month's sales and closings come from those sums. The
same figures as `store.kpi_report` run on each month's last day, at about the cost of one such
run instead of twelve.

One difference, for invoices that closed, reopened (a refund, a restatement) and closed again:
each closing is counted in the month of its last closing up to the latest month-end, where
`kpi_report` on an earlier month-end counts it in the month it first closed.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from arbridge.collections.insight import trend_months
from arbridge.collections.kpis import (
    COUNTBACK_BLOCK_DAYS,
    COUNTBACK_BLOCKS,
    Kpis,
    day_sums,
    kpis_from_sums,
    receivables_on,
    sales_blocks,
)
from arbridge.money import exponent
from arbridge.sync.model import Company
from arbridge.sync.settled_store import closed_by_day, issued_by_day, settled_by_day
from arbridge.sync.store import irregular_closings, net_sales


def kpi_trends(session: Session, company: Company, as_of: date) -> list[Kpis]:
    months = trend_months(as_of)
    ends = [months[0][0] - timedelta(days=1)] + [end for _start, end in months]  # E0 .. E12
    last = ends[-1]
    window = ends[1] - timedelta(days=COUNTBACK_BLOCK_DAYS * COUNTBACK_BLOCKS - 1)
    # Receivables on each month-end, and the net credit sales per day of the window the
    # countbacks reach, from the figures stored at sync (sync.settled_store).
    issued = issued_by_day(session, company.id, last)
    ar = receivables_on(ends, issued, settled_by_day(session, company.id, last))
    sold = day_sums(net_sales(session, company, issued, window, last))
    # Closings per month (as of the last month-end; see the module's note on reopened ones).
    closings = [[0, 0, 0] for _ in ends]
    first = ends[0] + timedelta(days=1)
    for day, n, to_pay, on_time in closed_by_day(session, company.id, first, last):
        month = closings[bisect_left(ends, day)]
        month[0] += n
        month[1] += to_pay
        month[2] += on_time
    for issued_on, due_on, closed_on in irregular_closings(session, company.id, last, last, first):
        month = closings[bisect_left(ends, closed_on)]
        month[0] += 1
        month[1] += (closed_on - issued_on).days
        month[2] += 1 if closed_on <= due_on else 0

    places = exponent(company.home_currency)

    def amount(minor: int) -> Decimal:
        return Decimal(minor).scaleb(-places)

    out = []
    for m, (start, end) in enumerate(months, 1):
        closed, to_pay, on_time = closings[m]
        out.append(
            kpis_from_sums(
                start,
                end,
                (end - start).days + 1,
                amount(ar[m - 1].total),
                amount(ar[m].total),
                amount(ar[m].current),
                amount(sold(start, end)),
                [amount(b) for b in sales_blocks(end, sold)],
                closed,
                on_time,
                to_pay,
            )
        )
    return out
