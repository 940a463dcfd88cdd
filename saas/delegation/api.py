"""The powers-of-attorney REST API, ``/t/<slug>/api/powers…``.

Relying parties (key scope ``delegation:read``) fetch a power by id or one-time access
code, as of any moment with a signed receipt, search by corporation and agent, and look
up to 500 at once; each fetch is remembered so the party hears (webhook) when the power
is suspended or revoked. The tenant's own systems (``delegation:write``) prepare powers,
send them for signature, and suspend or revoke them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask_babel import lazy_gettext as _l

from saas import clock, openapi
from saas.delegation import services
from saas.delegation.models import PowerOfAttorney
from saas.delegation.services import PowerError
from saas.errors import NotFound
from saas.events import api as events_api
from saas.events import services as events
from saas.events.models import WebhookEndpoint
from saas.openapi import json_response, operation
from saas.tenants import apikeys, audit
from saas.tenants.context import current_tenant

bp = Blueprint("delegation_api", __name__, url_prefix="/t/<tenant_slug>/api")

READ = [{"apiKey": ["delegation:read"]}]
WRITE = [{"apiKey": ["delegation:write"]}]
MAX_BATCH = 500
POWER = openapi.schema("PowerOfAttorney", {
    "type": "object", "required": ["id", "status", "principal", "agents", "matters", "authorization_details"],
    "properties": {
        "id": {"type": "string", "examples": ["poa_01jdx4q6m8v9z3k2c7b5n1r0yt"]},
        "status": {"type": "string", "enum": ["draft", "awaiting_signature", "awaiting_review", "active",
                                              "suspended", "revoked", "expired"]},
        "method": {"type": "string", "enum": ["principal", "operator"]},
        "mode": {"type": ["string", "null"], "enum": ["sandbox", "live", None],
                 "description": "The mode it was signed in (null until signed): a live key does not find a "
                                "sandbox power"},
        "principal": {"type": "object", "properties": {"corporate_number": {"type": "string"},
                                                       "name": {"type": "string"}, "address": {"type": "string"}}},
        "representative": {"type": ["object", "null"]},
        "agents": {"type": "array", "items": {"type": "object"}},
        "agency": {"type": "string", "enum": ["several", "joint"]},
        "matters": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
        "authorization_details": {"type": "array", "items": {"type": "object"},
                                  "description": "RFC 9396 objects"},
        "valid_from": {"type": "string", "format": "date-time"},
        "valid_until": {"type": "string", "format": "date-time"},
        "verification_code": {"type": "string"},
        "as_of": {"type": "object", "description": "The status at the asked moment, and a signed receipt (ES256 "
                                                   "JWS, the tenant's key in its JWKS) that says so"},
        "record": {"type": ["object", "null"], "description": "The record file: the representative's signature, "
                                                              "certificate and the service's seal"},
    }})
POWER_INPUT = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["principal", "agents", "matters", "authorization_details", "valid_until"],
    "properties": {
        "principal": {"type": "object", "required": ["corporate_number", "name", "address"]},
        "agents": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "affiliation": {"type": "string"}, "email": {"type": "string"}}}},
        "matters": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 20},
        "authorization_details": {"type": "array", "items": {"type": "object", "required": ["type"]}},
        "agency": {"type": "string", "enum": ["several", "joint"]},
        "valid_from": {"type": "string", "format": "date-time"},
        "valid_until": {"type": "string", "format": "date-time"},
        "subdelegation_allowed": {"type": "boolean"}, "parent": {"type": "string"},
        "replaces": {"type": "string"}, "method": {"type": "string", "enum": ["principal", "operator"]}}}}}}
ERRORS = {401: json_response("No valid API key for this organisation", openapi.ERROR),
          403: json_response("The key lacks the scope", openapi.ERROR),
          404: json_response("No such power of attorney", openapi.ERROR),
          422: json_response("Invalid input", openapi.ERROR)}
AS_OF = [{"name": "as_of", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"},
          "description": "The moment to report the status for (default: now)"}]


def _as_of(value: Any) -> datetime:
    if not value:
        return clock.now()
    moment = services.parse_moment(value, "as_of")
    if moment > clock.now():
        raise PowerError(_l("as_of cannot be in the future."), code="invalid_as_of", field="as_of")
    return moment


def _presented(power: PowerOfAttorney, at: datetime, *, with_record: bool = True) -> dict[str, Any]:
    """A power as a relying party sees it, with its status and a receipt as of ``at``."""
    body = services.describe(power)
    if with_record:
        body["record"] = services.record_file(power)
    return _with_receipt(power, body, at)


def _with_receipt(power: PowerOfAttorney | services.PowerState, body: dict[str, Any],
                  at: datetime) -> dict[str, Any]:
    tenant, fetched_by = current_tenant(), apikeys.current_key_public_id()
    services.record_fetch(tenant, power, fetched_by)
    status, receipt = services.receipt(tenant, power, at=at, fetched_by=fetched_by, mode=apikeys.current_mode())
    body["as_of"] = {"at": at.isoformat(), "status": status, "receipt": receipt}
    return body


@bp.post("/powers")
@operation(summary="Prepare a power of attorney (a draft)", tags=["Powers of attorney"], security=WRITE,
           request_body=POWER_INPUT, responses={201: json_response("The draft", POWER), **ERRORS})
@apikeys.requires("delegation:write")
def create() -> tuple[Response, int]:
    tenant = current_tenant()
    actor = apikeys.actor()
    power = services.create_draft(tenant, openapi.json_body(), actor=actor)
    audit.record(tenant, "power.created", actor=actor, target=power.public_id)
    return jsonify(services.describe(power)), 201


@bp.post("/powers/<power_id>/submit")
@operation(summary="Send a draft to the corporation's representative for signature", tags=["Powers of attorney"],
           security=WRITE, responses={200: json_response("The signing link (shown once)", {
               "type": "object", "properties": {"signing_url": {"type": "string"}}}), **ERRORS})
@apikeys.requires("delegation:write")
def submit(power_id: str) -> Response:
    tenant = current_tenant()
    power = services.get(power_id)
    actor = apikeys.actor()
    link = services.submit(tenant, power, actor=actor)
    audit.record(tenant, "power.submitted", actor=actor, target=power.public_id)
    return jsonify(id=power.public_id, status=power.status.value, signing_url=link)


@bp.post("/powers/<power_id>/<any(suspend, resume, revoke):action>")
@operation(summary="Suspend, resume or revoke a power (revoking also revokes its sub-delegations)",
           tags=["Powers of attorney"], security=WRITE, responses={200: json_response("The power", POWER), **ERRORS})
@apikeys.requires("delegation:write")
def change(power_id: str, action: str) -> Response:
    tenant = current_tenant()
    power = services.get(power_id)
    reason = str(openapi.json_body().get("reason") or "") if action != "resume" else ""
    actor = apikeys.actor()
    if action == "suspend":
        services.suspend(tenant, power, actor=actor, reason=reason)
    elif action == "resume":
        services.resume(tenant, power, actor=actor)
    else:
        services.revoke(tenant, power, actor=actor, reason=reason)
    audit.record(tenant, {"suspend": "power.suspended", "resume": "power.resumed", "revoke": "power.revoked"}[action],
                 actor=actor,
                 target=power.public_id, details={"reason": reason} if reason else None)
    return jsonify(services.describe(power))


@bp.post("/powers/<power_id>/access-codes")
@operation(summary="A one-time access code the agent gives a relying party", tags=["Powers of attorney"],
           security=WRITE, responses={201: json_response("The code (shown once)", {"type": "object"}), **ERRORS})
@apikeys.requires("delegation:write")
def access_code(power_id: str) -> tuple[Response, int]:
    tenant = current_tenant()
    power = services.get(power_id)
    code = services.issue_access_code(tenant, power)
    audit.record(tenant, "power.access_code_issued", actor=apikeys.actor(), target=power.public_id)
    return jsonify(code=code, expires_in=int(services.ACCESS_CODE_LIFETIME.total_seconds())), 201


@bp.post("/powers/<power_id>/agents/<int:position>/binding-link")
@operation(summary="A one-time link for an agent to bind their My Number Card to the power (mailed when the "
                   "agent has an address)", tags=["Powers of attorney"], security=WRITE,
           responses={201: json_response("The link (shown once)", {"type": "object"}), **ERRORS})
@apikeys.requires("delegation:write")
def binding_link(power_id: str, position: int) -> tuple[Response, int]:
    tenant = current_tenant()
    power = services.get(power_id)
    link = services.binding_link(tenant, power, position)
    audit.record(tenant, "power.agent_link_issued", actor=apikeys.actor(), target=power.public_id,
                 details={"agent": position})
    return jsonify(binding_url=link, expires_in=int(services.BINDING_LINK_LIFETIME.total_seconds())), 201


@bp.get("/powers/<power_id>")
@operation(summary="Fetch a power, its record file, and its status as of a moment with a signed receipt",
           tags=["Powers of attorney"], security=READ, parameters=AS_OF,
           responses={200: json_response("The power", POWER), **ERRORS})
@apikeys.requires("delegation:read")
def fetch(power_id: str) -> Response:
    at = _as_of(request.args.get("as_of"))
    state, body = services.for_party(power_id, mode=apikeys.current_mode())
    return jsonify(_with_receipt(state, body, at))


@bp.post("/power-access-codes/redeem")
@operation(summary="Fetch the power behind a one-time access code (used once)", tags=["Powers of attorney"],
           security=READ, request_body={"required": True, "content": {"application/json": {"schema": {
               "type": "object", "required": ["code"], "properties": {"code": {"type": "string"}}}}}},
           responses={200: json_response("The power", POWER), **ERRORS})
@apikeys.requires("delegation:read")
def redeem() -> Response:
    power = services.redeem_access_code(str(openapi.json_body().get("code") or ""),
                                        used_by=apikeys.current_key_public_id(), mode=apikeys.current_mode())
    return jsonify(_presented(power, clock.now()))


@bp.get("/powers")
@operation(summary="Search the powers of a corporation, optionally for one agent", tags=["Powers of attorney"],
           security=READ, parameters=[
               {"name": "corporate_number", "in": "query", "required": True, "schema": {"type": "string"}},
               {"name": "agent_name", "in": "query", "required": False, "schema": {"type": "string"}}],
           responses={200: json_response("Matching powers (newest first, at most 100)", {"type": "object"}),
                      **ERRORS})
@apikeys.requires("delegation:read")
def search() -> Response:
    number = request.args.get("corporate_number", "").strip()
    if not number:
        raise PowerError(_l("Give the corporate_number to search."), code="invalid_query", field="corporate_number")
    now = clock.now()
    found = services.search(corporate_number_value=number, mode=apikeys.current_mode(),
                            agent_name=request.args.get("agent_name"))
    return jsonify(data=[_presented(power, now, with_record=False) for power in found])


@bp.post("/powers/lookup")
@operation(summary="Look up to 500 powers at once, as of a moment", tags=["Powers of attorney"], security=READ,
           request_body={"required": True, "content": {"application/json": {"schema": {
               "type": "object", "required": ["ids"], "properties": {
                   "ids": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_BATCH},
                   "as_of": {"type": "string", "format": "date-time"}}}}}},
           responses={200: json_response("The powers found, and the ids not found", {"type": "object"}), **ERRORS})
@apikeys.requires("delegation:read")
def batch() -> Response:
    body = openapi.json_body()
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or len(ids) > MAX_BATCH or not all(isinstance(i, str) for i in ids):
        raise PowerError(_l("ids is a list of 1 to %(count)d power ids.", count=MAX_BATCH), code="invalid_ids",
                         field="ids")
    at = _as_of(body.get("as_of"))
    found = services.for_parties(ids, mode=apikeys.current_mode())
    seen = {state.public_id for state, _body in found}
    return jsonify(data=[_with_receipt(state, {k: v for k, v in body.items() if k != "record"}, at)
                         for state, body in found],
                   not_found=[i for i in dict.fromkeys(ids) if i not in seen])


# -- a relying party's own webhook -----------------------------------------------------------------

RELYING_PARTY_WEBHOOK = openapi.schema("RelyingPartyWebhook", {
    "type": "object", "required": ["id", "url", "event_types", "created_at"],
    "properties": {"id": {"type": "string", "examples": ["whk_01jdx4q6m8v9z3k2c7b5n1r0yt"]},
                   "url": {"type": "string"}, "description": {"type": "string"},
                   "event_types": {"type": "array", "items": {"type": "string"}},
                   "created_at": {"type": "string", "format": "date-time"},
                   "secret": {"type": "string", "description": "Only when registered: shown once (HMAC-SHA256 "
                                                                "over the timestamp and body, as every webhook)"},
                   "enabled": {"type": "boolean", "description": "Off when the organisation turned it off"},
                   "deliveries": {"type": "array", "items": events_api.DELIVERY,
                                  "description": "The newest 20, newest first (without their id)"}}})
WEBHOOK_INPUT = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["url"], "properties": {"url": {
        "type": "string", "format": "uri", "maxLength": 500,
        "description": "https (http only where the service allows it), no user name, password or fragment"}}}}}}
WEBHOOK_SUMMARY = ("this API key's own webhook: it hears when a power of attorney it fetched is suspended, "
                   "resumed, revoked or expires")
WEBHOOK_DESCRIPTION = ("Fetches are remembered per key: a party that replaces its key registers the webhook "
                       "again with the new key and fetches (or looks up) its powers with it, to be told of "
                       "them again. A revoked or expired key's endpoint hears nothing more.")
WEBHOOK_ERRORS = {400: json_response("The body is not a JSON object", openapi.ERROR),
                  401: json_response("No valid API key for this organisation", openapi.ERROR),
                  403: json_response("The key lacks the scope", openapi.ERROR),
                  404: json_response("This key has no webhook endpoint yet", openapi.ERROR)}


def _key_id() -> int:
    key_id = apikeys.current_key_id()
    assert key_id is not None, "apikeys.requires authenticated the call"
    return key_id


def _relying_party_endpoint() -> WebhookEndpoint:
    endpoint = events.relying_party_endpoint(_key_id())
    if endpoint is None:
        raise NotFound(_l("This API key has no webhook endpoint yet: PUT one."), code="webhook_endpoint_not_found")
    return endpoint


@bp.get("/relying-party-webhook")
@operation(summary=f"Show {WEBHOOK_SUMMARY}, with its newest deliveries", tags=["Powers of attorney"],
           description=WEBHOOK_DESCRIPTION, security=READ,
           responses={200: json_response("The endpoint", RELYING_PARTY_WEBHOOK), **WEBHOOK_ERRORS})
@apikeys.requires("delegation:read")
def relying_party_webhook() -> Response:
    endpoint = _relying_party_endpoint()
    return jsonify(events_api.endpoint_json(endpoint) | {"deliveries": [
        events_api.delivery_json(*row, with_id=False) for row in events.recent_deliveries(endpoint)]})


@bp.put("/relying-party-webhook")
@operation(summary=f"Register (201, with its signing secret) or move (200) {WEBHOOK_SUMMARY}",
           tags=["Powers of attorney"], description=WEBHOOK_DESCRIPTION, security=READ, request_body=WEBHOOK_INPUT,
           responses={200: json_response("Moved to the new URL", RELYING_PARTY_WEBHOOK),
                      201: json_response("Registered, with its secret", RELYING_PARTY_WEBHOOK),
                      422: json_response("Invalid URL", openapi.ERROR),
                      **{code: answer for code, answer in WEBHOOK_ERRORS.items() if code != 404}})
@apikeys.requires("delegation:read")
def set_relying_party_webhook() -> tuple[Response, int]:
    url = openapi.json_body().get("url")
    if not isinstance(url, str):
        raise events.WebhookError(_l("Give the url to post events to."), code="invalid_url", field="url")
    tenant = current_tenant()
    endpoint, secret = events.set_relying_party_endpoint(tenant, _key_id(), url=url,
                                                         event_types=services.RELYING_PARTY_EVENTS)
    audit.record(tenant, "webhook.created" if secret else "webhook.updated", actor=apikeys.actor(),
                 target=endpoint.public_id, details={"url": endpoint.url, "relying_party": True})
    return jsonify(events_api.endpoint_json(endpoint, secret)), 201 if secret else 200


@bp.delete("/relying-party-webhook")
@operation(summary=f"Delete {WEBHOOK_SUMMARY}, and its delivery log", tags=["Powers of attorney"], security=READ,
           responses={204: {"description": "Deleted"}, **WEBHOOK_ERRORS})
@apikeys.requires("delegation:read")
def delete_relying_party_webhook() -> tuple[str, int]:
    endpoint = _relying_party_endpoint()
    audit.record(current_tenant(), "webhook.deleted", actor=apikeys.actor(), target=endpoint.public_id,
                 details={"url": endpoint.url, "relying_party": True})
    events.delete_endpoint(endpoint)
    return "", 204
