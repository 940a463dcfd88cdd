"""The app's shared JPKI stores, one set per process.

The revocation index, the lookup pool and the Redis connection pool outlive requests and
jobs: rebuilt per login they would reload the index and open a pool every time. The
ingesting code and the verifying code of one process share the set, so a CRL ingested
here is seen here at once (other processes see it within RevocationStore.STATE_TTL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        client = redis()
        if client is not None:
            nonces = RedisNonceStore(client)
        else:
            nonces = NonceStore(engine)
        cached = JPKIStores(nonces, RevocationStore(engine), PersonRegistry(engine))
        current_app.extensions["kakehashi.jpki_stores"] = cached
    return cached


def redis() -> Any:
    """The app's Redis client (one connection pool per process), or None without REDIS_URL."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    client = current_app.extensions.get("kakehashi.redis")
    if client is None:
        from redis import Redis

        client = current_app.extensions["kakehashi.redis"] = Redis.from_url(url)
    return client
