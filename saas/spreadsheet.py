"""CSV downloads that a spreadsheet opens safely: UTF-8 with a BOM (so Excel reads Japanese),
and no cell a person typed taken for a formula. Large ones stream page by page from a
session of their own (the request's is gone while the body streams)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from flask import Response
from sqlalchemy import Select
from sqlalchemy.orm import Session

from saas import db

PAGE = 1000


def cell(value: Any) -> str:
    """The text of a cell; typed text that a spreadsheet would run as a formula is quoted."""
    if not isinstance(value, str):
        return "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The BOM, the header, then the rows a page at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    yield "\ufeff"
    writer.writerow(header)
    for count, row in enumerate(rows, 1):
        writer.writerow([cell(value) for value in row])
        if count % PAGE == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def download(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    response = Response(lines(header, rows), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def tenant_pages(tenant_id: int, listing: Select[Any], key: Any,
                 row: Callable[[Any], Sequence[Any]]) -> Iterator[Sequence[Any]]:
    """Every row of ``listing`` (ordered by the column ``key``) for one tenant, read in keyset
    pages of PAGE from a session of its own. Call it inside the request: the rows are read
    later, while the body streams."""
    engine = db.get_database().engine

    def rows() -> Iterator[Sequence[Any]]:
        with Session(engine) as reader, db.tenant_scope(reader, tenant_id):
            after = None
            while True:
                page = listing if after is None else listing.where(key > after)
                batch = list(reader.scalars(page.limit(PAGE)))
                for found in batch:
                    yield row(found)
                if len(batch) < PAGE:
                    return
                after = getattr(batch[-1], key.key)
                reader.expunge_all()

    return rows()
