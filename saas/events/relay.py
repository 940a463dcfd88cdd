"""Getting events out: the relay claims due deliveries, workers post them.

The database is the source of truth; Redis only carries work. The relay
(``kakehashi events relay``, or a thread of the web process in the embedded set-up)
repeatedly:

0. fans new events out: one delivery per enabled endpoint of the event's tenant that
   subscribes to its type (one relay at a time, so deliveries follow event order);
1. claims due deliveries with a lease (``leased_until``): pending, due, not leased, their
   endpoint enabled, and no earlier delivery of the same subject to the same endpoint
   still pending (order per subject);
2. hands them in batches to the ``webhooks`` job queue.

A worker posts a batch concurrently, then records every attempt: 2xx succeeds; anything
else is retried with exponential backoff and jitter until the retry budget is spent
(``dead``, visible in the console, redeliverable by hand). Redis down: the enqueue fails,
the lease is released, the relay tries again later, nothing is lost. A worker killed
mid-batch: the lease runs out and the relay claims the deliveries again; the receiver
sees the same ``Idempotency-Key`` (the event id) and the same body.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import random
import socket
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app
from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from saas import clock, db, jobs
from saas.db import all_tenants
from saas.events import signatures, ssf
from saas.events.models import Delivery, DeliveryAttempt, DeliveryStatus, Event, WebhookEndpoint
from saas.events.services import relying_party_view, signing_secrets, subscribes
from saas.tenants.models import ApiKey, Tenant

log = logging.getLogger("kakehashi.events")

BATCH = 500  # deliveries per job
CONCURRENCY = 16  # posts at once inside one job
MAX_BACKOFF = timedelta(hours=6)
USER_AGENT = "Kakehashi-Webhooks/1"


# -- fanning out --------------------------------------------------------------------------------

FAN_OUT_LOCK = 0x6B6B_6576  # "kkev": one fan-out at a time across relays (PostgreSQL advisory lock)


def fan_out(limit: int = 2000) -> int:
    """Turn up to ``limit`` new events into deliveries; how many events were fanned out."""
    now = clock.now()
    with all_tenants(db.session):
        if db.session.get_bind().dialect.name == "postgresql" and not db.session.scalar(
                select(func.pg_try_advisory_xact_lock(FAN_OUT_LOCK))):
            return 0  # another relay is at it
        fresh = db.session.execute(
            select(Event.id, Event.tenant_id, Event.type, Event.subject).where(Event.dispatched_at.is_(None))
            .order_by(Event.id).limit(limit)).all()
        if not fresh:
            return 0
        endpoints: dict[int, list[tuple[WebhookEndpoint, str | None]]] = {}
        # An endpoint turned off (or a paused stream) holds its events until it is on again;
        # only a disabled stream drops them (SSF 1.0 §8.1.2). A relying party's endpoint
        # comes with its key's public id while the key is live (a revoked or expired key's
        # endpoint hears nothing more).
        for endpoint, key in db.session.execute(
                select(WebhookEndpoint, ApiKey.public_id).outerjoin(ApiKey, and_(
                    ApiKey.id == WebhookEndpoint.relying_party_key_id, ApiKey.tenant_id == WebhookEndpoint.tenant_id,
                    ApiKey.live_at(now)))
                .where(or_(WebhookEndpoint.status_reason.is_(None), WebhookEndpoint.status_reason != "disabled"),
                       WebhookEndpoint.tenant_id.in_({tenant_id for _, tenant_id, _, _ in fresh}))):
            endpoints.setdefault(endpoint.tenant_id, []).append((endpoint, key))
        fetchers = _fetchers([event_id for event_id, tenant_id, type, _ in fresh
                              if any(endpoint.relying_party_key_id is not None and subscribes(endpoint, type)
                                     for endpoint, _key in endpoints.get(tenant_id, ()))])
        rows = [{"tenant_id": tenant_id, "event_id": event_id, "endpoint_id": endpoint.id, "subject": subject,
                 "status": DeliveryStatus.PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now}
                for event_id, tenant_id, type, subject in fresh
                for endpoint, key in endpoints.get(tenant_id, ()) if subscribes(endpoint, type)
                and (endpoint.relying_party_key_id is None or key in fetchers.get(event_id, ()))]
        if rows:
            db.session.execute(insert(Delivery), rows)
        db.session.execute(update(Event).where(Event.id.in_([row[0] for row in fresh]))
                           .values(dispatched_at=now).execution_options(synchronize_session=False))
    return len(fresh)


def _fetchers(event_ids: list[int]) -> dict[int, set[str]]:
    """The API keys each event names as having fetched its subject (``data.fetched_by``):
    the relying parties whose own endpoints hear of it."""
    if not event_ids:
        return {}
    return {event_id: set((json.loads(payload).get("data") or {}).get("fetched_by") or ())
            for event_id, payload in db.session.execute(select(Event.id, Event.payload)
                                                        .where(Event.id.in_(event_ids)))}


# -- claiming -------------------------------------------------------------------------------

def claim(limit: int = 1000) -> tuple[str, list[int]]:
    """Lease up to ``limit`` due deliveries, oldest first, at most one per subject and
    endpoint: (the lease's token, the ids)."""
    now = clock.now()
    token = uuid.uuid4().hex
    lease = now + timedelta(seconds=current_app.config["WEBHOOK_LEASE_SECONDS"])
    earlier = aliased(Delivery)
    due = (select(Delivery.id)
           .join(WebhookEndpoint, and_(WebhookEndpoint.id == Delivery.endpoint_id,
                                       WebhookEndpoint.tenant_id == Delivery.tenant_id))
           .where(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now,
                  or_(Delivery.leased_until.is_(None), Delivery.leased_until < now),
                  WebhookEndpoint.enabled.is_(True), WebhookEndpoint.delivery == "push",
                  or_(WebhookEndpoint.relying_party_key_id.is_(None), exists().where(
                      ApiKey.id == WebhookEndpoint.relying_party_key_id, ApiKey.tenant_id == WebhookEndpoint.tenant_id,
                      ApiKey.live_at(now))),
                  ~exists().where(earlier.endpoint_id == Delivery.endpoint_id,
                                  earlier.subject == Delivery.subject,
                                  earlier.status == DeliveryStatus.PENDING, earlier.event_id < Delivery.event_id))
           .order_by(Delivery.event_id).limit(limit))
    with all_tenants(db.session):
        if db.session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(of=Delivery, skip_locked=True)
        candidates = list(db.session.scalars(due))
        if not candidates:
            return token, []
        # Conditional on the lease still being free: two relays never hold one delivery.
        claimed = db.session.scalars(
            update(Delivery).where(Delivery.id.in_(candidates),
                                   or_(Delivery.leased_until.is_(None), Delivery.leased_until < now))
            .values(leased_until=lease, lease_token=token).returning(Delivery.id)
            .execution_options(synchronize_session=False))
        return token, sorted(claimed)


def release(token: str, ids: list[int]) -> None:
    with all_tenants(db.session):
        db.session.execute(update(Delivery).where(Delivery.id.in_(ids), Delivery.lease_token == token)
                           .values(leased_until=None, lease_token=None)
                           .execution_options(synchronize_session=False))


def relay_once(limit: int = 1000) -> int:
    """Fan new events out, claim what is due and queue it; how many deliveries were queued."""
    fan_out()
    db.session.commit()
    token, ids = claim(limit)
    db.session.commit()
    queued = 0
    for start in range(0, len(ids), BATCH):
        batch = ids[start:start + BATCH]
        try:
            jobs.runner().submit(jobs.PendingJob(str(uuid.uuid4()), "webhooks", "saas.events.relay:deliver",
                                                 (token, batch), {}, 300))
            queued += len(batch)
        except Exception:  # noqa: BLE001 - Redis down: the rows stay pending, tried again later
            log.warning("could not queue webhook deliveries; they stay pending", exc_info=True)
            release(token, ids[start:])
            db.session.commit()
            break
    return queued


# -- posting ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outgoing:
    delivery_id: int
    tenant_id: int
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def deliver(token: str, ids: list[int]) -> dict[str, int]:
    """Post the deliveries ``ids`` still held by the lease ``token`` and record each
    attempt (a ``webhooks`` job). A lease that ran out and was claimed again is not ours."""
    now = clock.now()
    outgoing = _prepare(token, ids, now)
    if not outgoing:
        return {"succeeded": 0, "failed": 0}
    config = current_app.config
    allow_private = bool(config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"])
    timeout = float(config["WEBHOOK_TIMEOUT_SECONDS"])
    with ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(outgoing))) as pool:
        outcomes = list(pool.map(lambda item: post(item, allow_private=allow_private, timeout=timeout), outgoing))
    return _record(token, outgoing, outcomes)


