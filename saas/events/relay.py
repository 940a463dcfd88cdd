"""Getting events out: the relay claims due deliveries, workers post them.

The database is the source of truth; Redis only carries work. The relay
(``kakehashi events relay``, or a thread of the web process in the embedded set-up)
repeatedly:

0. fans new events out: one delivery per enabled endpoint of the event's tenant that
   subscribes to its type (one relay at a time, so deliveries follow event order);
1. claims due deliveries with a lease (``leased_until``), the longest due first: pending,
   due, not leased, their endpoint enabled, and no earlier delivery of the same subject to
   the same endpoint still pending (order per subject);
2. hands them in batches to the ``webhooks`` job queue.

A worker posts a batch concurrently, then records every attempt: 2xx succeeds; anything
else is retried with exponential backoff and jitter until the retry budget is spent
(``dead``, visible in the console, redeliverable by hand). Redis down: the enqueue fails,
the lease is released, the relay tries again later, nothing is lost. A worker killed
mid-batch: the lease runs out and the relay claims the deliveries again; the receiver
sees the same ``Idempotency-Key`` (the event id) and the same body.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import json
import logging
import random
import socket
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pycurl
from flask import Flask, current_app
from sqlalchemy import and_, bindparam, delete, exists, func, literal_column, or_, select, tuple_, update
from sqlalchemy.orm import aliased

from saas import clock, db, jobs
from saas.db import all_tenants
from saas.events import signatures, ssf
from saas.events.models import Delivery, DeliveryAttempt, DeliveryStatus, Event, WebhookEndpoint
from saas.events.services import relying_party_view, signing_secrets, subscribes, subscriptions
from saas.ids import first_id_at
from saas.tenants.models import ApiKey, Tenant

log = logging.getLogger("kakehashi.events")

BATCH = 500  # deliveries per job
CONCURRENCY = 16  # posts at once inside one job (on as many connections)
MAX_BACKOFF = timedelta(hours=6)
USER_AGENT = "Kakehashi-Webhooks/1"


_deliveries, _attempts = Delivery.__table__, DeliveryAttempt.__table__


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
        db.commit_may_lag()  # lost in a crash, the events are fanned out again
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
                       db.one_of(WebhookEndpoint.tenant_id, {tenant_id for _, tenant_id, _, _ in fresh}))):
            endpoints.setdefault(endpoint.tenant_id, []).append((endpoint, key))
        wanted = {endpoint.id: subscriptions(endpoint) for found in endpoints.values() for endpoint, _key in found}

        def takes(endpoint: WebhookEndpoint, type: str) -> bool:
            return subscribes(wanted[endpoint.id], type)

        fetchers = _fetchers([event_id for event_id, tenant_id, type, _ in fresh
                              if any(endpoint.relying_party_key_id is not None and takes(endpoint, type)
                                     for endpoint, _key in endpoints.get(tenant_id, ()))])
        rows = [{"tenant_id": tenant_id, "event_id": event_id, "endpoint_id": endpoint.id, "subject": subject,
                 "status": DeliveryStatus.PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now}
                for event_id, tenant_id, type, subject in fresh
                for endpoint, key in endpoints.get(tenant_id, ()) if takes(endpoint, type)
                and (endpoint.relying_party_key_id is None or key in fetchers.get(event_id, ()))]
        db.insert_rows(_deliveries, rows)  # platform code: every row names its tenant
        db.session.execute(update(Event).where(db.one_of(Event.id, [row[0] for row in fresh]))
                           .values(dispatched_at=now).execution_options(synchronize_session=False))
    return len(fresh)


def _fetchers(event_ids: list[int]) -> dict[int, set[str]]:
    """The API keys each event names as having fetched its subject (``data.fetched_by``):
    the relying parties whose own endpoints hear of it."""
    if not event_ids:
        return {}
    return {event_id: set((json.loads(payload).get("data") or {}).get("fetched_by") or ())
            for event_id, payload in db.session.execute(select(Event.id, Event.payload)
                                                        .where(db.one_of(Event.id, event_ids)))}


# -- claiming -------------------------------------------------------------------------------

def _pending(entity: Any) -> Any:
    """``status = 'pending'`` written out, not bound: the planner can then use the
    partial indexes of pending deliveries even in a prepared statement's generic plan."""
    return entity.status == literal_column(f"'{DeliveryStatus.PENDING.value}'")


