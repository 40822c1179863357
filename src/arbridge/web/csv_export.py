"""CSV downloads of the owner's lists (collections/exports.py neutralises formula cells)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from flask import Response

from arbridge.collections.exports import Cell, to_csv


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Response:
    response = Response(to_csv(header, rows), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
