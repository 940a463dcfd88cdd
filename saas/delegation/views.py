"""The representative's signing ceremony, ``/t/<slug>/powers/sign/<token>``.

The representative opens the link the tenant sent, reads the power, proves who they are
with the card (user-authentication certificate and PIN, in the bridge agent), then signs
the power with the signature key (signature password, with the power's text shown in
the agent). The page is the card-login page's script (``login.js``) speaking the same
four steps: challenge, card, sign, cancel.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l

from saas import clock, db, urls
from saas.delegation import services
from saas.delegation.models import PowerStatus
from saas.delegation.services import PowerError
from saas.jpki.errors import VerificationFailed
from saas.oidc import login
from saas.oidc.authorize import failure_message
from saas.oidc.views import agent_page
from saas.tenants.context import current_tenant

bp = Blueprint("delegation_pages", __name__, url_prefix="/t/<tenant_slug>/powers")
CEREMONY = "kk_poa_ceremony"  # session key: {"holder": power id, "challenge" | "person"}
BINDING = "kk_poa_binding"  # session key: {"holder": agent row id, "challenge"}


def _json(body: dict[str, Any], status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _state(key: str, holder: Any) -> dict[str, Any]:
    state = session.get(key)
    return state if isinstance(state, dict) and state.get("holder") == holder else {}


def _new_challenge(key: str, holder: Any) -> str:
    """A single-use challenge for this page's card login, remembered in the session."""
    challenge = login.issue_challenge().nonce
    session[key] = {"holder": holder, "challenge": challenge}
    return challenge


def _card_person(key: str, holder: Any) -> int:
    """The person whose card answered this page's challenge (spent whatever happens)."""
    state = _state(key, holder)
    body = request.get_json(silent=True)
    if not state.get("challenge"):
        raise PowerError(_l("Ask for a challenge first."), code="no_challenge", status=400)
    if not isinstance(body, dict) or not isinstance(body.get("token"), dict):
        raise PowerError(_l("The agent's answer is malformed."), code="malformed", status=400)
    session[key] = {"holder": holder}
    try:
        result = login.verify_card_login(current_tenant(), body["token"], nonce=state["challenge"],
                                         origin=urls.root())
    except VerificationFailed as error:
        db.session.commit()  # the spent challenge stays spent
        raise PowerError(failure_message(error.code), code=error.code, status=400) from None
    return result.person_id


@bp.get("/sign/<token>")
def sign(token: str) -> Response:
    tenant = current_tenant()
    power = services.by_signing_token(token)
    challenge = _new_challenge(CEREMONY, power.public_id)
    body = services.payload(tenant, power)
    return agent_page(render_template(
        "delegation/sign.html", tenant=tenant, power=power, token=token, text=body["text"], challenge=challenge,
        ports=current_app.config["BRIDGE_AGENT_PORTS"], expires=power.signing_expires_at))


@bp.post("/sign/<token>/challenge")
def sign_challenge(token: str) -> Response:
    power = services.by_signing_token(token)
    return _json({"challenge": _new_challenge(CEREMONY, power.public_id), "origin": urls.root()})


@bp.post("/sign/<token>/card")
def sign_card(token: str) -> Response:
    """The card login of the representative; then what the signature key must sign."""
    tenant = current_tenant()
    person = _card_person(CEREMONY, services.by_signing_token(token).public_id)
    power = services.by_signing_token(token)
    request_ = services.start_signing(tenant, power)
    session[CEREMONY] = {"holder": power.public_id, "person": person}
    return _json({"next": "sign", "purpose": "transaction", "text": request_.text,
                  "digest": base64.b64encode(request_.digest).decode()})


