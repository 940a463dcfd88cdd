"""Events and webhook endpoints.

:func:`emit` is the one way a domain reports a change: it writes the event and a delivery
per subscribed endpoint into the caller's unit of work, so the change and its event
commit together or not at all (the transactional outbox). Nothing here talks to Redis or
the network; :mod:`saas.events.relay` delivers.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from saas import clock, db
from saas.errors import NotFound, ServiceError
from saas.events.models import Delivery, DeliveryStatus, Event, WebhookEndpoint
from saas.ids import new_id
from saas.sealing import seal, unseal
from saas.tenants.models import ApiKey, Tenant

# What a tenant can subscribe to; each domain adds its own as it starts emitting them.
EVENT_TYPES: dict[str, Any] = {
    "webhook.ping": _l("A test event sent from the console or API."),
    "oidc.session.ended": _l("A person's login session ended (logout)."),
    "oidc.grant.revoked": _l("Tokens were revoked: a reused code or refresh token, a logout, or the client."),
    "oidc.signing_key.rotated": _l("A signing key of the OpenID Provider was rotated."),
    "tenant.mode_changed": _l("The organisation moved from sandbox to live mode."),
    "ssf.verification": _l("A Shared Signals stream's verification event, asked for by its receiver."),
    "delegation.power.submitted": _l("A power of attorney awaits its representative's signature."),
    "delegation.power.review_requested": _l("A signed power of attorney awaits an operator's review "
                                            "(the register could not confirm the representative)."),
    "delegation.power.activated": _l("A power of attorney was signed, sealed and is in force."),
    "delegation.power.suspended": _l("A power of attorney was suspended."),
    "delegation.power.resumed": _l("A suspended power of attorney is in force again."),
    "delegation.power.revoked": _l("A power of attorney was revoked (with its sub-delegations)."),
    "delegation.power.expired": _l("A power of attorney reached the end of its validity."),
    "idlink.link.created": _l("A local id (member, patient, customer number) was linked to a verified person."),
    "idlink.link.unlinked": _l("A local id was unlinked from its person."),
    "idlink.link.transferred": _l("A local id (a ticket) moved to another verified person."),
    "idlink.link.renewed": _l("The linked person renewed their card; the link follows them."),
    "idlink.link.attributes_changed": _l("The linked person's name or address changed (the latest ones are "
                                         "included where the person consented)."),
    "idlink.link.revoked": _l("The linked person's card was revoked (with the reason)."),
    "idlink.link.card_lost": _l("The linked person reported their card lost or stolen."),
    "idlink.link.expired": _l("The linked person's card certificate expired."),
}
ALL_TYPES = "*"
SECRET_PREFIX = "whsec_"
PREVIOUS_SECRET_LIFETIME = timedelta(hours=24)
MAX_ENDPOINTS = 20


class WebhookError(ServiceError):
    status = 422


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


# -- the outbox ---------------------------------------------------------------------------

def emit(tenant: Tenant, type: str, subject: str, data: dict[str, Any]) -> str:
    """Record an event in the current unit of work (one INSERT); returns its id. The
    relay fans it out to the endpoints subscribed to ``type`` once it has committed."""
    [public_id] = emit_many(tenant, [(type, subject, data)])
    return public_id


def emit_many(tenant: Tenant, items: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """:func:`emit` for many (type, subject, data) at once: one batched INSERT (a sweep's
    thousands of changes); their order is the order given."""
    now = clock.now()
    rows = []
    for type, subject, data in items:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")  # a programming error, not input
        public_id = new_id(Event.__id_prefix__)
        rows.append({"tenant_id": tenant.id, "public_id": public_id, "type": type, "subject": subject,
                     "created_at": now, "payload": _payload(tenant, public_id, type, subject, data, now)})
    db.insert_rows(Event.__table__, rows)  # Core: no unit of work for a row nobody reads back
    return [row["public_id"] for row in rows]


def _payload(tenant: Tenant, public_id: str, type: str, subject: str, data: dict[str, Any], now: datetime) -> str:
    return _dumps({"id": public_id, "type": type, "created_at": now.isoformat(), "tenant": tenant.public_id,
                   "mode": tenant.mode.value, "subject": subject, "data": data})


def subscriptions(endpoint: WebhookEndpoint) -> frozenset[str]:
    """The event types ``endpoint`` takes (``*``: all); read once per batch by the relay."""
    return frozenset(json.loads(endpoint.event_types))


def subscribes(types: frozenset[str], type: str) -> bool:
    return type in types or ALL_TYPES in types


# -- endpoints ----------------------------------------------------------------------------

def validate_url(url: str) -> str:
    """An endpoint URL as registered: https (http where configured), a host, no credentials."""
    url = (url or "").strip()
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):  # urlsplit would drop some of them silently
        raise WebhookError(_l("The URL may not contain spaces or control characters."), code="invalid_url",
                           field="url")
    parts = urlsplit(url)
    allowed = ("https", "http") if current_app.config["WEBHOOK_ALLOW_HTTP"] else ("https",)
    if parts.scheme not in allowed or not parts.hostname or len(url) > 500:
        raise WebhookError(_l("The URL must be an https URL of at most 500 characters."),
                           code="invalid_url", field="url")
    if parts.username or parts.password or parts.fragment:
        raise WebhookError(_l("The URL may not contain a user name, password or fragment."),
                           code="invalid_url", field="url")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
        labels = parts.hostname.rstrip(".").split(".")
        if not url.isascii() or not all(0 < len(label) <= 63 for label in labels):
            raise ValueError(url)
    except ValueError:
        raise WebhookError(_l("The URL is not valid: check the host name and the port, and write an "
                              "international domain name in its xn-- form."), code="invalid_url", field="url") from None
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and not literal.is_global and not current_app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"]:
        raise WebhookError(_l("The URL points into a private network; use a public address."),
                           code="invalid_url", field="url")
    return url


def validate_types(types: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(t.strip() for t in types if t and t.strip()))
    if not chosen:
        raise WebhookError(_l("Choose at least one event type."), code="invalid_event_types", field="event_types")
    unknown = [t for t in chosen if t != ALL_TYPES and t not in EVENT_TYPES]
    if unknown:
        raise WebhookError(_l("Unknown event type: %(type)s", type=unknown[0]),
                           code="invalid_event_types", field="event_types")
    return [ALL_TYPES] if ALL_TYPES in chosen else chosen


def _context(tenant: Tenant, endpoint: WebhookEndpoint) -> str:
    return f"{tenant.public_id}:{endpoint.public_id}:webhook-secret"


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def create_endpoint(tenant: Tenant, *, url: str, event_types: Iterable[str],
                    description: str = "", relying_party_key_id: int | None = None) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its signing secret (shown this once). With
    ``relying_party_key_id``, the endpoint of the relying party holding that API key (see
    :func:`set_relying_party_endpoint`)."""
    endpoint = new_endpoint(tenant, url=validate_url(url), event_types=event_types, description=description,
                            relying_party_key_id=relying_party_key_id)
    secret = _new_secret()
    endpoint.sealed_secret = seal(secret.encode(), _context(tenant, endpoint))
    db.session.flush()
    return endpoint, secret


