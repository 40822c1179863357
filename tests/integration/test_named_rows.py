"""`sync.db.named_rows`: a read's rows as named tuples, their fields checked against the columns."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from sqlalchemy import select

from arbridge.sync import db
from arbridge.sync.model import Company


class _Named(NamedTuple):
    id: int
    slug: str


class _Swapped(NamedTuple):
    slug: str
    id: int


def test_rows_come_back_as_the_record_with_each_column_in_its_field(rt, demo_company) -> None:
    with rt.sessions() as s:
        rows = db.named_rows(s, select(Company.id, Company.slug), _Named)
    assert rows == [_Named(demo_company.id, demo_company.slug)]
    assert type(rows[0]) is _Named and rows[0].slug == demo_company.slug


def test_a_record_whose_fields_do_not_name_the_columns_in_order_is_refused(
    rt, demo_company
) -> None:
    with rt.sessions() as s, pytest.raises(TypeError, match="does not name the columns"):
        db.named_rows(s, select(Company.id, Company.slug), _Swapped)