CLAIM_PAGE = 1000  # due deliveries looked at per step of a claim


def claim(limit: int = 1000) -> tuple[str, list[int]]:
    """Lease up to ``limit`` due deliveries, the longest due first, at most one per
    subject and endpoint: (the lease's token, the ids).

    Due deliveries to endpoints that take pushes now are read in pages in due order (an
    index range of pending ones), and only a page's are asked whether an earlier delivery
    of their subject is still on its way: asking that of the whole backlog and sorting it
    cost 58 ms a claim at 20,000 due. The pages go on past held-up deliveries until
    ``limit`` are found, so a failing delivery that holds up its subject never hides one
    due later behind the ones it blocks (only a backlog mostly held up costs a claim more
    than a page)."""
    now = clock.now()
    token = uuid.uuid4().hex
    lease = now + timedelta(seconds=current_app.config["WEBHOOK_LEASE_SECONDS"])
    due = (select(Delivery.id, Delivery.next_attempt_at)
           .join(WebhookEndpoint, and_(WebhookEndpoint.id == Delivery.endpoint_id,
                                       WebhookEndpoint.tenant_id == Delivery.tenant_id))
           .where(_pending(Delivery), Delivery.next_attempt_at <= now,
                  or_(Delivery.leased_until.is_(None), Delivery.leased_until < now),
                  WebhookEndpoint.enabled.is_(True), WebhookEndpoint.delivery == "push",
                  or_(WebhookEndpoint.relying_party_key_id.is_(None), exists().where(
                      ApiKey.id == WebhookEndpoint.relying_party_key_id,
                      ApiKey.tenant_id == WebhookEndpoint.tenant_id, ApiKey.live_at(now))))
           .order_by(Delivery.next_attempt_at, Delivery.id).limit(CLAIM_PAGE))
    earlier = aliased(Delivery)
    chosen: list[int] = []
    with all_tenants(db.session):
        postgresql = db.session.get_bind().dialect.name == "postgresql"
        if postgresql:
            # A plan for each claim's values: a generic plan for ``id = ANY($1)`` joined the
            # whole pending backlog to find the earlier deliveries (160 ms a claim).
            db.session.connection().exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
        after: tuple[datetime, int] | None = None
        while len(chosen) < limit:
            page = db.session.execute(due if after is None else due.where(
                tuple_(Delivery.next_attempt_at, Delivery.id) > tuple_(*after))).all()
            if not page:
                break
            after = (page[-1].next_attempt_at, page[-1].id)
            # The page's ids as one array: as an IN list of a thousand parameters, the
            # statement was rendered, converted and parsed anew each claim (a third of the
            # relay's CPU an event).
            claimable = (
                select(Delivery.id)
                .where(db.one_of(Delivery.id, [row.id for row in page]), _pending(Delivery),
                       or_(Delivery.leased_until.is_(None), Delivery.leased_until < now),
                       ~exists().where(earlier.endpoint_id == Delivery.endpoint_id,
                                       earlier.subject == Delivery.subject,
                                       _pending(earlier), earlier.event_id < Delivery.event_id))
                .order_by(Delivery.next_attempt_at, Delivery.id).limit(limit - len(chosen)))
            if postgresql:  # another relay's claim in progress: not wait for it, take others
                claimable = claimable.with_for_update(skip_locked=True)
            chosen += db.session.scalars(claimable)
            if len(page) < CLAIM_PAGE:
                break
        if not chosen:
            return token, []
        db.commit_may_lag()  # a lease lost in a crash: the deliveries are claimed again
        # Conditional on the lease still being free: two relays never hold one delivery.
        claimed = db.session.scalars(
            update(Delivery).where(db.one_of(Delivery.id, chosen),
                                   or_(Delivery.leased_until.is_(None), Delivery.leased_until < now))
            .values(leased_until=lease, lease_token=token).returning(Delivery.id)
            .execution_options(synchronize_session=False))
        return token, sorted(claimed)