def new_endpoint(tenant: Tenant, *, url: str, event_types: Iterable[str], description: str,
                 relying_party_key_id: int | None = None) -> WebhookEndpoint:
    """An endpoint row within the organisation's allowance, without a signing secret (a
    Shared Signals stream signs its tokens with the tenant's key instead). Relying
    parties' own endpoints (one per key) do not count towards it."""
    if relying_party_key_id is None:
        count = db.session.scalar(select(func.count()).select_from(WebhookEndpoint)
                                  .where(WebhookEndpoint.relying_party_key_id.is_(None))) or 0
        if count >= MAX_ENDPOINTS:
            raise WebhookError(_l("An organisation can have at most %(count)d webhook endpoints.",
                                  count=MAX_ENDPOINTS), code="too_many_endpoints", status=409)
    description = (description or "").strip()
    if len(description) > 200:
        raise WebhookError(_l("The description is at most 200 characters."), code="invalid_description",
                           field="description")
    now = clock.now()
    endpoint = WebhookEndpoint(tenant_id=tenant.id, url=url, description=description,
                               event_types=json.dumps(validate_types(event_types)), enabled=True,
                               relying_party_key_id=relying_party_key_id, created_at=now, updated_at=now,
                               public_id=new_id(WebhookEndpoint.__id_prefix__))
    db.session.add(endpoint)
    db.session.flush()
    return endpoint


def update_endpoint(endpoint: WebhookEndpoint, *, url: str | None = None,
                    event_types: Iterable[str] | None = None, description: str | None = None,
                    enabled: bool | None = None) -> WebhookEndpoint:
    if url is not None:
        endpoint.url = validate_url(url)
    if event_types is not None:
        endpoint.event_types = json.dumps(validate_types(event_types))
    if description is not None:
        if len(description.strip()) > 200:
            raise WebhookError(_l("The description is at most 200 characters."), code="invalid_description",
                               field="description")
        endpoint.description = description.strip()
    if enabled is not None:
        endpoint.enabled = enabled
    endpoint.updated_at = clock.now()
    db.session.flush()
    return endpoint


def rotate_secret(tenant: Tenant, endpoint: WebhookEndpoint) -> str:
    """A new secret (shown once); the old one keeps signing for a day beside it."""
    now = clock.now()
    endpoint.previous_sealed_secret = endpoint.sealed_secret
    endpoint.previous_secret_expires_at = now + PREVIOUS_SECRET_LIFETIME
    secret = _new_secret()
    endpoint.sealed_secret = seal(secret.encode(), _context(tenant, endpoint))
    endpoint.updated_at = now
    db.session.flush()
    return secret


