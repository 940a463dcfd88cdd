"""The ID-linking REST API, ``/t/<slug>/api/links…`` and ``…/link-invitations``.

Keys with ``idlink:write`` invite members (one-time codes, up to 1,000 at once) and unlink;
``idlink:read`` looks links up by id or local id. A member's card login through the
tenant's app with ``authorization_details=[{"type": "kakehashi_id_link", "invitation": …}]``
makes the link (see the README).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from saas import openapi
from saas.idlink import services
from saas.openapi import json_response, operation
from saas.tenants import apikeys, audit
from saas.tenants.context import current_tenant

bp = Blueprint("idlink_api", __name__, url_prefix="/t/<tenant_slug>/api")

READ = [{"apiKey": ["idlink:read"]}]
WRITE = [{"apiKey": ["idlink:write"]}]
LINK = openapi.schema("IdLink", {
    "type": "object", "required": ["id", "local_id", "sub", "assurance", "status"],
    "properties": {"id": {"type": "string", "examples": ["lnk_01jdx4q6m8v9z3k2c7b5n1r0yt"]},
                   "local_id": {"type": "string"}, "sub": {"type": "string", "description": "The person's pairwise "
                                                                                            "subject at this tenant"},
                   "assurance": {"type": "string", "enum": ["card_login", "reception", "operator"]},
                   "made_by": {"type": "string"}, "status": {"type": "string", "enum": ["active", "unlinked"]},
                   "created_at": {"type": "string", "format": "date-time"},
                   "updated_at": {"type": "string", "format": "date-time"},
                   "card": {"type": "object", "description": "The person's card as the daily status sweep last saw "
                                                             "it (status null until it could judge)",
                            "properties": {
                                "status": {"type": ["string", "null"],
                                           "enum": ["valid", "revoked", "lost", "expired", None]},
                                "reason": {"type": ["string", "null"], "description": "The CRL reason of a revocation",
                                           "examples": ["keyCompromise"]},
                                "changed_at": {"type": ["string", "null"], "format": "date-time"}}}}})
ERRORS = {401: json_response("No valid API key for this organisation", openapi.ERROR),
          403: json_response("The key lacks the scope", openapi.ERROR),
          404: json_response("No such link", openapi.ERROR),
          422: json_response("Invalid input", openapi.ERROR)}


@bp.post("/link-invitations")
@operation(summary="One-time codes that link local ids to the members who log in with them",
           tags=["ID linking"], security=WRITE,
           request_body={"required": True, "content": {"application/json": {"schema": {
               "type": "object", "required": ["local_ids"], "properties": {
                   "local_ids": {"type": "array", "items": {"type": "string"}, "maxItems": services.MAX_INVITATIONS}}}}}},
           responses={201: json_response("The codes (shown once)", {"type": "object"}), **ERRORS})
@apikeys.requires("idlink:write")
def invite() -> tuple[Response, int]:
    tenant = current_tenant()
    issued = services.create_invitations(tenant, openapi.json_body().get("local_ids"))
    audit.record(tenant, "link.invitations_created", actor=apikeys.actor(), details={"count": len(issued)})
    return jsonify(data=issued), 201


@bp.get("/links")
@operation(summary="The link of a local id, or a page of the links (oldest first) with filters",
           description="With local_id: that link (404 when none). Without: up to `limit` links after the "
                       "link `after` (the previous page's `next`), filtered by status, the card's status "
                       "and the start of the local id.", tags=["ID linking"], security=READ,
           parameters=[{"name": "local_id", "in": "query", "required": False, "schema": {"type": "string"}},
                       {"name": "status", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["active", "unlinked"]}},
                       {"name": "card", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": list(services.CARD_FILTERS)}},
                       {"name": "local_id_prefix", "in": "query", "required": False, "schema": {"type": "string"}},
                       {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}},
                       {"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": services.PAGE_LIMIT, "default": 100}}],
           responses={200: json_response("The link, or a page {data: [IdLink], next: link id or null}", LINK),
                      **ERRORS})
@apikeys.requires("idlink:read")
def by_local_id() -> Response:
    if "local_id" in request.args:
        return jsonify(services.describe(services.find(request.args["local_id"])))
    page, following = services.page(
        services.listing(status=request.args.get("status", ""), card=request.args.get("card", ""),
                         prefix=request.args.get("local_id_prefix", "")),
        after=request.args.get("after", ""), limit=request.args.get("limit", "100"))
    return jsonify(data=[services.describe(link) for link in page], next=following)


@bp.get("/links/<link_id>")
@operation(summary="A link", tags=["ID linking"], security=READ, responses={200: json_response("The link", LINK),
                                                                          **ERRORS})
@apikeys.requires("idlink:read")
def fetch(link_id: str) -> Response:
    return jsonify(services.describe(services.get(link_id)))


@bp.get("/links/<link_id>/history")
@operation(summary="Who held the local id when (links, transfers, unlinking)", tags=["ID linking"], security=READ,
           responses={200: json_response("The history, oldest first", {"type": "object"}), **ERRORS})
@apikeys.requires("idlink:read")
def link_history(link_id: str) -> Response:
    found = services.get(link_id)
    return jsonify(data=[{"at": row.at.isoformat(), "action": row.action, "sub": row.sub, "by": row.by}
                         for row in services.history(found)])


@bp.post("/links/<link_id>/transfer")
@operation(summary="Offer a link (a ticket) to another verified person: a one-time code they log in with",
           tags=["ID linking"], security=WRITE,
           responses={201: json_response("The transfer code (shown once)", {"type": "object"}), **ERRORS})
@apikeys.requires("idlink:write")
def transfer(link_id: str) -> tuple[Response, int]:
    tenant = current_tenant()
    found = services.get(link_id)
    offered = services.offer_transfer(tenant, found)
    audit.record(tenant, "link.transfer_offered", actor=apikeys.actor(), target=found.public_id)
    return jsonify(offered), 201


@bp.delete("/links/<link_id>")
@operation(summary="Unlink a local id from its person", tags=["ID linking"], security=WRITE,
           responses={200: json_response("The link, unlinked", LINK), **ERRORS})
@apikeys.requires("idlink:write")
def unlink(link_id: str) -> Response:
    tenant = current_tenant()
    found = services.get(link_id)
    services.unlink(tenant, found, by=apikeys.current_key_public_id())
    audit.record(tenant, "link.unlinked", actor=apikeys.actor(), target=found.public_id)
    return jsonify(services.describe(found))


# -- registered devices: reception, ticket gates, shelters ----------------------------------------------

DEVICE = [{"deviceKey": []}]


@bp.post("/checkin/challenge")
@operation(summary="A single-use challenge for the kiosk's bridge agent (device key)", tags=["Check-in"],
           security=DEVICE, responses={200: json_response("The challenge and the origin the card signs",
                                                          {"type": "object"}), **ERRORS})
def checkin_challenge() -> Response:
    from saas.idlink import checkin

    return _no_store(jsonify(checkin.challenge(checkin.authenticate_device())))


@bp.post("/checkin")
@operation(summary="Check a card in: the linked local ids, 'not linked', a gate's ticket check, or the refusal",
           tags=["Check-in"], security=DEVICE,
           request_body={"required": True, "content": {"application/json": {"schema": {
               "type": "object", "required": ["token", "challenge"], "properties": {
                   "token": {"type": "object", "description": "The bridge agent's web-eid:1.0 token"},
                   "challenge": {"type": "string"}, "ticket": {"type": "string", "description": "Gates: the ticket"}}}}}},
           responses={200: json_response("The answer", {"type": "object"}), **ERRORS})
def checkin_card() -> Response:
    from saas.idlink import checkin

    device = checkin.authenticate_device()
    body = openapi.json_body()
    return _no_store(jsonify(checkin.check_in(current_tenant(), device, token=body.get("token"),
                                              nonce=body.get("challenge"), ticket=body.get("ticket"))))


@bp.post("/checkin/link")
@operation(summary="Reception: link a local id to the person who just checked in (staff confirmed it)",
           tags=["Check-in"], security=DEVICE,
           request_body={"required": True, "content": {"application/json": {"schema": {
               "type": "object", "required": ["checkin", "local_id"],
               "properties": {"checkin": {"type": "string"}, "local_id": {"type": "string"}}}}}},
           responses={201: json_response("The link", LINK), **ERRORS,
                      403: json_response("The device is not a reception desk", openapi.ERROR)})
def checkin_link() -> tuple[Response, int]:
    from saas.idlink import checkin

    device = checkin.authenticate_device()
    body = openapi.json_body()
    made = checkin.link_at_reception(current_tenant(), device, checkin_id=body.get("checkin"),
                                     local_id=body.get("local_id"))
    return jsonify(services.describe(made)), 201


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