def release(token: str, ids: list[int]) -> None:
    with all_tenants(db.session):
        db.session.execute(update(Delivery).where(db.one_of(Delivery.id, ids), Delivery.lease_token == token)
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
    # What preparing wrote (a stream's first signing key) stands before anything signed
    # with it goes out, and is not part of the record's transaction, which may lag.
    db.session.commit()
    if not outgoing:
        return {"succeeded": 0, "failed": 0}
    config = current_app.config
    outcomes = post_all(outgoing, allow_private=bool(config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"]),
                        timeout=float(config["WEBHOOK_TIMEOUT_SECONDS"]))
    return _record(token, outgoing, outcomes)


def _prepare(token: str, ids: list[int], now: datetime) -> list[Outgoing]:
    """The requests of the deliveries still held by ``token``: one row of columns each,
    their endpoints and tenants loaded once."""
    prepared: list[Outgoing] = []
    with all_tenants(db.session):
        rows = db.session.execute(
            select(Delivery.id, Delivery.tenant_id, Delivery.endpoint_id, Event.id.label("event_id"),
                   Event.public_id, Event.type, Event.payload)
            .join(Event, and_(Event.id == Delivery.event_id, Event.tenant_id == Delivery.tenant_id))
            .where(db.one_of(Delivery.id, ids), Delivery.status == DeliveryStatus.PENDING, Delivery.lease_token == token)
            .order_by(Delivery.id)).all()
        if not rows:
            return prepared
        endpoints: dict[int, tuple[WebhookEndpoint, Tenant]] = {
            endpoint.id: (endpoint, tenant) for endpoint, tenant in db.session.execute(
                select(WebhookEndpoint, Tenant).join(Tenant, Tenant.id == WebhookEndpoint.tenant_id)
                .where(db.one_of(WebhookEndpoint.id, {row.endpoint_id for row in rows})))}
        streamed = [row.event_id for row in rows
                    if row.endpoint_id in endpoints and endpoints[row.endpoint_id][0].format == "set"]
        events = {event.id: event for event in db.session.scalars(select(Event).where(db.one_of(Event.id, streamed)))} \
            if streamed else {}
        secrets_of: dict[int, list[str]] = {}
        for row in rows:
            if row.endpoint_id not in endpoints:
                continue  # deleted meanwhile: its deliveries go with it
            endpoint, tenant = endpoints[row.endpoint_id]
            if endpoint.format == "set":  # a Shared Signals push stream (RFC 8935)
                prepared.append(Outgoing(row.id, row.tenant_id, endpoint.url,
                                         ssf.security_event_token(tenant, endpoint, events[row.event_id]).encode(),
                                         ssf.push_headers(tenant, endpoint)))
                continue
            if endpoint.id not in secrets_of:
                secrets_of[endpoint.id] = signing_secrets(tenant, endpoint, now)
            body = (relying_party_view(row.payload) if endpoint.relying_party_key_id is not None
                    else row.payload.encode())
            prepared.append(Outgoing(row.id, row.tenant_id, endpoint.url, body, {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": USER_AGENT,
                signatures.HEADER: signatures.sign(body, secrets_of[endpoint.id]),
                "Idempotency-Key": row.public_id,
                "Kakehashi-Event-Id": row.public_id,
                "Kakehashi-Event-Type": row.type,
            }))
    return prepared


def post(item: Outgoing, *, allow_private: bool, timeout: float) -> Outcome:
    """One POST (:func:`post_all` of one); never raises."""
    return post_all([item], allow_private=allow_private, timeout=timeout)[0]


def post_all(items: list[Outgoing], *, allow_private: bool, timeout: float,
             concurrency: int = CONCURRENCY) -> list[Outcome]:
    """POST every item, ``concurrency`` at a time, and say how each went (in order); never
    raises: whatever a tenant registered, the batch is recorded. No redirects are followed
    and no proxy is used.

    libcurl's multi interface does the HTTP in C, all posts in this one thread, with
    keep-alive connections per host: 16 µs of CPU per POST, where the standard library's
    http.client in 16 threads took 200–290 µs (bench/events_bench.py).

    Each host is resolved once, here (the batch's hosts at once, within ``timeout``), and
    every address it gave is checked (unless ``allow_private``, a host with a non-public
    address is refused before any connection); libcurl is then pinned to exactly those
    addresses (``CURLOPT_RESOLVE``) and refuses, when opening a socket, any address it was
    not given: a second DNS answer cannot rebind a receiver into our network."""
    outcomes: list[Outcome | None] = [None] * len(items)
    try:
        where: dict[int, tuple[str, int]] = {}
        parsed: dict[str, tuple[str, int] | None] = {}  # a batch's items share a few URLs
        for index, item in enumerate(items):
            if item.url not in parsed:
                try:
                    parsed[item.url] = host_and_port(item.url)
                except ValueError:
                    parsed[item.url] = None
            target_of_item = parsed[item.url]
            if target_of_item is None:
                outcomes[index] = Outcome(None, "the URL is not valid", 0)
            else:
                where[index] = target_of_item
        targets = vet_all(set(where.values()), allow_private, timeout)
        ready: list[tuple[int, str, frozenset[str]]] = []
        for index, target_of_item in where.items():
            target = targets[target_of_item]
            if isinstance(target, Outcome):
                outcomes[index] = target
            elif not _sendable(items[index].headers):
                outcomes[index] = Outcome(None, "a header is not valid", 0)
            else:
                ready.append((index, *target))
        if ready:
            _transfer(items, ready, outcomes, timeout, concurrency)
    except Exception:  # noqa: BLE001 - never lose the batch's record over one item
        log.exception("posting webhook deliveries failed")
    return [outcome or Outcome(None, "the connection failed", 0) for outcome in outcomes]


def host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if not url.isascii() or not parts.hostname:
        raise ValueError(url)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)  # .port raises ValueError


def _sendable(headers: dict[str, str]) -> bool:
    """Visible ASCII only: libcurl sends header lines as given, so a CR or LF in a value
    would start a header of its own."""
    return (ssf.HEADER_VALUE.fullmatch("".join(itertools.chain.from_iterable(headers.items()))) is not None
            and not any(":" in name for name in headers))  # (one character class: the whole iff each part)


def vet_all(targets: set[tuple[str, int]], allow_private: bool,
             timeout: float) -> dict[tuple[str, int], tuple[str, frozenset[str]] | Outcome]:
    """:func:`vet` for each host and port, all at once; a lookup still going after
    ``timeout`` counts as failed (a slow name server holds up no other host, and no lease
    runs out on it)."""
    if not targets:
        return {}
    pool = ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(targets)), thread_name_prefix="kk-resolve")
    try:
        pending = {pool.submit(vet, host, port, allow_private): (host, port) for host, port in targets}
        done, _late = wait(pending, timeout=timeout)
        return {target: (future.result() if future in done else Outcome(None, "the host name lookup timed out", 0))
                for future, target in pending.items()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def vet(host: str, port: int, allow_private: bool) -> tuple[str, frozenset[str]] | Outcome:
    """The ``CURLOPT_RESOLVE`` entry pinning ``host:port`` to the addresses checked now,
    with those addresses; or the failure."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:  # UnicodeError: a label empty or too long
        return Outcome(None, _failure(error), 0)
    addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not allow_private and not all(ipaddress.ip_address(address).is_global for address in addresses):
        return Outcome(None, f"{host} resolves to a non-public address", 0)
    pinned = ",".join(f"[{address}]" if ":" in address else address for address in addresses)
    return f"{host}:{port}:{pinned}", frozenset(addresses)


def _transfer(items: list[Outgoing], ready: list[tuple[int, str, frozenset[str]]],
              outcomes: list[Outcome | None], timeout: float, concurrency: int) -> None:
    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, concurrency)
    multi.setopt(pycurl.M_MAXCONNECTS, concurrency * 4)
    idle = [pycurl.Curl() for _ in range(min(concurrency, len(ready)))]
    running: dict[Any, tuple[int, _Response]] = {}
    waiting = iter(ready)
    try:
        while True:
            while idle:
                following = next(waiting, None)
                if following is None:
                    break
                index, resolve, allowed = following
                handle, response = idle.pop(), _Response()
                try:
                    _configure(handle, items[index], resolve, allowed, response, timeout)
                except (pycurl.error, UnicodeError, TypeError, ValueError):
                    outcomes[index] = Outcome(None, "the URL is not valid", 0)
                    idle.append(handle)
                    continue
                multi.add_handle(handle)
                running[handle] = (index, response)
            if not running:
                return
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            _queued, succeeded, failed = multi.info_read()
            for handle in succeeded:
                index, response = running.pop(handle)
                outcomes[index] = _outcome(handle, None, response)
                multi.remove_handle(handle)
                idle.append(handle)
            for handle, code, message in failed:
                index, response = running.pop(handle)
                outcomes[index] = _outcome(handle, (code, message), response)
                multi.remove_handle(handle)
                idle.append(handle)
            if not succeeded and not failed:
                _await(multi)
    finally:
        for handle in running:
            multi.remove_handle(handle)
        for handle in (*running, *idle):
            handle.close()
        multi.close()


def _await(multi: Any) -> None:
    """Wait until a socket is ready or libcurl's next timer is due (at most a second)."""
    due = multi.timeout()  # milliseconds; -1: no timer set
    seconds = 1.0 if due < 0 else min(due / 1000, 1.0)
    if seconds <= 0:
        return
    if any(multi.fdset()):
        multi.select(seconds)
    else:  # only timers (a connection attempt's back-off): select() would not wait
        time.sleep(seconds)


RESPONSE_READ_LIMIT = 64 * 1024  # the body is not used; past this much, the transfer stops


class _Response:
    """What a transfer learnt that libcurl does not keep: the body's size, and whether an
    address outside the checked ones was asked for."""

    __slots__ = ("read", "refused")

    def __init__(self) -> None:
        self.read = 0
        self.refused = False

    def write(self, chunk: bytes) -> int:
        self.read += len(chunk)
        return len(chunk) if self.read <= RESPONSE_READ_LIMIT else 0  # 0: stop reading


def _configure(handle: Any, item: Outgoing, resolve: str, allowed: frozenset[str], response: _Response,
               timeout: float) -> None:
    handle.reset()
    handle.setopt(pycurl.URL, item.url)
    handle.setopt(pycurl.POSTFIELDS, item.body)
    # "Expect:" keeps libcurl from asking for 100-continue before a larger body.
    handle.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in item.headers.items()] + ["Expect:"])
    handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
    handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
    handle.setopt(pycurl.PROXY, "")  # never a proxy from the environment
    handle.setopt(pycurl.NOSIGNAL, 1)
    handle.setopt(pycurl.TIMEOUT_MS, int(timeout * 1000))
    handle.setopt(pycurl.RESOLVE, [resolve])
    handle.setopt(pycurl.WRITEFUNCTION, response.write)
    handle.setopt(pycurl.OPENSOCKETFUNCTION, _guard(allowed, response))
    if item.url[:6].lower() == "https:":
        handle.setopt(*trust_store())


