"""One-time values (client assertion ``jti``): the first use wins, a replay is refused.

With Redis configured the check is one ``SET NX`` that expires with the value; otherwise
the row joins the request's transaction (a savepoint keeps a concurrent duplicate from
failing the request as anything but a replay).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from saas import clock, db, stores
from saas.oidc.models import UsedAssertion


def first_use(key: str, *, expires_at: datetime) -> bool:
    now = clock.now()
    redis = stores.redis()
    if redis is not None:
        milliseconds = max(1, int((expires_at - now).total_seconds() * 1000))
        return bool(redis.set(f"kakehashi:jti:{key}", b"1", nx=True, px=milliseconds))
    try:
        with db.session.begin_nested():
            db.session.add(UsedAssertion(key=key, expires_at=expires_at))
    except IntegrityError:
        return False
    return True


def purge() -> int:
    """Forget values whose time has passed (a replay of those fails on ``exp`` anyway)."""
    return db.session.execute(delete(UsedAssertion).where(UsedAssertion.expires_at < clock.now())).rowcount
