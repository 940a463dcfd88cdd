"""Shared Signals (OpenID SSF 1.0) transmitter: streams and Security Event Tokens.

A stream is a :class:`WebhookEndpoint` whose ``format`` is ``set``: the same outbox, fan-out,
retries and dead letters carry its events. Push streams (RFC 8935) get each SET POSTed as
``application/secevent+jwt``; poll streams (RFC 8936) keep them until the receiver polls
and acknowledges them. SETs (RFC 8417) are signed with the tenant's ES256 key (its JWKS).

Events the service emits, as CAEP / RISC / SSF event types:

- ``session-revoked`` (CAEP): a person's login session ended, or tokens were revoked;
- ``verification`` (SSF): asked for by the receiver;
- ``credential-change`` (CAEP), ``account-disabled`` and ``identifier-changed`` (RISC):
  card renewals, revocations and attribute changes, as the ID-linking product reports them.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from joserfc import jwt
from sqlalchemy import select, update

from saas import clock, db, urls
from saas.errors import NotFound, ServiceError
from saas.events import services
from saas.events.models import Delivery, DeliveryStatus, Event, WebhookEndpoint
from saas.sealing import seal, unseal
from saas.tenants.context import current_tenant
from saas.tenants.models import Tenant

PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
RISC = "https://schemas.openid.net/secevent/risc/event-type/"
SESSION_REVOKED = CAEP + "session-revoked"
CREDENTIAL_CHANGE = CAEP + "credential-change"
ACCOUNT_DISABLED = RISC + "account-disabled"
IDENTIFIER_CHANGED = RISC + "identifier-changed"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
# Which of the service's events each SSF event type carries.
INTERNAL_TYPES: dict[str, list[str]] = {
    SESSION_REVOKED: ["oidc.session.ended", "oidc.grant.revoked"],
    CREDENTIAL_CHANGE: ["idlink.link.renewed", "idlink.link.attributes_changed", "idlink.link.revoked",
                        "idlink.link.card_lost", "idlink.link.expired"],
    ACCOUNT_DISABLED: [],
    IDENTIFIER_CHANGED: [],
}
SUPPORTED = sorted(uri for uri, internal in INTERNAL_TYPES.items() if internal)
MAX_POLL = 100


class StreamError(ServiceError):
    status = 400
    code = "invalid_request"


# -- Security Event Tokens --------------------------------------------------------------------------

def _subject(event: Event, issuer: str, detail: dict[str, Any]) -> dict[str, str]:
    kind, _, value = event.subject.partition(":")
    if kind == "sub" and value and value != "None":
        return {"format": "iss_sub", "iss": issuer, "sub": value}
    if kind == "link" and isinstance(detail.get("sub"), str):  # a linked person: who it is about
        return {"format": "iss_sub", "iss": issuer, "sub": detail["sub"]}
    return {"format": "opaque", "id": event.subject}


# CAEP credential-change for what the status sweep saw of a linked person's card.
_CREDENTIAL_CHANGES = {"idlink.link.renewed": "update", "idlink.link.attributes_changed": "update",
                       "idlink.link.revoked": "revoke", "idlink.link.card_lost": "revoke",
                       "idlink.link.expired": "delete"}


def _event_claims(event: Event, data: dict[str, Any]) -> dict[str, Any]:
    at = int(datetime.fromisoformat(data["created_at"]).timestamp())
    detail = data.get("data", {})
    if event.type == "ssf.verification":
        return {VERIFICATION: {"state": detail["state"]} if detail.get("state") else {}}
    if event.type in ("oidc.session.ended", "oidc.grant.revoked"):
        reason = detail.get("reason", "")
        return {SESSION_REVOKED: {"event_timestamp": at,
                                  "initiating_entity": "user" if reason in ("logout", "revoked_by_client") else "policy",
                                  "reason_admin": {"en": reason}}}
    if event.type in _CREDENTIAL_CHANGES:
        reason = event.type.removeprefix("idlink.link.") + (f": {detail['reason']}" if detail.get("reason") else "")
        return {CREDENTIAL_CHANGE: {"event_timestamp": at, "credential_type": "x509",
                                    "change_type": _CREDENTIAL_CHANGES[event.type], "initiating_entity": "system",
                                    "reason_admin": {"en": reason}}}
    raise ValueError(f"no Shared Signals form for {event.type}")


def security_event_token(tenant: Tenant, stream: WebhookEndpoint, event: Event) -> str:
    """The SET of ``event`` for ``stream``, signed with the tenant's ES256 key (RFC 8417)."""
    from saas.oidc import keys

    data = json.loads(event.payload)
    issuer = stream.set_issuer or ""
    claims: dict[str, Any] = {
        "iss": issuer, "jti": event.public_id, "iat": int(datetime.fromisoformat(data["created_at"]).timestamp()),
        "aud": json.loads(stream.set_audience) if stream.set_audience else issuer,
        "sub_id": _subject(event, issuer, data.get("data", {})), "events": _event_claims(event, data),
        "txn": event.public_id,
    }
    kid, key = keys.signing_key(tenant, "ES256")
    return jwt.encode({"alg": "ES256", "typ": "secevent+jwt", "kid": kid}, claims, key)