def _guard(allowed: frozenset[str], response: _Response) -> Any:
    def open_socket(_purpose: int, address: Any) -> Any:
        if str(address.addr[0]).split("%")[0] not in allowed:
            response.refused = True
            return pycurl.SOCKET_BAD
        return socket.socket(address.family, address.socktype, address.protocol)

    return open_socket


_TRUST_STORE: tuple[int, str] | None = None


def trust_store() -> tuple[int, str]:
    """The system's CA certificates, as Python's ssl finds them (what receivers' https
    certificates are verified against); certifi's bundle where the system has none."""
    global _TRUST_STORE
    if _TRUST_STORE is None:
        paths = ssl.get_default_verify_paths()
        if paths.cafile:
            _TRUST_STORE = (pycurl.CAINFO, paths.cafile)
        elif paths.capath:
            _TRUST_STORE = (pycurl.CAPATH, paths.capath)
        else:
            import certifi

            _TRUST_STORE = (pycurl.CAINFO, certifi.where())
    return _TRUST_STORE


_WEIRD_SERVER_REPLY = 8  # CURLE_WEIRD_SERVER_REPLY, which pycurl names after FTP
# (Endpoint URLs are http or https, so "unsupported protocol" is an answer that was not
# HTTP: libcurl's "Received HTTP/0.9 when not allowed".)
_NO_VALID_RESPONSE = {pycurl.E_GOT_NOTHING, pycurl.E_RECV_ERROR, pycurl.E_SEND_ERROR, pycurl.E_PARTIAL_FILE,
                      _WEIRD_SERVER_REPLY, pycurl.E_UNSUPPORTED_PROTOCOL}


