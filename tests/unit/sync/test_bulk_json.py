"""JSON columns written in bulk on SQLite (issue 14: one encoder for a batch's documents) store
exactly the text SQLAlchemy's own bind processing stores."""

from __future__ import annotations

import pytest
from sqlalchemy import JSON, Column, Integer, MetaData, Table
from sqlalchemy.dialects import sqlite

from arbridge.sync.bulk import _converted, _processor

TABLE = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("doc", JSON))
DIALECT = sqlite.dialect()


def test_json_documents_written_in_bulk_are_the_text_sqlalchemy_writes():
    values = [
        {"a": 'é\u2028<x>"', "b": [1, 2.5, None, True], "c": {"d": 1e100, "n": float("inf")}},
        [1, "x", {"nested": []}],
        {},
        None,
        "plain",
        3,
    ]
    own = TABLE.c.doc.type.dialect_impl(DIALECT).bind_processor(DIALECT)
    written = list(
        _converted([{"doc": v} for v in values], "doc", _processor(TABLE.c.doc, DIALECT))
    )
    assert written == [own(v) for v in values]


def test_a_document_json_cannot_encode_is_refused_in_bulk_as_one_at_a_time():
    with pytest.raises(TypeError, match="not JSON serializable"):
        _converted([{"doc": {"x": object()}}], "doc", _processor(TABLE.c.doc, DIALECT))
