"""Bulk import of existing members from CSV into one-time link invitations.

The file (UTF-8, with or without BOM, or Shift_JIS as Japanese spreadsheets save it) has a
header row with a ``local_id`` column (``会員番号`` is accepted too). Every row is checked
first and the preview lists each bad row with its line and reason; the import then runs as
an rq job on the ``imports`` queue in chunks, each committed with the progress, so the
console shows a progress bar and a killed job resumes where it stopped. Re-importing is
idempotent: a local id already linked, or with an invitation still open, is skipped. The
codes are kept encrypted for the tenant to download and send.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from saas import clock, db, jobs
from saas.db import tenant_scope
from saas.errors import NotFound, ServiceError
from saas.idlink import services
from saas.idlink.models import IdLink, ImportBatch, LinkInvitation
from saas.sealing import seal, unseal
from saas.tenants.models import Tenant

MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 200_000
CHUNK = 2_000
KEPT_ERRORS = 1_000
HEADERS = ("local_id", "会員番号")


class CsvImportError(ServiceError):
    status = 422


def decode(raw: bytes) -> tuple[str, str]:
    """(text, encoding name) of an uploaded CSV."""
    for encoding, name in (("utf-8-sig", "UTF-8"), ("cp932", "Shift_JIS")):
        try:
            return raw.decode(encoding), name
        except UnicodeDecodeError:
            continue
    raise CsvImportError(_l("The file is neither UTF-8 nor Shift_JIS text."), code="unreadable_file", field="file")


def parse(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str, str]]]:
    """(good rows as (line, local id), bad rows as (line, value, reason)); the header is line 1."""
    reader = csv.reader(io.StringIO(text))
    header = [cell.strip().lower() for cell in next(reader, [])]
    column = next((header.index(name) for name in HEADERS if name in header), None)
    if column is None:
        raise CsvImportError(_l("The first row must name the columns, with one called local_id (or 会員番号)."),
                           code="missing_header", field="file")
    good: list[tuple[int, str]] = []
    bad: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines are not members
        value = row[column].strip() if column < len(row) else ""
        try:
            local_id = services.checked_local_id(value)
        except ServiceError as error:
            bad.append((line, value[:100], str(error.message)))
            continue
        if local_id in seen:
            bad.append((line, local_id, str(_l("listed already on line %(line)d", line=seen[local_id]))))
            continue
        seen[local_id] = line
        good.append((line, local_id))
        if len(good) + len(bad) > MAX_ROWS:
            raise CsvImportError(_l("A file has at most %(count)d rows; split it.", count=MAX_ROWS),
                               code="too_many_rows", field="file")
    return good, bad


def preview(tenant: Tenant, *, filename: str, raw: bytes, by: str) -> ImportBatch:
    if not raw:
        raise CsvImportError(_l("Choose a CSV file."), code="no_file", field="file")
    if len(raw) > MAX_BYTES:
        raise CsvImportError(_l("The file is larger than 20 MB; split it."), code="file_too_large", field="file")
    text, encoding = decode(raw)
    good, bad = parse(text)
    batch = ImportBatch(tenant_id=tenant.id, filename=(filename or "members.csv")[:200], encoding=encoding,
                        status="previewed", content=text, total_rows=len(good), error_count=len(bad),
                        errors=json.dumps(bad[:KEPT_ERRORS], ensure_ascii=False), created_by=by[:200],
                        created_at=clock.now())
    db.session.add(batch)
    db.session.flush()
    return batch


def latest() -> list[ImportBatch]:
    return list(db.session.scalars(select(ImportBatch).order_by(ImportBatch.id.desc()).limit(10)))


def get(public_id: str) -> ImportBatch:
    batch = db.session.scalar(select(ImportBatch).where(ImportBatch.public_id == public_id))
    if batch is None:
        raise NotFound(_l("There is no such import."), code="import_not_found")
    return batch


def start(batch: ImportBatch) -> None:
    """Queue the import, or queue it again to resume one whose worker stopped."""
    if batch.status == "done":
        raise CsvImportError(_l("This import is done."), code="invalid_state", status=409)
    batch.status = "queued" if batch.status == "previewed" else batch.status
    db.session.flush()
    jobs.enqueue("imports", run, batch.id, batch.tenant_id)


def _context(batch: ImportBatch) -> str:
    return f"import:{batch.tenant_id}:{batch.public_id}"


def run(batch_id: int, tenant_id: int) -> dict[str, int]:
    """The job: invitations for the good rows, a chunk per commit, from where it stopped.
    Each chunk is taken under a lock on the batch, so two workers never do one twice."""
    with tenant_scope(db.session, tenant_id):
        batch = db.session.get(ImportBatch, batch_id)
        if batch is None or batch.status == "done" or batch.content is None:
            return {"created": 0}
        tenant = db.session.get(Tenant, tenant_id)
        assert tenant is not None
        good, _bad = parse(batch.content)
        # What is linked or invited already, read once (a query per chunk with thousands of
        # ids is slow on PostgreSQL's generic plans); rows of one file are distinct.
        taken = set(db.session.scalars(select(IdLink.local_id).where(IdLink.status == "active")))
        taken |= set(db.session.scalars(select(LinkInvitation.local_id).where(
            LinkInvitation.used_at.is_(None), LinkInvitation.transfer.is_(False),
            LinkInvitation.expires_at > clock.now())))
        db.session.commit()
        while True:
            batch = db.session.get(ImportBatch, batch_id, with_for_update=True, populate_existing=True)
            assert batch is not None
            offset = batch.processed_rows
            if batch.status == "done" or offset >= len(good):
                break
            batch.status = "running"
            codes = unseal(batch.result_sealed, _context(batch)).decode() if batch.result_sealed \
                else "local_id,code\n"
            chunk = [local_id for _line, local_id in good[offset:offset + CHUNK]]
            fresh = [local_id for local_id in chunk if local_id not in taken]
            issued = services.invite_all(tenant, fresh)
            codes += "".join(f"{item['local_id']},{item['code']}\n" for item in issued)
            batch.processed_rows = min(offset + CHUNK, len(good))
            batch.created_count += len(issued)
            batch.skipped_count += len(chunk) - len(issued)
            batch.result_sealed = seal(codes.encode(), _context(batch))
            db.session.commit()  # this chunk is done whatever happens to the next
            jobs.report_progress(batch.processed_rows, len(good))
        if batch.status != "done":
            batch.status, batch.finished_at, batch.content = "done", clock.now(), None
        db.session.commit()
        return {"created": batch.created_count, "skipped": batch.skipped_count}


CODES_HEADER = ("local_id", "code")


def codes(batch: ImportBatch) -> list[list[str]]:
    """The (local id, one-time code) pairs an import made, decrypted."""
    if batch.result_sealed is None:
        raise NotFound(_l("This import has no codes yet."), code="import_not_found")
    return [line.split(",") for line in unseal(batch.result_sealed, _context(batch)).decode().splitlines()[1:]]


def describe(batch: ImportBatch) -> dict[str, Any]:
    return {"id": batch.public_id, "filename": batch.filename, "encoding": batch.encoding, "status": batch.status,
            "rows": batch.total_rows, "errors": batch.error_count, "processed": batch.processed_rows,
            "created": batch.created_count, "skipped": batch.skipped_count,
            "percent": 100 if batch.status == "done" else int(100 * batch.processed_rows / max(1, batch.total_rows))}
