"""Console pages for powers of attorney: the list, a form to prepare one, and a page per
power with its history and actions (send for signature, access code, suspend, resume,
revoke, and — for platform operators — the paper-route review)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from saas import clock, db
from saas.delegation import services
from saas.delegation.models import PowerStatus
from saas.errors import ServiceError
from saas.tenants import audit
from saas.tenants.console import (
    CAN_DEVELOP,
    recent_auth_required,
    require_role,
    signed_in_user,
    tenant_console,
)
from saas.tenants.context import current_tenant

FIELDS = {"principal.name": "principal_name", "principal.address": "principal_address", "principal": "form",
          "corporate_number": "corporate_number", "agents": "agents", "matters": "matters",
          "authorization_details": "detail_type", "valid_from": "valid_from", "valid_until": "valid_until",
          "agency": "agency", "method": "method", "parent": "parent"}
AGENT_ROWS = 3


def status_labels() -> dict[str, str]:
    return {"draft": _("Draft"), "awaiting_signature": _("Awaiting the representative's signature"),
            "awaiting_review": _("Awaiting an operator's review"), "active": _("In force"),
            "suspended": _("Suspended"), "revoked": _("Revoked"), "expired": _("Expired"),
            "not_in_force": _("Not in force yet"), "not_yet_valid": _("Not valid yet")}


def _errors(error: ServiceError) -> dict[str, str]:
    return {FIELDS.get(error.field or "", "form"): str(error.message)}


def _form_body(form: Any) -> dict[str, Any]:
    """The API's JSON body from the console form (one authorization detail; an amount ceiling)."""
    agents = [{"name": form.get(f"agent_name_{i}", ""), "affiliation": form.get(f"agent_affiliation_{i}", ""),
               "email": form.get(f"agent_email_{i}", "")} for i in range(AGENT_ROWS)]
    detail: dict[str, Any] = {"type": form.get("detail_type", "").strip()}
    for name in ("actions", "locations"):
        values = [v.strip() for v in form.get(f"detail_{name}", "").split(",") if v.strip()]
        if values:
            detail[name] = values
    ceiling = form.get("amount_max", "").replace(",", "").strip()
    if ceiling:  # not a number: left as typed, for the scope check to name the field
        detail["limits"] = {"amount": {"currency": "JPY", "max": int(ceiling) if ceiling.isdigit() else ceiling}}
    body: dict[str, Any] = {
        "principal": {"corporate_number": form.get("corporate_number", ""), "name": form.get("principal_name", ""),
                      "address": form.get("principal_address", "")},
        "agents": [a for a in agents if a["name"].strip() or a["affiliation"].strip() or a["email"].strip()],
        "matters": [line for line in form.get("matters", "").splitlines() if line.strip()],
        "authorization_details": [detail] if detail["type"] else [],
        "valid_until": _day_end(form.get("valid_until", "")), "agency": form.get("agency", "several"),
        "subdelegation_allowed": form.get("subdelegation_allowed") == "1",
        "method": form.get("method", "principal")}
    if form.get("valid_from"):
        body["valid_from"] = form["valid_from"] + "T00:00:00+09:00"
    if form.get("parent", "").strip():
        body["parent"] = form["parent"].strip()
    return body


def _day_end(value: str) -> str:
    return f"{value}T23:59:59+09:00" if value else ""


@tenant_console.get("/powers")
def powers() -> str:
    status = request.args.get("status") or None
    if status not in {s.value for s in PowerStatus}:
        status = None
    found = services.list_powers(status=status)
    return render_template("delegation/console_list.html", tenant=current_tenant(), powers=found, status=status,
                           labels=status_labels(),
                           statuses=[s.value for s in PowerStatus], agents={p.id: services.agents_of(p) for p in found})


@tenant_console.route("/powers/new", methods=["GET", "POST"])
def new_power() -> Any:
    require_role(*CAN_DEVELOP)
    errors: dict[str, str] = {}
    values: dict[str, str] = dict(request.form) if request.method == "POST" else {
        "valid_until": (clock.now() + timedelta(days=365)).date().isoformat(), "agency": "several",
        "method": "principal"}
    if request.method == "POST":
        try:
            power = services.create_draft(current_tenant(), _form_body(request.form), actor=_actor())
            audit.record(current_tenant(), "power.created", actor=signed_in_user(), target=power.public_id)
        except ServiceError as error:
            db.session.rollback()
            errors = _errors(error)
        else:
            flash(_("The draft is saved. Check it, then send it to the representative for signature."))
            return redirect(url_for("tenant_console.power", power_id=power.public_id))
    return render_template("delegation/console_form.html", tenant=current_tenant(), values=values, errors=errors,
                           rows=range(AGENT_ROWS)), 422 if errors else 200