def push_headers(tenant: Tenant, stream: WebhookEndpoint) -> dict[str, str]:
    headers = {"Content-Type": "application/secevent+jwt", "Accept": "application/json",
               "User-Agent": "Kakehashi-SSF/1"}
    if stream.sealed_authorization:
        headers["Authorization"] = unseal(stream.sealed_authorization, _context(tenant, stream)).decode()
    return headers


def _context(tenant: Tenant, stream: WebhookEndpoint) -> str:
    return f"{tenant.public_id}:{stream.public_id}:ssf-authorization"


# -- stream management (SSF 1.0 §8.1) ------------------------------------------------------------------

def streams() -> list[WebhookEndpoint]:
    return list(db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.format == "set")
                                   .order_by(WebhookEndpoint.id)))


def get_stream(stream_id: str | None) -> WebhookEndpoint:
    stream = db.session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.public_id == (stream_id or ""),
                                                             WebhookEndpoint.format == "set"))
    if stream is None:
        raise NotFound(_l("There is no such stream."), code="stream_not_found")
    return stream


def _delivery(body: dict[str, Any]) -> tuple[str, str, str | None]:
    """(push|poll, push URL, Authorization header) from a stream's ``delivery`` object; a
    polled stream has no URL of its own (its endpoint is derived from its id)."""
    delivery = body.get("delivery") or {"method": POLL}
    if not isinstance(delivery, dict):
        raise StreamError(_l("delivery must be an object."))
    method = delivery.get("method")
    if method == POLL:
        return "poll", "", None
    if method != PUSH:
        raise StreamError(_l("delivery.method must be %(push)s or %(poll)s.", push=PUSH, poll=POLL))
    url = str(delivery.get("endpoint_url") or "")
    header = delivery.get("authorization_header")
    if header is not None and (not isinstance(header, str) or len(header) > 2000
                               or not HEADER_VALUE.fullmatch(header)):
        raise StreamError(_l("authorization_header must be a string of visible ASCII characters "
                             "(no line breaks), at most 2,000."))
    return "push", services.validate_url(url), header


HEADER_VALUE = re.compile(r"[\x20-\x7e]*")  # what an HTTP header line may carry; a CR or LF would start another


def _requested(body: dict[str, Any]) -> list[str]:
    requested = body.get("events_requested", SUPPORTED)
    if not isinstance(requested, list) or not all(isinstance(uri, str) for uri in requested):
        raise StreamError(_l("events_requested must be a list of event-type URIs."))
    return list(dict.fromkeys(requested))


def _internal(requested: list[str]) -> list[str]:
    return sorted({t for uri in requested for t in INTERNAL_TYPES.get(uri, [])})


def create_stream(tenant: Tenant, body: dict[str, Any], *, issuer: str) -> WebhookEndpoint:
    method, url, authorization = _delivery(body)
    requested = _requested(body)
    internal = _internal(requested)
    audience = body.get("aud")
    if audience is not None and not (isinstance(audience, str) or (
            isinstance(audience, list) and all(isinstance(a, str) for a in audience))):
        raise StreamError(_l("aud must be a string or a list of strings."))
    stream = services.new_endpoint(tenant, url=url, event_types=internal or ["ssf.verification"],
                                   description=str(body.get("description", ""))[:200])
    stream.format, stream.delivery, stream.set_issuer = "set", method, issuer
    stream.set_audience = json.dumps(audience) if audience is not None else None
    stream.requested_events = json.dumps(requested)
    if authorization:
        stream.sealed_authorization = seal(authorization.encode(), _context(tenant, stream))
    db.session.flush()
    return stream


