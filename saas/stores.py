"""The app's shared JPKI stores, one set per process.

The revocation index, the lookup pool and the Redis connection pool outlive requests and
jobs: rebuilt per login they would reload the index and open a pool every time. The
ingesting code and the verifying code of one process share the set, so a CRL ingested
here is seen here at once (other processes see it within RevocationStore.STATE_TTL).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from saas import db
from saas.jpki.store import NonceStore, PersonRegistry, RedisNonceStore, RevocationStore


@dataclass(frozen=True)
class JPKIStores:
    nonces: NonceStore | RedisNonceStore
    revocations: RevocationStore
    persons: PersonRegistry


def jpki_stores() -> JPKIStores:
    cached = current_app.extensions.get("kakehashi.jpki_stores")
    if cached is None:
        engine = db.get_database().engine
        nonces: NonceStore | RedisNonceStore
        if current_app.config.get("REDIS_URL"):
            from redis import Redis

            nonces = RedisNonceStore(Redis.from_url(current_app.config["REDIS_URL"]))
        else:
            nonces = NonceStore(engine)
        cached = JPKIStores(nonces, RevocationStore(engine), PersonRegistry(engine))
        current_app.extensions["kakehashi.jpki_stores"] = cached
    return cached