def _actor() -> str:
    user = signed_in_user()
    return f"{user.public_id} ({user.email})" if user else "console"


@tenant_console.get("/powers/<power_id>")
def power(power_id: str) -> str:
    return _page(services.get(power_id))


def _page(found: Any, **extra: Any) -> str:
    return render_template("delegation/console_power.html", tenant=current_tenant(), power=found,
                           details=services.describe(found), history=services.history(found),
                           chain=services.verify_history(found),
                           operator=bool(getattr(signed_in_user(), "is_operator", False)), labels=status_labels(),
                           agents=services.agents_of(found),
                           **{"signing_url": None, "access_code": None, "binding_url": None, **extra})


@tenant_console.post("/powers/<power_id>/submit")
def submit_power(power_id: str) -> str:
    require_role(*CAN_DEVELOP)
    found = services.get(power_id)
    link = services.submit(current_tenant(), found, actor=_actor())
    audit.record(current_tenant(), "power.submitted", actor=signed_in_user(), target=found.public_id)
    return _page(found, signing_url=link)


@tenant_console.post("/powers/<power_id>/agents/<int:position>/link")
def power_agent_link(power_id: str, position: int) -> str:
    require_role(*CAN_DEVELOP)
    found = services.get(power_id)
    link = services.binding_link(current_tenant(), found, position)
    audit.record(current_tenant(), "power.agent_link_issued", actor=signed_in_user(), target=found.public_id,
                 details={"agent": position})
    return _page(found, binding_url=link)


@tenant_console.post("/powers/<power_id>/access-code")
def power_access_code(power_id: str) -> str:
    require_role(*CAN_DEVELOP)
    found = services.get(power_id)
    code = services.issue_access_code(current_tenant(), found)
    audit.record(current_tenant(), "power.access_code_issued", actor=signed_in_user(), target=found.public_id)
    return _page(found, access_code=code)


@tenant_console.post("/powers/<power_id>/<any(suspend, resume, revoke):action>")
@recent_auth_required
def change_power(power_id: str, action: str) -> Response:
    require_role(*CAN_DEVELOP)
    found = services.get(power_id)
    reason = request.form.get("reason", "")
    tenant = current_tenant()
    try:
        if action == "suspend":
            services.suspend(tenant, found, actor=_actor(), reason=reason)
        elif action == "resume":
            services.resume(tenant, found, actor=_actor())
        else:
            revoked = services.revoke(tenant, found, actor=_actor(), reason=reason)
            if len(revoked) > 1:
                flash(_("Its %(count)d sub-delegations were revoked with it.", count=len(revoked) - 1))
    except ServiceError as error:
        db.session.rollback()
        flash(str(error.message), "error")
        return redirect(url_for("tenant_console.power", power_id=power_id))
    audit.record(tenant, {"suspend": "power.suspended", "resume": "power.resumed", "revoke": "power.revoked"}[action],
                 actor=signed_in_user(), target=found.public_id, details={"reason": reason} if reason else None)
    return redirect(url_for("tenant_console.power", power_id=power_id))


@tenant_console.post("/powers/<power_id>/review")
@recent_auth_required
def review_power(power_id: str) -> Response:
    """The paper route: a platform operator confirms the representative from documents."""
    user = signed_in_user()
    if user is None or not user.is_operator:
        return Response(status=404)
    found = services.get(power_id)
    try:
        services.review(current_tenant(), found, approve=request.form.get("decision") == "approve",
                        reviewer=f"operator {user.email}", evidence=request.form.get("evidence", ""))
    except ServiceError as error:
        db.session.rollback()
        flash(str(error.message), "error")
        return redirect(url_for("tenant_console.power", power_id=power_id))
    audit.record(current_tenant(), "power.reviewed", actor=user, target=found.public_id,
                 details={"decision": request.form.get("decision", "")})
    return redirect(url_for("tenant_console.power", power_id=power_id))


@tenant_console.get("/powers/<power_id>/record.json")
def power_record(power_id: str) -> Response:
    found = services.get(power_id)
    record = json.loads(found.record) if found.record else None
    if not record or "format" not in record:
        return Response(status=404)
    response = Response(json.dumps(record, ensure_ascii=False, indent=2), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{found.public_id}.json"'
    return response