def _outcome(handle: Any, error: tuple[int, str] | None, response: _Response) -> Outcome:
    duration = int(handle.getinfo(pycurl.TOTAL_TIME) * 1000)
    status = handle.getinfo(pycurl.RESPONSE_CODE) or None
    if error is not None and not (error[0] == pycurl.E_WRITE_ERROR and status):  # a long body, cut short
        return Outcome(None, _curl_failure(handle, *error, response), duration)
    assert status is not None
    return Outcome(status, None if 200 <= status < 300 else f"HTTP {status}", duration)


def _curl_failure(handle: Any, code: int, message: str, response: _Response) -> str:
    """What the tenant is told of a failed transfer: its kind, not our network's details."""
    if response.refused:
        return "an address outside the checked ones was asked for"
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return "timed out"
    if code == pycurl.E_COULDNT_CONNECT:
        return "connection refused" if handle.getinfo(pycurl.OS_ERRNO) == errno.ECONNREFUSED else "the connection failed"
    if code == pycurl.E_PEER_FAILED_VERIFICATION:
        return f"TLS certificate not accepted: {message.removeprefix('SSL certificate problem: ')}"[:300]
    if code == pycurl.E_SSL_CONNECT_ERROR:
        return "TLS handshake failed"
    if code in _NO_VALID_RESPONSE:
        return "the connection closed without a valid HTTP response"
    return "the connection failed"


