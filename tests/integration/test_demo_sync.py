from __future__ import annotations

from sqlalchemy import func, select

from arbridge.sync.model import Invoice
from arbridge.sync.store import aging_report, company_today


def test_demo_company_syncs_every_bucket(rt, demo_company):
    with rt.sessions() as s:
        aging = aging_report(s, demo_company, company_today(demo_company, rt.clock))
        assert s.scalar(select(func.count()).select_from(Invoice)) == 300
    assert all(aging.counts[b] > 0 for b in aging.counts), aging.counts
