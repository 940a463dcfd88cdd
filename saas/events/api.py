"""The webhooks REST API, ``/t/<slug>/api/webhooks…``, with API keys (``webhooks:read``,
``webhooks:write``). Every change is in the audit log with the key that made it."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify
from flask_babel import lazy_gettext as _l

from saas import openapi
from saas.events import services
from saas.events.models import Delivery, WebhookEndpoint
from saas.openapi import json_response, operation
from saas.tenants import apikeys, audit
from saas.tenants.context import current_tenant

bp = Blueprint("events_api", __name__, url_prefix="/t/<tenant_slug>/api")

READ = [{"apiKey": ["webhooks:read"]}]
WRITE = [{"apiKey": ["webhooks:write"]}]
ENDPOINT = openapi.schema("WebhookEndpoint", {
    "type": "object", "required": ["id", "url", "event_types", "enabled", "created_at"],
    "properties": {"id": {"type": "string", "examples": ["whk_01jdx4q6m8v9z3k2c7b5n1r0yt"]},
                   "url": {"type": "string"}, "description": {"type": "string"},
                   "event_types": {"type": "array", "items": {"type": "string"}},
                   "enabled": {"type": "boolean"}, "created_at": {"type": "string", "format": "date-time"},
                   "secret": {"type": "string", "description": "Only when created: shown once"}}})
DELIVERY = openapi.schema("WebhookDelivery", {
    "type": "object", "required": ["event", "type", "status", "attempts"],
    "properties": {"id": {"type": "integer"}, "event": {"type": "string"}, "type": {"type": "string"},
                   "status": {"type": "string", "enum": ["pending", "succeeded", "dead"]},
                   "attempts": {"type": "integer"}, "last_status_code": {"type": ["integer", "null"]},
                   "last_error": {"type": ["string", "null"]},
                   "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                   "delivered_at": {"type": ["string", "null"], "format": "date-time"}}})
ENDPOINT_INPUT = {"required": True, "content": {"application/json": {"schema": {
    "type": "object",
    "properties": {"url": {"type": "string"}, "description": {"type": "string"},
                   "event_types": {"type": "array", "items": {"type": "string"}},
                   "enabled": {"type": "boolean"}}}}}}
ERRORS = {401: json_response("No valid API key for this organisation", openapi.ERROR),
          403: json_response("The key lacks the scope", openapi.ERROR),
          404: json_response("No such endpoint", openapi.ERROR)}


def endpoint_json(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    """An endpoint as the APIs show it (:data:`ENDPOINT`), with its secret when just made."""
    body = {"id": endpoint.public_id, "url": endpoint.url, "description": endpoint.description,
            "event_types": json.loads(endpoint.event_types), "enabled": endpoint.enabled,
            "created_at": endpoint.created_at.isoformat()}
    if secret:
        body["secret"] = secret
    return body


def _actor() -> str:
    return apikeys.actor()


def _text(body: dict[str, Any], name: str, code: str) -> str | None:
    """A string member of the body (None when absent); any other JSON type is refused."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise services.WebhookError(_l("%(field)s is a string.", field=name), code=code, field=name)
    return value


def _event_types(body: dict[str, Any], default: list[str] | None) -> list[str] | None:
    types = body.get("event_types", default)
    if types is not None and (not isinstance(types, list) or not all(isinstance(t, str) for t in types)):
        raise services.WebhookError(_l("event_types is a list of event type names."),
                                    code="invalid_event_types", field="event_types")
    return types


@bp.get("/webhooks")
@operation(summary="List the webhook endpoints", tags=["Webhooks"], security=READ,
           responses={200: json_response("The endpoints", {"type": "object", "properties": {
               "data": {"type": "array", "items": ENDPOINT}}}), **ERRORS})
@apikeys.requires("webhooks:read")
def list_endpoints() -> Response:
    endpoints = services.list_endpoints()
    return jsonify(data=[endpoint_json(e) for e in endpoints])


@bp.post("/webhooks")
@operation(summary="Add a webhook endpoint; its signing secret is in this answer only", tags=["Webhooks"],
           security=WRITE, request_body=ENDPOINT_INPUT,
           responses={201: json_response("The endpoint, with its secret", ENDPOINT),
                      422: json_response("Invalid URL or event types", openapi.ERROR), **ERRORS})
