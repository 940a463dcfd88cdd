"""Login counters for the dashboard: one row per day (Japan time), client and outcome,
incremented in the login's own transaction with an upsert (no read-modify-write race)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from saas import clock, db
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
    statement = db.dialect_insert(LoginStat).values(tenant_id=tenant_id, day=today(), client_id=client_id,
                                         outcome=outcome[:40], count=1)
    db.session.execute(statement.on_conflict_do_update(
        index_elements=["tenant_id", "day", "client_id", "outcome"],
        set_={"count": LoginStat.count + 1}))


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