@bp.post("/sign/<token>/release")
def sign_release(token: str) -> Response:
    """The signature key's answer: verified, matched to the register, sealed."""
    tenant = current_tenant()
    power = services.by_signing_token(token)
    state = _state(CEREMONY, power.public_id)
    if not state.get("person"):
        raise PowerError(_l("Log in with the card first."), code="not_authenticated", status=409)
    body = request.get_json(silent=True)
    try:
        signature = base64.b64decode(str(body["signature"]), validate=True)  # type: ignore[index]
        certificate = base64.b64decode(str(body["certificate"]), validate=True)  # type: ignore[index]
    except (TypeError, KeyError, ValueError, binascii.Error):
        raise PowerError(_l("The agent's answer is malformed."), code="malformed", status=400) from None
    services.complete_signing(tenant, power, signature=signature, certificate=certificate,
                              expected_person=int(state["person"]))
    session.pop(CEREMONY, None)
    return _json({"redirect": url_for("delegation_pages.signed", power_id=power.public_id,
                                      code=power.verification_code)})


@bp.post("/sign/<token>/cancel")
def sign_cancel(token: str) -> Response:
    services.by_signing_token(token)
    session.pop(CEREMONY, None)
    return _json({"redirect": url_for("delegation_pages.sign", token=token)})


def _with_code(power_id: str) -> Any:
    """The power, for whoever holds its verification code (printed on paper); else a 404."""
    power = services.get(power_id)
    if request.args.get("code", "") != power.verification_code:
        raise PowerError(_l("There is no such power of attorney."), code="power_not_found", status=404)
    return power


@bp.get("/<power_id>/rendition.pdf")
def rendition(power_id: str) -> Response:
    from saas.delegation import rendition as printable

    power = _with_code(power_id)
    body = printable.pdf(issuer_name=current_tenant().display_name, details=services.describe(power),
                         signed_at=power.signed_at, valid_from=power.valid_from, valid_until=power.valid_until,
                         verify_url=urls.external("delegation_pages.signed", power_id=power.public_id,
                                                  code=power.verification_code), now=clock.now())
    response = Response(body, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="{power.public_id}.pdf"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/<power_id>/signed")
def signed(power_id: str) -> Response:
    """The result, for whoever holds the power's verification code (printed on paper)."""
    power = _with_code(power_id)
    record = json.loads(power.record) if power.record else {}
    return Response(render_template(
        "delegation/signed.html", tenant=current_tenant(), power=power, details=services.describe(power),
        review=power.status is PowerStatus.AWAITING_REVIEW, sealed="format" in record,
        now=clock.now()), mimetype="text/html")


# -- an agent binds their card ---------------------------------------------------------------------


@bp.get("/agents/<token>")
def bind(token: str) -> Response:
    tenant = current_tenant()
    power, agent = services.agent_by_binding_token(token)
    challenge = _new_challenge(BINDING, agent.id)
    return agent_page(render_template(
        "delegation/bind.html", tenant=tenant, power=power, agent=agent, token=token, challenge=challenge,
        ports=current_app.config["BRIDGE_AGENT_PORTS"], details=services.describe(power)))


@bp.post("/agents/<token>/challenge")
def bind_challenge(token: str) -> Response:
    _power, agent = services.agent_by_binding_token(token)
    return _json({"challenge": _new_challenge(BINDING, agent.id), "origin": urls.root()})


@bp.post("/agents/<token>/card")
def bind_card(token: str) -> Response:
    person = _card_person(BINDING, services.agent_by_binding_token(token)[1].id)
    session.pop(BINDING, None)
    power, agent = services.agent_by_binding_token(token)
    services.bind_agent(agent, person)
    return _json({"redirect": url_for("delegation_pages.bound", power_id=power.public_id)})


@bp.post("/agents/<token>/cancel")
def bind_cancel(token: str) -> Response:
    services.agent_by_binding_token(token)
    session.pop(BINDING, None)
    return _json({"redirect": url_for("delegation_pages.bind", token=token)})


@bp.get("/<power_id>/bound")
def bound(power_id: str) -> Response:
    return Response(render_template("delegation/bound.html", tenant=current_tenant()), mimetype="text/html")
