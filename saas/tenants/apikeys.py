"""API keys for the REST APIs under ``/t/<slug>/api/…``.

A key is ``kk_test_`` or ``kk_live_`` (the organisation's mode when it was made) followed
by 43 characters of a 256-bit random value; it is shown once and kept as its SHA-256 (a
random key needs no slow hash, and the hash finds the key in one index lookup). Keys are
scoped, may expire, are revocable, and every call made with one is logged.

A request names its organisation in the URL; a key of another organisation, or an
unknown, expired or revoked key, is a 401 that says no more.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import Flask, Response, g, request
from flask_babel import lazy_gettext as _l
from sqlalchemy import insert, select, update

from saas import batches, clock, db, rowcache
from saas.db import all_tenants
from saas.errors import ServiceError
from saas.tenants import services as tenants
from saas.tenants.context import current_tenant
from saas.tenants.models import ApiKey, ApiRequest, ConsoleUser, Tenant, TenantMode

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("kakehashi.api")

SCOPES: dict[str, Any] = {
    "webhooks:read": _l("Read webhook endpoints, deliveries and events"),
    "webhooks:write": _l("Add, change, test and delete webhook endpoints"),
    "ssf:manage": _l("Manage Shared Signals streams (SSF transmitter configuration)"),
    "ssf:receive": _l("Poll a Shared Signals stream for Security Event Tokens"),
    "delegation:read": _l("Fetch and verify powers of attorney (as a relying party)"),
    "delegation:write": _l("Prepare, submit, suspend and revoke powers of attorney"),
    "idlink:read": _l("Look up links between your local ids and verified persons"),
    "idlink:write": _l("Invite members to link their ids, and unlink"),
}
MAX_NAME = 200
LAST_USED_RESOLUTION = timedelta(minutes=1)  # "last used" is kept to the minute


class ApiKeyError(ServiceError):
    status = 422


class Unauthorized(ServiceError):
    status = 401
    code = "invalid_api_key"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(tenant: Tenant, *, name: str, scopes: list[str], expires_at: datetime | None,
           by: ConsoleUser | None) -> tuple[ApiKey, str]:
    """A new key; returns it and the key itself (shown this once)."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise ApiKeyError(_l("The name must be 1–200 characters."), code="invalid_name", field="name")
    chosen = sorted(set(scopes))
    if not chosen or any(s not in SCOPES for s in chosen):
        raise ApiKeyError(_l("Choose what the key may do."), code="invalid_scope", field="scopes")
    if expires_at is not None and expires_at <= clock.now():
        raise ApiKeyError(_l("The expiry date must be in the future."), code="invalid_expiry", field="expires_at")
    prefix = "kk_live_" if tenant.mode is TenantMode.LIVE else "kk_test_"
    key = prefix + secrets.token_urlsafe(32)
    row = ApiKey(tenant_id=tenant.id, name=name, hint=key[:12] + "…", key_hash=_hash(key), scopes=json.dumps(chosen),
                 created_by=by.id if by else None, created_at=clock.now(), expires_at=expires_at)
    db.session.add(row)
    db.session.flush()
    return row, key


def revoke(key: ApiKey) -> None:
    key.revoked_at = key.revoked_at or clock.now()
    db.session.flush()  # forgotten by this process's cache at once; the others' within ROW_CACHE_SECONDS


