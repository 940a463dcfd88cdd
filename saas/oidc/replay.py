"""One-time values (client assertion ``jti``): the first use wins, a replay is refused.

With Redis configured the check is one ``SET NX`` that expires with the value; otherwise
one ``INSERT … ON CONFLICT DO NOTHING`` that stands at once (:func:`db.write_now`): a
spent assertion stays spent whatever the request comes to, and of two concurrent uses
exactly one inserts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete

from saas import clock, db, stores
from saas.oidc.models import UsedAssertion


def first_use(key: str, *, expires_at: datetime) -> bool:
    now = clock.now()
    redis = stores.redis()
    if redis is not None:
        milliseconds = max(1, int((expires_at - now).total_seconds() * 1000))
        return bool(redis.set(f"kakehashi:jti:{key}", b"1", nx=True, px=milliseconds))
    statement = (db.dialect_insert(UsedAssertion).values(key=key, expires_at=expires_at)
                 .on_conflict_do_nothing(index_elements=[UsedAssertion.key]).returning(UsedAssertion.key))
    return bool(db.write_now(statement))


def purge() -> int:
    """Forget values whose time has passed (a replay of those fails on ``exp`` anyway)."""
    return db.session.execute(delete(UsedAssertion).where(UsedAssertion.expires_at < clock.now())).rowcount