def update_stream(tenant: Tenant, stream: WebhookEndpoint, body: dict[str, Any], *, replace: bool) -> WebhookEndpoint:
    """PATCH changes what is given; PUT replaces the receiver-supplied properties."""
    if replace or "events_requested" in body:
        requested = _requested(body)
        stream.requested_events = json.dumps(requested)
        stream.event_types = json.dumps(_internal(requested) or ["ssf.verification"])
    if replace or "delivery" in body:
        method, url, authorization = _delivery(body)
        stream.delivery, stream.url = method, url
        stream.sealed_authorization = seal(authorization.encode(), _context(tenant, stream)) if authorization else None
    if replace or "description" in body:
        stream.description = str(body.get("description", ""))[:200]
    stream.updated_at = clock.now()
    db.session.flush()
    return stream


def configuration(stream: WebhookEndpoint) -> dict[str, Any]:
    requested = json.loads(stream.requested_events or "[]")
    delivery: dict[str, Any] = {"method": PUSH if stream.delivery == "push" else POLL, "endpoint_url": (
        stream.url if stream.delivery == "push" else
        urls.external("ssf.poll", tenant_slug=current_tenant().slug, stream_id=stream.public_id))}
    return {"stream_id": stream.public_id, "iss": stream.set_issuer,
            "aud": json.loads(stream.set_audience) if stream.set_audience else stream.set_issuer,
            "delivery": delivery, "events_supported": SUPPORTED, "events_requested": requested,
            "events_delivered": [uri for uri in requested if uri in SUPPORTED],
            "description": stream.description, "min_verification_interval": 0}


def status(stream: WebhookEndpoint) -> dict[str, Any]:
    state = "enabled" if stream.enabled else ("paused" if stream.status_reason != "disabled" else "disabled")
    body = {"stream_id": stream.public_id, "status": state}
    if stream.status_reason and stream.status_reason not in ("paused", "disabled"):
        body["reason"] = stream.status_reason
    return body


def set_status(stream: WebhookEndpoint, body: dict[str, Any]) -> dict[str, Any]:
    state = body.get("status")
    if state not in ("enabled", "paused", "disabled"):
        raise StreamError(_l("status must be enabled, paused or disabled."))
    stream.enabled = state == "enabled"
    stream.status_reason = None if state == "enabled" else state
    if state == "disabled":  # SSF: a disabled stream drops what it would have carried
        db.session.execute(update(Delivery).where(Delivery.endpoint_id == stream.id,
                                                  Delivery.status == DeliveryStatus.PENDING)
                           .values(status=DeliveryStatus.DEAD, last_error="stream disabled")
                           .execution_options(synchronize_session=False))
    stream.updated_at = clock.now()
    db.session.flush()
    return status(stream)


def verify(tenant: Tenant, stream: WebhookEndpoint, state: str | None) -> str:
    """A verification event to this stream only."""
    if state is not None and (not isinstance(state, str) or len(state) > 200):
        raise StreamError(_l("state must be a short string."))
    return services.emit_to(tenant, "ssf.verification", f"stream:{stream.public_id}",
                            {"state": state} if state else {}, stream)


# -- polling (RFC 8936) ----------------------------------------------------------------------------------

def poll(tenant: Tenant, stream: WebhookEndpoint, body: dict[str, Any]) -> dict[str, Any]:
    if stream.delivery != "poll":
        raise StreamError(_l("This stream is pushed, not polled."))
    ack = body.get("ack", [])
    if not isinstance(ack, list) or not all(isinstance(j, str) for j in ack):
        raise StreamError(_l("ack must be a list of jti values."))
    now = clock.now()
    if ack:
        acked = select(Event.id).where(Event.public_id.in_(ack)).scalar_subquery()
        db.session.execute(update(Delivery).where(Delivery.endpoint_id == stream.id, Delivery.event_id.in_(acked),
                                                  Delivery.status == DeliveryStatus.PENDING)
                           .values(status=DeliveryStatus.SUCCEEDED, delivered_at=now)
                           .execution_options(synchronize_session=False))
    limit = body.get("maxEvents", MAX_POLL)
    if not isinstance(limit, int) or limit < 0:
        raise StreamError(_l("maxEvents must be a whole number."))
    limit = min(limit, MAX_POLL)
    rows = db.session.execute(
        select(Delivery, Event).join(Event, (Event.id == Delivery.event_id) & (Event.tenant_id == Delivery.tenant_id))
        .where(Delivery.endpoint_id == stream.id, Delivery.status == DeliveryStatus.PENDING)
        .order_by(Delivery.event_id).limit(limit + 1)).all() if stream.enabled else []
    sets = {event.public_id: security_event_token(tenant, stream, event) for _delivery, event in rows[:limit]}
    for delivery, _event in rows[:limit]:
        delivery.attempts += 1
    db.session.flush()
    return {"sets": sets, "moreAvailable": len(rows) > limit}