@apikeys.requires("webhooks:write")
def create_endpoint() -> tuple[Response, int]:
    body = openapi.json_body()
    endpoint, secret = services.create_endpoint(
        current_tenant(), url=_text(body, "url", "invalid_url") or "",
        event_types=_event_types(body, [services.ALL_TYPES]) or [],
        description=_text(body, "description", "invalid_description") or "")
    audit.record(current_tenant(), "webhook.created", actor=_actor(), target=endpoint.public_id,
                 details={"url": endpoint.url, "event_types": json.loads(endpoint.event_types)})
    return jsonify(endpoint_json(endpoint, secret)), 201


@bp.get("/webhooks/<endpoint_id>")
@operation(summary="One webhook endpoint", tags=["Webhooks"], security=READ,
           responses={200: json_response("The endpoint", ENDPOINT), **ERRORS})
@apikeys.requires("webhooks:read")
def get_endpoint(endpoint_id: str) -> Response:
    return jsonify(endpoint_json(services.get_endpoint(endpoint_id)))


@bp.patch("/webhooks/<endpoint_id>")
@operation(summary="Change a webhook endpoint", tags=["Webhooks"], security=WRITE, request_body=ENDPOINT_INPUT,
           responses={200: json_response("The endpoint", ENDPOINT),
                      422: json_response("Invalid values", openapi.ERROR), **ERRORS})
@apikeys.requires("webhooks:write")
def update_endpoint(endpoint_id: str) -> Response:
    body = openapi.json_body()
    endpoint = services.get_endpoint(endpoint_id)
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise services.WebhookError(_l("enabled is true or false."), code="invalid_enabled", field="enabled")
    services.update_endpoint(endpoint, url=_text(body, "url", "invalid_url"),
                             event_types=_event_types(body, None),
                             description=_text(body, "description", "invalid_description"), enabled=enabled)
    audit.record(current_tenant(), "webhook.updated", actor=_actor(), target=endpoint.public_id,
                 details={k: body[k] for k in ("url", "event_types", "description", "enabled") if k in body})
    return jsonify(endpoint_json(endpoint))


@bp.delete("/webhooks/<endpoint_id>")
@operation(summary="Delete a webhook endpoint and its delivery log", tags=["Webhooks"], security=WRITE,
           responses={204: {"description": "Deleted"}, **ERRORS})
@apikeys.requires("webhooks:write")
def delete_endpoint(endpoint_id: str) -> tuple[str, int]:
    endpoint = services.get_endpoint(endpoint_id)
    audit.record(current_tenant(), "webhook.deleted", actor=_actor(), target=endpoint.public_id,
                 details={"url": endpoint.url})
    services.delete_endpoint(endpoint)
    return "", 204


@bp.post("/webhooks/<endpoint_id>/ping")
@operation(summary="Send a webhook.ping event to this endpoint", tags=["Webhooks"], security=WRITE,
           responses={202: json_response("Queued", {"type": "object", "properties": {"event": {"type": "string"}}}),
                      **ERRORS})
@apikeys.requires("webhooks:write")
def ping(endpoint_id: str) -> tuple[Response, int]:
    endpoint = services.get_endpoint(endpoint_id)
    event_id = services.ping(current_tenant(), endpoint)
    audit.record(current_tenant(), "webhook.pinged", actor=_actor(), target=endpoint.public_id)
    return jsonify(event=event_id), 202


@bp.get("/webhooks/<endpoint_id>/deliveries")
@operation(summary="The newest deliveries to this endpoint (up to 100)", tags=["Webhooks"], security=READ,
           responses={200: json_response("Deliveries, newest first", {"type": "object", "properties": {
               "data": {"type": "array", "items": DELIVERY}}}), **ERRORS})
@apikeys.requires("webhooks:read")
def deliveries(endpoint_id: str) -> Response:
    endpoint = services.get_endpoint(endpoint_id)
    return jsonify(data=[delivery_json(*row) for row in services.recent_deliveries(endpoint, limit=100)])


def delivery_json(delivery: Delivery, event_id: str, event_type: str, *, with_id: bool = True) -> dict[str, Any]:
    """A delivery as the APIs show it (:data:`DELIVERY`); a relying party's view leaves out
    the platform's own id."""
    def when(value: Any) -> str | None:
        return value.isoformat() if value else None

    shown = {"id": delivery.id} if with_id else {}
    return shown | {"event": event_id, "type": event_type, "status": delivery.status.value,
            "attempts": delivery.attempts, "last_status_code": delivery.last_status_code,
            "last_error": delivery.last_error,
            "next_attempt_at": when(delivery.next_attempt_at) if delivery.status.value == "pending" else None,
            "delivered_at": when(delivery.delivered_at)}
