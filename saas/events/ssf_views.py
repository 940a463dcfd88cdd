"""The Shared Signals transmitter's HTTP API (OpenID SSF 1.0), per tenant.

Metadata at ``/.well-known/ssf-configuration/t/<slug>`` (the issuer's path after the
well-known segment, as SSF 1.0 §7.2 prescribes); stream configuration, status and
verification under ``/t/<slug>/ssf/…`` with an API key (``ssf:manage``); polling (RFC 8936)
with an ``ssf:receive`` key.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask_babel import lazy_gettext as _l

from saas import openapi, urls
from saas.events import ssf
from saas.openapi import json_response, operation
from saas.tenants import apikeys, audit
from saas.tenants.context import current_tenant

bp = Blueprint("ssf", __name__)

MANAGE = [{"apiKey": ["ssf:manage"]}]
RECEIVE = [{"apiKey": ["ssf:receive"]}]
STREAM = openapi.schema("SsfStream", {
    "type": "object", "required": ["stream_id", "iss", "aud", "delivery", "events_supported", "events_requested",
                                   "events_delivered"],
    "properties": {"stream_id": {"type": "string"}, "iss": {"type": "string"},
                   "aud": {"type": ["string", "array"]}, "delivery": {"type": "object"},
                   "events_supported": {"type": "array", "items": {"type": "string"}},
                   "events_requested": {"type": "array", "items": {"type": "string"}},
                   "events_delivered": {"type": "array", "items": {"type": "string"}},
                   "description": {"type": "string"}, "min_verification_interval": {"type": "integer"}}})
STATUS = openapi.schema("SsfStatus", {
    "type": "object", "required": ["stream_id", "status"],
    "properties": {"stream_id": {"type": "string"}, "status": {"enum": ["enabled", "paused", "disabled"]},
                   "reason": {"type": "string"}}})
BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
STREAM_ID = [{"name": "stream_id", "in": "query", "required": False, "schema": {"type": "string"}}]
ERRORS = {400: json_response("Invalid request", openapi.ERROR),
          401: json_response("No valid API key for this organisation", openapi.ERROR),
          403: json_response("The key lacks the scope", openapi.ERROR),
          404: json_response("No such stream", openapi.ERROR)}


def _issuer() -> str:
    return urls.tenant_issuer(current_tenant().slug)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ssf.StreamError(_l("Send a JSON object."), code="invalid_json")
    return body


def _actor() -> str:
    return apikeys.actor()


@bp.get("/.well-known/ssf-configuration/t/<tenant_slug>")
@operation(summary="Shared Signals transmitter metadata of a tenant (SSF 1.0)", tags=["Shared Signals"],
           security=[], responses={200: json_response("Transmitter metadata", {"type": "object"}),
                                   404: json_response("No such tenant", openapi.ERROR)})
def metadata() -> Response:
    slug = current_tenant().slug
    response = jsonify({
        "spec_version": "1_0", "issuer": _issuer(), "jwks_uri": f"{_issuer()}/jwks.json",
        "delivery_methods_supported": [ssf.PUSH, ssf.POLL],
        "configuration_endpoint": urls.external("ssf.streams", tenant_slug=slug),
        "status_endpoint": urls.external("ssf.stream_status", tenant_slug=slug),
        "verification_endpoint": urls.external("ssf.verification", tenant_slug=slug),
        "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6750"}], "default_subjects": "ALL",
    })
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.route("/t/<tenant_slug>/ssf/streams", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
@operation(summary="Stream configuration: create (POST), read (GET, one with ?stream_id or all), change (PATCH), "
                   "replace (PUT), delete (DELETE ?stream_id)", tags=["Shared Signals"], security=MANAGE,
           parameters=STREAM_ID,
           responses={200: json_response("The stream, or the list of streams", {"oneOf": [
               STREAM, {"type": "array", "items": STREAM}]}),
               201: json_response("The stream created", STREAM), 204: {"description": "Deleted"}, **ERRORS})
@apikeys.requires("ssf:manage")
def streams() -> Any:
    tenant = current_tenant()
    if request.method == "GET":
        if request.args.get("stream_id"):
            return jsonify(ssf.configuration(ssf.get_stream(request.args["stream_id"])))
        return jsonify([ssf.configuration(stream) for stream in ssf.streams()])
    if request.method == "POST":
        stream = ssf.create_stream(tenant, _body(), issuer=_issuer())
        audit.record(tenant, "ssf_stream.created", actor=_actor(), target=stream.public_id,
                     details={"delivery": stream.delivery})
        return jsonify(ssf.configuration(stream)), 201
    if request.method == "DELETE":
        stream = ssf.get_stream(request.args.get("stream_id"))
        audit.record(tenant, "ssf_stream.deleted", actor=_actor(), target=stream.public_id)
        from saas.events import services

        services.delete_endpoint(stream)
        return "", 204
    body = _body()
    stream = ssf.get_stream(body.get("stream_id"))
    ssf.update_stream(tenant, stream, body, replace=request.method == "PUT")
    audit.record(tenant, "ssf_stream.updated", actor=_actor(), target=stream.public_id)
    return jsonify(ssf.configuration(stream))


@bp.route("/t/<tenant_slug>/ssf/status", methods=["GET", "POST"])
@operation(summary="A stream's status: read (GET ?stream_id) or set enabled / paused / disabled (POST)",
           tags=["Shared Signals"], security=MANAGE, parameters=STREAM_ID,
           responses={200: json_response("The status", STATUS), **ERRORS})
@apikeys.requires("ssf:manage")
def stream_status() -> Response:
    if request.method == "GET":
        return jsonify(ssf.status(ssf.get_stream(request.args.get("stream_id"))))
    body = _body()
    stream = ssf.get_stream(body.get("stream_id"))
    result = ssf.set_status(stream, body)
    audit.record(current_tenant(), "ssf_stream.status_changed", actor=_actor(), target=stream.public_id,
                 details={"status": result["status"]})
    return jsonify(result)


@bp.post("/t/<tenant_slug>/ssf/verify")
@operation(summary="Ask for a verification event on a stream", tags=["Shared Signals"], security=MANAGE,
           request_body=BODY, responses={204: {"description": "Queued"}, **ERRORS})
@apikeys.requires("ssf:manage")
def verification() -> tuple[str, int]:
    body = _body()
    ssf.verify(current_tenant(), ssf.get_stream(body.get("stream_id")), body.get("state"))
    return "", 204


@bp.post("/t/<tenant_slug>/ssf/poll/<stream_id>")
@operation(summary="Poll a stream (RFC 8936): acknowledge SETs, receive the next ones", tags=["Shared Signals"],
           security=RECEIVE, request_body=BODY,
           responses={200: json_response("SETs by jti", {"type": "object", "required": ["sets"], "properties": {
               "sets": {"type": "object", "additionalProperties": {"type": "string"}},
               "moreAvailable": {"type": "boolean"}}}), **ERRORS})
@apikeys.requires("ssf:receive")
def poll(stream_id: str) -> Response:
    return jsonify(ssf.poll(current_tenant(), ssf.get_stream(stream_id), _body()))