def _failure(error: BaseException) -> str:
    """What the tenant is told when the host could not be looked up."""
    if isinstance(error, socket.gaierror | UnicodeError):
        return "the host name could not be resolved"
    return "the connection failed"


# Built once (the relay runs under all_tenants, as platform code): a failed attempt's
# outcome written by primary key.
_RECORD = (update(_deliveries).where(_deliveries.c.id == bindparam("delivery_id"),
                                     _deliveries.c.lease_token == bindparam("token"))
           .values({column: bindparam(f"new_{column}") for column in (
               "attempts", "status", "leased_until", "lease_token", "last_status_code", "last_error",
               "delivered_at", "next_attempt_at")}))


def _succeeded(ids: list[int], token: str, status_code: int, now: datetime) -> int:
    """Record a success for each of ``ids`` still held by ``token``, as one UPDATE (a
    batch's successes have one or two status codes between them; the attempt is counted
    in SQL); how many were still held."""
    return len(db.session.execute(
        update(_deliveries).where(db.one_of(_deliveries.c.id, ids), _deliveries.c.lease_token == token)
        .values(attempts=_deliveries.c.attempts + 1, status=DeliveryStatus.SUCCEEDED, leased_until=None,
                lease_token=None, last_status_code=status_code, last_error=None, delivered_at=now,
                next_attempt_at=now)
        .returning(_deliveries.c.id)).all())