@dataclasses.dataclass(frozen=True)
class KeyInUse:
    """What a call needs of its key (cached briefly: see saas/rowcache.py)."""

    id: int
    tenant_id: int
    public_id: str
    scopes: frozenset[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


_BY_HASH = rowcache.RowCache("api_keys")


def _key(key_hash: str) -> KeyInUse | None:
    found = _BY_HASH.get(key_hash)
    if found is None:
        with all_tenants(db.session):
            row = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
        if row is None:
            return None
        found = KeyInUse(row.id, row.tenant_id, row.public_id, frozenset(json.loads(row.scopes)), row.expires_at,
                         row.revoked_at, row.last_used_at)
        _BY_HASH.put(key_hash, found)
    return found  # type: ignore[no-any-return]


rowcache.forget_on_change(_BY_HASH, ApiKey)


def authenticate(scope: str) -> KeyInUse:
    """The request's key, if it belongs to the URL's organisation, is live and has ``scope``."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value.startswith(("kk_test_", "kk_live_")):
        raise Unauthorized(_l("Send an API key: Authorization: Bearer kk_test_… (or kk_live_…)."))
    key = _key(_hash(value))
    now = clock.now()
    if (key is None or key.tenant_id != current_tenant().id or key.revoked_at is not None
            or (key.expires_at is not None and key.expires_at <= now)):
        raise Unauthorized(_l("This API key is not valid here: unknown, expired, revoked, or of another "
                              "organisation."))
    g.api_key = (key.id, key.tenant_id, key.last_used_at, _hash(value))  # logged whatever the outcome
    g.api_key_public_id = key.public_id
    if value.startswith("kk_test_") != (tenants.mode_now(current_tenant()) is TenantMode.SANDBOX):
        raise Unauthorized(_l("A test key does not work in live mode (nor a live key in sandbox): make a key "
                              "for this mode in the console."), code="wrong_mode_key")
    g.api_key_mode = TenantMode.SANDBOX if value.startswith("kk_test_") else TenantMode.LIVE
    if scope not in key.scopes:
        raise ServiceError(_l("This API key may not do this (it lacks the scope %(scope)s).", scope=scope),
                           code="insufficient_scope", status=403)
    return key


def current_key_id() -> int | None:
    used = g.get("api_key")
    return used[0] if used else None


def current_key_public_id() -> str:
    return str(g.api_key_public_id)


def current_mode() -> TenantMode:
    """The mode of the request's key (``kk_test_``: sandbox), which is the organisation's now."""
    return g.api_key_mode  # type: ignore[no-any-return]


def actor() -> str:
    """Who did it, for the audit log: the request's key."""
    key = db.session.scalar(select(ApiKey).where(ApiKey.id == current_key_id()))
    return f"{key.public_id} ({key.name})" if key else "api"


def requires(scope: str) -> Callable[[F], F]:
    """A view of the REST API that needs a key with ``scope``; the call is logged."""
    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authenticate(scope)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _write_requests(connection: Any, lines: list[dict[str, Any]]) -> None:
    """The calls, and each key's "last used" (kept to the minute: not a write per call)."""
    connection.execute(insert(ApiRequest.__table__), lines)
    latest: dict[int, datetime] = {}
    for line in lines:
        latest[line["key_id"]] = max(line["at"], latest.get(line["key_id"], line["at"]))
    keys = ApiKey.__table__.c
    for key_id, at in sorted(latest.items()):
        connection.execute(update(ApiKey.__table__).where(
            keys.id == key_id, (keys.last_used_at.is_(None)) | (keys.last_used_at <= at - LAST_USED_RESOLUTION))
            .values(last_used_at=at))


# Keyed API calls, written in batches (saas/batches.py): a call costs no INSERT of its own.
REQUEST_LOG = batches.Batched("api request log", _write_requests)


def init_app(app: Flask) -> None:
    """Log keyed API calls. Registered after the app's commit-or-rollback hook, so it runs
    before it: a refused call's work is rolled back first. The line goes to the batched
    request log (or, with ``BATCH_FLUSH_SECONDS=0``, into the request's transaction)."""
    @app.after_request
    def _log_request(response: Response) -> Response:
        used: tuple[int, int, datetime | None, str] | None = g.pop("api_key", None)
        if used is None:
            return response
        key_id, tenant_id, last_used, key_hash = used
        now = clock.now()
        failed = response.status_code >= 400
        if failed:
            db.session.rollback()  # what the refused call did goes; its log line stays
        line = {"tenant_id": tenant_id, "key_id": key_id, "at": now, "method": request.method,
                "path": request.path[:300], "status": response.status_code, "ip": request.remote_addr or ""}
        if batches.batched(app):  # the log's writer also keeps "last used": the call writes nothing
            REQUEST_LOG.add(app, line)
            return response
        with all_tenants(db.session):
            db.session.execute(insert(ApiRequest).values(**line))
            if last_used is None or now - last_used >= LAST_USED_RESOLUTION:  # to the minute: not a write per call
                db.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now)
                                   .execution_options(synchronize_session=False))
                cached = _BY_HASH.get(key_hash)
                if cached is not None:  # the copy knows it is used (no write for a minute); no younger
                    _BY_HASH.put(key_hash, dataclasses.replace(cached, last_used_at=now), keep_age=True)
        if failed:
            db.session.commit()
        return response
