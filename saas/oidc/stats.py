"""Login counters for the dashboard: one row per day (Japan time), client and outcome.

Each process adds its logins up in memory and writes the sums in batches (saas/batches.py)
with an upsert (no read-modify-write race): a login takes no lock on the shared counter
row, which every concurrent login of that client would otherwise queue on until its
commit. With ``BATCH_FLUSH_SECONDS=0`` the count goes into the login's own transaction."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from saas import batches, clock, db
from saas.oidc.models import LoginStat, OIDCClient

JST = ZoneInfo("Asia/Tokyo")
SUCCESS = "success"
# Short names of the failures, for the dashboard (codes not listed show as themselves).
LABELS: dict[str, Any] = {
    "expired": _l("Certificate expired"),
    "not_yet_valid": _l("Certificate not valid yet"),
    "revoked": _l("Certificate revoked"),
    "untrusted": _l("Card from an untrusted issuer"),
    "test_certificate": _l("Test card refused"),
    "revocation_unknown": _l("Status could not be checked"),
    "revocation_stale": _l("Status could not be checked"),
    "replayed": _l("Replayed attempt"),
    "nonce_expired": _l("Took too long"),
    "access_denied": _l("Cancelled or refused"),
    "login_required": _l("Another person's card"),
    "invalid_request": _l("Invalid request"),
}


def label(code: str) -> str:
    kind = code.partition(":")[0]
    return str(LABELS.get(kind, code))


def today() -> date:
    return clock.now().astimezone(JST).date()


def count(tenant_id: int, client_id: int, outcome: str) -> None:
    line = (tenant_id, today(), client_id, outcome[:40])
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if batches.batched(app):
        COUNTS.add(app, line)
    else:
        db.session.execute(_upsert(db.dialect_insert(LoginStat)), [_row(line, 1)])


def _row(line: tuple[int, date, int, str], times: int) -> dict[str, Any]:
    tenant_id, day, client_id, outcome = line
    return {"tenant_id": tenant_id, "day": day, "client_id": client_id, "outcome": outcome, "count": times}


def _upsert(statement: Any) -> Any:
    """The INSERT, adding its count to the row's when the row is there."""
    return statement.on_conflict_do_update(
        index_elements=["tenant_id", "day", "client_id", "outcome"],
        set_={"count": LoginStat.__table__.c.count + statement.excluded.count})


def _write_counts(connection: Connection, lines: list[tuple[int, date, int, str]]) -> None:
    # Sorted: two processes upserting the same rows take their locks in the same order.
    summed = sorted(Counter(lines).items())
    connection.execute(_upsert(db.dialect_insert(LoginStat.__table__, connection)),
                       [_row(line, times) for line, times in summed])


COUNTS = batches.Batched("login counters", _write_counts)


def per_day(days: int = 14) -> list[tuple[date, int, int]]:
    """(day, successes, failures) for the last ``days`` days, oldest first, zeros included."""
    first = today() - timedelta(days=days - 1)
    rows = db.session.execute(select(LoginStat.day, LoginStat.outcome, func.sum(LoginStat.count))
                              .where(LoginStat.day >= first).group_by(LoginStat.day, LoginStat.outcome))
    totals: dict[date, list[int]] = {first + timedelta(days=n): [0, 0] for n in range(days)}
    for day, outcome, total in rows:
        totals.setdefault(day, [0, 0])[0 if outcome == SUCCESS else 1] += int(total)
    return [(day, ok, failed) for day, (ok, failed) in sorted(totals.items())]


def per_client(days: int = 30) -> list[tuple[str, int, int]]:
    """(client name, successes, failures) over the last ``days`` days, busiest first."""
    first = today() - timedelta(days=days - 1)
    rows = db.session.execute(
        select(OIDCClient.name, LoginStat.outcome, func.sum(LoginStat.count))
        .join(OIDCClient, (OIDCClient.id == LoginStat.client_id) & (OIDCClient.tenant_id == LoginStat.tenant_id))
        .where(LoginStat.day >= first).group_by(OIDCClient.name, LoginStat.outcome))
    totals: dict[str, list[int]] = {}
    for name, outcome, total in rows:
        totals.setdefault(name, [0, 0])[0 if outcome == SUCCESS else 1] += int(total)
    return sorted(((name, ok, failed) for name, (ok, failed) in totals.items()), key=lambda r: -(r[1] + r[2]))


def failures(days: int = 30) -> list[tuple[str, int]]:
    """(failure code, count) over the last ``days`` days, commonest first."""
    first = today() - timedelta(days=days - 1)
    rows = db.session.execute(select(LoginStat.outcome, func.sum(LoginStat.count))
                              .where(LoginStat.day >= first, LoginStat.outcome != SUCCESS)
                              .group_by(LoginStat.outcome))
    return sorted(((outcome, int(total)) for outcome, total in rows), key=lambda r: -r[1])