def _prepare(token: str, ids: list[int], now: datetime) -> list[Outgoing]:
    prepared: list[Outgoing] = []
    with all_tenants(db.session):
        rows = db.session.execute(
            select(Delivery, Event, WebhookEndpoint, Tenant)
            .join(Event, and_(Event.id == Delivery.event_id, Event.tenant_id == Delivery.tenant_id))
            .join(WebhookEndpoint, and_(WebhookEndpoint.id == Delivery.endpoint_id,
                                        WebhookEndpoint.tenant_id == Delivery.tenant_id))
            .join(Tenant, Tenant.id == Delivery.tenant_id)
            .where(Delivery.id.in_(ids), Delivery.status == DeliveryStatus.PENDING,
                   Delivery.lease_token == token)
            .order_by(Delivery.id)).all()
        secrets_of: dict[int, list[str]] = {}
        for delivery, event, endpoint, tenant in rows:
            if endpoint.format == "set":  # a Shared Signals push stream (RFC 8935)
                prepared.append(Outgoing(delivery.id, delivery.tenant_id, endpoint.url,
                                         ssf.security_event_token(tenant, endpoint, event).encode(),
                                         ssf.push_headers(tenant, endpoint)))
                continue
            if endpoint.id not in secrets_of:
                secrets_of[endpoint.id] = signing_secrets(tenant, endpoint, now)
            body = (relying_party_view(event.payload) if endpoint.relying_party_key_id is not None
                    else event.payload.encode())
            prepared.append(Outgoing(delivery.id, delivery.tenant_id, endpoint.url, body, {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": USER_AGENT,
                signatures.HEADER: signatures.sign(body, secrets_of[endpoint.id]),
                "Idempotency-Key": event.public_id,
                "Kakehashi-Event-Id": event.public_id,
                "Kakehashi-Event-Type": event.type,
            }))
    return prepared