def _record(token: str, outgoing: list[Outgoing], outcomes: list[Outcome]) -> dict[str, int]:
    """Record each attempt: successes by status code, one statement each; failures one by
    one (each has its own count of attempts, back-off and error). Only deliveries this
    lease still holds change (a manual redelivery meanwhile wins)."""
    now = clock.now()
    config = current_app.config
    budget = int(config["WEBHOOK_MAX_ATTEMPTS"])
    base = float(config["WEBHOOK_RETRY_BASE_SECONDS"])
    succeeded = failed = 0
    by_code: dict[int, list[int]] = {}
    failures: list[tuple[Outgoing, Outcome]] = []
    for item, outcome in zip(outgoing, outcomes, strict=True):
        if outcome.succeeded:
            assert outcome.status_code is not None
            by_code.setdefault(outcome.status_code, []).append(item.delivery_id)
        else:
            failures.append((item, outcome))
    with all_tenants(db.session):
        db.commit_may_lag()
        for status_code, ids in by_code.items():
            succeeded += _succeeded(ids, token, status_code, now)
        if failures:
            attempts = dict(db.session.execute(
                select(Delivery.id, Delivery.attempts).where(
                    db.one_of(Delivery.id, [item.delivery_id for item, _ in failures]),
                    Delivery.lease_token == token)).all())
            changes = []
            for item, outcome in failures:
                if item.delivery_id not in attempts:
                    continue
                failed += 1
                count = attempts[item.delivery_id] + 1
                status = DeliveryStatus.DEAD if count >= budget else DeliveryStatus.PENDING
                changes.append({"delivery_id": item.delivery_id, "token": token, "new_attempts": count,
                                "new_status": status, "new_leased_until": None, "new_lease_token": None,
                                "new_last_status_code": outcome.status_code, "new_last_error": outcome.error,
                                "new_delivered_at": None, "new_next_attempt_at": now + backoff(count, base)})
            if changes:
                db.session.execute(_RECORD, changes)  # one executemany by primary key
        db.insert_rows(_attempts, [
            {"tenant_id": item.tenant_id, "delivery_id": item.delivery_id, "attempted_at": now,
             "status_code": outcome.status_code, "error": outcome.error, "duration_ms": outcome.duration_ms}
            for item, outcome in zip(outgoing, outcomes, strict=True)])
    return {"succeeded": succeeded, "failed": failed}


def backoff(attempts: int, base_seconds: float) -> timedelta:
    """Exponential, capped, with full jitter over its upper half: receivers that failed
    together are not all retried in the same second."""
    ceiling = min(MAX_BACKOFF.total_seconds(), base_seconds * 2 ** (attempts - 1))
    return timedelta(seconds=ceiling * random.uniform(0.5, 1.0))


# -- running the relay -------------------------------------------------------------------------

def run(app: Flask, stop: threading.Event, *, idle: float = 0.5, limit: int = 1000) -> None:
    """Relay until ``stop`` is set: without pause while a pass fills up to ``limit``; after
    a pass that found less, a pause that shrinks as the pass filled (a pass of 900 of 1,000
    waits a tenth of ``idle``; an empty one all of it), so that a busy stream waits less
    for its next pass while a quiet one is still sent in batches; after a failure, a
    growing back-off."""
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
        if failures:
            stop.wait(min(30.0, idle * (2 ** min(failures, 6))))
        elif queued < limit:
            stop.wait(idle * (1 - queued / limit))


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
        # The public id begins with its time (a ULID): the old events are a range of its
        # index, and created_at, written by every event, needs no index of its own.
        return db.session.execute(delete(Event).where(Event.public_id < first_id_at(Event.__id_prefix__, cutoff),
                                                      Event.created_at < cutoff, Event.dispatched_at.is_not(None),
                                                      Event.id.not_in(waiting))
                                  .execution_options(synchronize_session=False)).rowcount