def signing_secrets(tenant: Tenant, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one
    for a day after a rotation."""
    if endpoint.sealed_secret is None:
        raise ValueError(f"endpoint {endpoint.public_id} is a Shared Signals stream; its tokens are signed instead")
    found = [unseal(endpoint.sealed_secret, _context(tenant, endpoint)).decode()]
    if (endpoint.previous_sealed_secret is not None and endpoint.previous_secret_expires_at is not None
            and endpoint.previous_secret_expires_at > now):
        found.append(unseal(endpoint.previous_sealed_secret, _context(tenant, endpoint)).decode())
    return found


def relying_party_endpoint(key_id: int) -> WebhookEndpoint | None:
    """The endpoint a relying party registered with its API key, if any."""
    return db.session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.relying_party_key_id == key_id))


def set_relying_party_endpoint(tenant: Tenant, key_id: int, *, url: str,
                               event_types: Iterable[str]) -> tuple[WebhookEndpoint, str | None]:
    """Register (or move to ``url``) the endpoint of the relying party holding the API key
    ``key_id``: it receives the events of ``event_types`` that name the key among those
    that fetched their subject (``data.fetched_by``), and no other. Returns the endpoint
    and, when new, its signing secret (shown this once)."""
    url = validate_url(url)
    endpoint = relying_party_endpoint(key_id)
    if endpoint is None:
        try:
            with db.session.begin_nested():  # two first registrations at once: one row wins
                return create_endpoint(tenant, url=url, event_types=event_types, relying_party_key_id=key_id)
        except IntegrityError:
            endpoint = relying_party_endpoint(key_id)
            assert endpoint is not None
    endpoint.url, endpoint.updated_at = url, clock.now()
    endpoint.event_types = json.dumps(validate_types(event_types))
    db.session.flush()
    return endpoint, None


def relying_party_view(payload: str) -> bytes:
    """An event's body as a relying party's own endpoint receives it: without the list of
    the other parties that fetched its subject."""
    event = json.loads(payload)
    if isinstance(event.get("data"), dict):
        event["data"].pop("fetched_by", None)
    return _dumps(event).encode()


def relying_party_names(endpoints: Iterable[WebhookEndpoint]) -> dict[int, str]:
    """For each endpoint a relying party registered with its key: the key's name and hint."""
    endpoints = [endpoint for endpoint in endpoints if endpoint.relying_party_key_id is not None]
    if not endpoints:
        return {}
    keys = {key.id: f"{key.name} ({key.hint})" for key in db.session.scalars(
        select(ApiKey).where(ApiKey.id.in_({endpoint.relying_party_key_id for endpoint in endpoints})))}
    return {endpoint.id: keys.get(endpoint.relying_party_key_id or 0, "") for endpoint in endpoints}


def recent_deliveries(endpoint: WebhookEndpoint, limit: int = 20) -> list[tuple[Delivery, str, str]]:
    """The endpoint's latest deliveries, newest first, with their event's id and type."""
    return [(delivery, event_id, event_type) for delivery, event_id, event_type in db.session.execute(
        select(Delivery, Event.public_id, Event.type)
        .join(Event, (Event.id == Delivery.event_id) & (Event.tenant_id == Delivery.tenant_id))
        .where(Delivery.endpoint_id == endpoint.id).order_by(Delivery.id.desc()).limit(limit))]


def delete_endpoint(endpoint: WebhookEndpoint) -> None:
    db.session.delete(endpoint)  # its deliveries and their log go with it
    db.session.flush()


def list_endpoints() -> list[WebhookEndpoint]:
    """The session's tenant's webhook endpoints (Shared Signals streams are listed apart)."""
    return list(db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.format == "json")
                                   .order_by(WebhookEndpoint.id)))


def get_endpoint(public_id: str) -> WebhookEndpoint:
    """The session's tenant's endpoint; another tenant's (or none) is a 404."""
    endpoint = db.session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.public_id == public_id,
                                                               WebhookEndpoint.format == "json"))
    if endpoint is None:
        raise NotFound(_l("There is no such webhook endpoint."), code="webhook_endpoint_not_found")
    return endpoint


def ping(tenant: Tenant, endpoint: WebhookEndpoint) -> str:
    """A ``webhook.ping`` event to this endpoint only."""
    return emit_to(tenant, "webhook.ping", f"endpoint:{endpoint.public_id}",
                   {"endpoint": endpoint.public_id, "url": endpoint.url}, endpoint)


def emit_to(tenant: Tenant, type: str, subject: str, data: dict[str, Any], endpoint: WebhookEndpoint) -> str:
    """An event for one endpoint only (fanned out here, not by the relay): tests and verifications."""
    now = clock.now()
    public_id = new_id(Event.__id_prefix__)
    event_id = db.session.scalar(insert(Event).values(
        tenant_id=tenant.id, public_id=public_id, type=type, subject=subject, created_at=now,
        dispatched_at=now, payload=_payload(tenant, public_id, type, subject, data, now)).returning(Event.id))
    db.session.execute(insert(Delivery).values(
        tenant_id=tenant.id, event_id=event_id, endpoint_id=endpoint.id, subject=subject,
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, created_at=now))
    return public_id


def redeliver(delivery: Delivery) -> Delivery:
    """Send a delivery again now, with a fresh retry budget (a dead one, or on request)."""
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = clock.now()
    delivery.leased_until = None
    db.session.flush()
    return delivery
