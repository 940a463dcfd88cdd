"""Forgetting what the provider no longer needs: run ``kakehashi oidc purge`` from cron.

Each kind of row is kept as long as it can still matter, then deleted:

- authorization codes: as long as a family they granted can be refreshed, past their
  expiry (a replay of a spent code revokes what it granted, however late);
- authorization requests, device authorizations and sign transactions: an hour past expiry;
- grants: a day after their family can no longer be refreshed (their tokens go with them);
- login sessions: a day after they ended or expired;
- client-assertion ``jti`` rows (used without Redis): once the assertion has expired.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_

from saas import clock, db
from saas.db import all_tenants
from saas.oidc import replay
from saas.oidc.models import (
    AuthorizationCode,
    AuthorizationRequest,
    DeviceAuthorization,
    Grant,
    LoginSession,
    SignTransaction,
)
from saas.oidc.server import REFRESH_LIFETIME

SHORT_GRACE = timedelta(hours=1)
LONG_GRACE = timedelta(days=1)


def purge() -> dict[str, int]:
    """Delete expired rows of every tenant; how many of each kind went."""
    now = clock.now()
    short, long = now - SHORT_GRACE, now - LONG_GRACE
    removed: dict[str, int] = {}
    with all_tenants(db.session):
        removed["authorization_codes"] = db.session.execute(delete(AuthorizationCode).where(
            AuthorizationCode.expires_at < now - REFRESH_LIFETIME)).rowcount
        for name, model in (("authorization_requests", AuthorizationRequest),
                            ("device_authorizations", DeviceAuthorization),
                            ("sign_transactions", SignTransaction)):
            removed[name] = db.session.execute(delete(model).where(model.expires_at < short)).rowcount
        removed["grants"] = db.session.execute(delete(Grant).where(Grant.expires_at < long)).rowcount
        removed["sessions"] = db.session.execute(delete(LoginSession).where(
            or_(LoginSession.expires_at < long, LoginSession.ended_at < long))).rowcount
    removed["used_assertions"] = replay.purge()
    return removed
