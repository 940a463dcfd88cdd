"""What the sandbox J-LIS publishes, in the shapes the live feeds have.

Everything here is test data: sandbox roots, CRLs and OCSP answers for sandbox cards,
the renewal linkage feed, and the commercial-register stand-in.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask_babel import lazy_gettext as _l

from saas import openapi
from saas.errors import NotFound, ServiceError
from saas.jpki.certificates import CertificateKind
from saas.openapi import json_response, operation
from saas.sandbox import services
from saas.sandbox.register import SandboxRegister

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")

KIND = {"name": "kind", "in": "path", "required": True,
        "schema": {"type": "string", "enum": [k.value for k in CertificateKind]}}
LINKAGE = openapi.schema("LinkageFeed", {
    "type": "object", "required": ["entries", "next_after"],
    "properties": {
        "entries": {"type": "array", "items": {
            "type": "object", "required": ["sequence", "event", "kind", "old", "new", "published_at"],
            "properties": {
                "sequence": {"type": "integer"},
                "event": {"type": "string", "enum": ["pair", "renewal", "attributes_changed"]},
                "kind": {"type": "string", "enum": ["auth", "signature"]},
                "published_at": {"type": "string", "format": "date-time"},
                "old": {"$ref": "#/components/schemas/CertificateRef"},
                "new": {"$ref": "#/components/schemas/CertificateRef"}}}},
        "next_after": {"type": "integer", "description": "Pass as `after` to read on"},
    },
})
openapi.schema("CertificateRef", {
    "type": "object", "required": ["issuer_key_id", "serial"],
    "properties": {"issuer_key_id": {"type": "string", "description": "hex"},
                   "serial": {"type": "string", "description": "decimal"},
                   "not_after": {"type": "string", "format": "date-time"}},
})
REGISTER = openapi.schema("RegisterRecord", {
    "type": "object", "required": ["corporate_number", "name", "address", "representatives", "as_of"],
    "properties": {
        "corporate_number": {"type": "string", "pattern": "^[0-9]{13}$"},
        "name": {"type": "string"}, "address": {"type": "string"},
        "as_of": {"type": "string", "format": "date"},
        "representatives": {"type": "array", "items": {
            "type": "object", "required": ["title", "name", "address", "appointed_on"],
            "properties": {"title": {"type": "string"}, "name": {"type": "string"},
                           "address": {"type": ["string", "null"],
                                       "description": "null where the company hides it"},
                           "appointed_on": {"type": "string", "format": "date"}}}},
    },
})
BINARY = {"content": {"application/pkix-crl": {"schema": {"type": "string", "contentEncoding": "binary"}}}}


@bp.get("/roots/<kind>")
@operation(summary="Sandbox root certificates of one kind (every generation), PEM",
           tags=["Sandbox"], security=[], parameters=[KIND],
           responses={200: {"description": "PEM certificates",
                            "content": {"application/x-pem-file": {"schema": {"type": "string"}}}},
                      404: openapi.json_response("Unknown kind", openapi.ERROR)})
def roots(kind: str) -> Response:
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = b"".join(root.public_bytes(Encoding.PEM) for root in services.roots(_kind(kind)))
    return Response(pem, mimetype="application/x-pem-file")


@bp.get("/crls/<kind>")
@operation(summary="The newest full CRL of the active sandbox root of one kind (DER)",
           tags=["Sandbox"], security=[], parameters=[KIND],
           responses={200: {"description": "A signed X.509 v2 CRL", **BINARY},
                      404: openapi.json_response("Unknown kind", openapi.ERROR)})
def crl(kind: str) -> Response:
    return _crl_response(kind, services.current_crl(_kind(kind)))


@bp.get("/crls/<kind>/<generation>")
@operation(summary="The newest full CRL of one sandbox root generation (by key id, hex)",
           tags=["Sandbox"], security=[],
           parameters=[KIND, {"name": "generation", "in": "path", "required": True,
                              "schema": {"type": "string", "pattern": "^[0-9a-f]{40,64}$"}}],
           responses={200: {"description": "A signed X.509 v2 CRL", **BINARY},
                      404: openapi.json_response("Unknown kind or generation", openapi.ERROR)})
def generation_crl(kind: str, generation: str) -> Response:
    try:
        key_id = bytes.fromhex(generation)
    except ValueError:
        raise NotFound(_l("There is no such sandbox root generation."), code="unknown_generation") from None
    return _crl_response(kind, services.current_crl(_kind(kind), key_id))


def _crl_response(kind: str, der: bytes) -> Response:
    response = Response(der, mimetype="application/pkix-crl")
    response.headers["Content-Disposition"] = f'attachment; filename="sandbox-{kind}.crl"'
    return response


@bp.post("/ocsp")
@operation(summary="The sandbox OCSP responder (RFC 6960)", tags=["Sandbox"], security=[],
           request_body={"required": True, "content": {"application/ocsp-request": {
               "schema": {"type": "string", "contentEncoding": "binary"}}}},
           responses={200: {"description": "A signed OCSP response (or an unsuccessful status)",
                            "content": {"application/ocsp-response": {
                                "schema": {"type": "string", "contentEncoding": "binary"}}}}})
def ocsp() -> Response:
    return Response(services.ocsp_response(request.get_data(cache=False)),
                    mimetype="application/ocsp-response")


@bp.get("/linkage")
@operation(summary="The renewal linkage feed (証明書新旧紐付け情報), oldest first",
           tags=["Sandbox"], security=[],
           parameters=[{"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                       {"name": "limit", "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
           responses={200: json_response("Entries after `after`", LINKAGE),
                      400: json_response("Bad paging values", openapi.ERROR)})
def linkage() -> Response:
    after = _int_arg("after", 0, 0, 2**62)
    limit = _int_arg("limit", 100, 1, 1000)
    entries = services.linkage_feed(after=after, limit=limit)
    return jsonify(entries=entries, next_after=entries[-1]["sequence"] if entries else after)


@bp.get("/register/corporations/<number>")
@operation(summary="Commercial-register stand-in: a corporation and its current representatives",
           tags=["Sandbox"], security=[],
           responses={200: json_response("The register record", REGISTER),
                      404: json_response("No such corporation", openapi.ERROR)})
def corporation(number: str) -> Response:
    record = SandboxRegister().lookup(number)
    if record is None:
        raise NotFound(_l("There is no corporation with this number in the sandbox register."),
                       code="corporation_not_found")
    return jsonify(
        corporate_number=record.corporate_number, name=record.name, address=record.address,
        as_of=record.as_of.isoformat(),
        representatives=[{"title": r.title, "name": r.name, "address": r.address,
                          "appointed_on": r.appointed_on.isoformat()} for r in record.representatives])


def _kind(value: str) -> CertificateKind:
    try:
        return CertificateKind(value)
    except ValueError:
        raise NotFound(_l("Unknown certificate kind."), code="unknown_kind") from None


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ServiceError(_l("%(name)s must be a whole number from %(low)s to %(high)s.",
                              name=name, low=low, high=high), code="invalid_parameter", field=name)
    return int(raw)