def post(item: Outgoing, *, allow_private: bool, timeout: float) -> Outcome:
    """One POST; never raises. No redirects are followed. Unless ``allow_private``, a host
    that resolves to a non-public address is refused before any connection is made, and
    the connection goes to the very address that was checked (a second DNS answer cannot
    rebind it into our network)."""
    began = time.perf_counter()
    try:
        status = _post(item.url, item.body, item.headers, timeout, allow_private)
    except (OSError, http.client.HTTPException) as error:
        return Outcome(None, _failure(error), int((time.perf_counter() - began) * 1000))
    return Outcome(status, None if 200 <= status < 300 else f"HTTP {status}",
                   int((time.perf_counter() - began) * 1000))


class RefusedAddress(OSError):
    """The receiver's host resolves to an address webhooks may not reach."""


def _failure(error: BaseException) -> str:
    """What the tenant is told: the kind of failure, not our network's details."""
    if isinstance(error, RefusedAddress):
        return str(error)
    if isinstance(error, socket.gaierror):
        return "the host name could not be resolved"
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {error.verify_message}"[:300]
    if isinstance(error, ssl.SSLError):
        return "TLS handshake failed"
    if isinstance(error, http.client.HTTPException | ConnectionError):
        return "the connection closed without a valid HTTP response"
    return "the connection failed"


def _vetted_connection(allow_private: bool) -> Any:
    """``socket.create_connection`` that resolves once, checks every address, and connects
    only to checked ones."""

    def connect(address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
                source_address: Any = None) -> socket.socket:
        host, port = address
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not allow_private:
            for info in infos:
                if not ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_global:
                    raise RefusedAddress(f"{host} resolves to a non-public address")
        last: OSError | None = None
        for family, kind, proto, _name, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                    sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as error:
                sock.close()
                last = error
        raise last or OSError(f"no address for {host}")

    return connect


# One keep-alive connection per thread and origin. The standard library's client rather
# than requests or urllib3: a webhook needs no cookies, sessions, redirects or retries,
# and http.client costs a third of their CPU per POST (bench/events_bench.py).
_connections = threading.local()


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool) -> int:
    parts = urlsplit(url)
    origin = (parts.scheme, parts.hostname or "", parts.port)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    pool: dict[tuple[str, str, int | None], http.client.HTTPConnection] = _connections.__dict__.setdefault("by_origin", {})
    for fresh in (False, True):
        connection = pool.get(origin)
        reused = connection is not None and not fresh
        if connection is None or fresh:
            if connection is not None:
                connection.close()
            connection = pool[origin] = (
                http.client.HTTPSConnection(origin[1], origin[2], timeout=timeout, context=_tls())
                if parts.scheme == "https" else http.client.HTTPConnection(origin[1], origin[2], timeout=timeout))
            connection._create_connection = _vetted_connection(allow_private)  # type: ignore[attr-defined]
        try:
            connection.request("POST", path, body=body, headers={**headers, "Host": parts.netloc})
            response = connection.getresponse()
            response.read(64 * 1024)  # the body is not used; a little is read to keep the connection
            if response.will_close or not response.isclosed():
                connection.close()
                pool.pop(origin, None)
            return response.status
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            pool.pop(origin, None)
            connection.close()
            if not reused:
                raise  # a new connection failed: that is the answer
            # The receiver closed an idle keep-alive connection: once more on a new one.
    raise AssertionError("unreachable")


_TLS: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    global _TLS
    if _TLS is None:
        _TLS = ssl.create_default_context()
    return _TLS


def _record(token: str, outgoing: list[Outgoing], outcomes: list[Outcome]) -> dict[str, int]:
    now = clock.now()
    config = current_app.config
    budget = int(config["WEBHOOK_MAX_ATTEMPTS"])
    base = float(config["WEBHOOK_RETRY_BASE_SECONDS"])
    succeeded = failed = 0
    with all_tenants(db.session):
        # Only what this lease still holds (a manual redelivery meanwhile wins).
        attempts = dict(db.session.execute(
            select(Delivery.id, Delivery.attempts).where(Delivery.id.in_([o.delivery_id for o in outgoing]),
                                                         Delivery.lease_token == token)).all())
        db.session.execute(insert(DeliveryAttempt), [
            {"tenant_id": item.tenant_id, "delivery_id": item.delivery_id, "attempted_at": now,
             "status_code": outcome.status_code, "error": outcome.error, "duration_ms": outcome.duration_ms}
            for item, outcome in zip(outgoing, outcomes, strict=True)])
        changes = []
        for item, outcome in zip(outgoing, outcomes, strict=True):
            if item.delivery_id not in attempts:
                continue
            count = attempts[item.delivery_id] + 1
            if outcome.succeeded:
                succeeded += 1
                status, next_attempt, delivered = DeliveryStatus.SUCCEEDED, None, now
            else:
                failed += 1
                status = DeliveryStatus.DEAD if count >= budget else DeliveryStatus.PENDING
                next_attempt, delivered = now + backoff(count, base), None
            changes.append({"id": item.delivery_id, "attempts": count, "status": status,
                            "leased_until": None, "lease_token": None, "last_status_code": outcome.status_code,
                            "last_error": outcome.error, "delivered_at": delivered,
                            "next_attempt_at": next_attempt or now})
        if changes:
            db.session.execute(update(Delivery), changes)  # one executemany by primary key
    return {"succeeded": succeeded, "failed": failed}


def backoff(attempts: int, base_seconds: float) -> timedelta:
    """Exponential, capped, with full jitter over its upper half: receivers that failed
    together are not all retried in the same second."""
    ceiling = min(MAX_BACKOFF.total_seconds(), base_seconds * 2 ** (attempts - 1))
    return timedelta(seconds=ceiling * random.uniform(0.5, 1.0))


# -- running the relay -------------------------------------------------------------------------

def run(app: Flask, stop: threading.Event, *, idle: float = 0.5, limit: int = 1000) -> None:
    """Relay until ``stop`` is set: without pause while there is work, ``idle`` when not."""
    failures = 0
    while not stop.is_set():
        try:
            with app.app_context():
                queued = relay_once(limit)
            failures = 0
        except Exception:  # noqa: BLE001 - the database away for a moment: keep relaying
            failures += 1
            log.exception("the webhook relay failed; retrying")
            queued = 0
        if queued < limit:
            stop.wait(min(30.0, idle * (2 ** min(failures, 6))))


def start_in_process(app: Flask) -> threading.Event:
    """The embedded set-up's relay: a daemon thread of the web process."""
    stop = threading.Event()
    threading.Thread(target=run, args=(app, stop), name="kk-webhook-relay", daemon=True).start()
    return stop


# -- forgetting -------------------------------------------------------------------------------------------

def purge(*, older_than: timedelta) -> int:
    """Delete events older than ``older_than`` that nothing still waits to deliver (their
    deliveries and attempt logs go with them); how many events went."""
    cutoff = clock.now() - older_than
    waiting = select(Delivery.event_id).where(Delivery.status == DeliveryStatus.PENDING)
    with all_tenants(db.session):
        return db.session.execute(delete(Event).where(Event.created_at < cutoff, Event.dispatched_at.is_not(None),
                                                      Event.id.not_in(waiting))
                                  .execution_options(synchronize_session=False)).rowcount
