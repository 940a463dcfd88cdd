"""Console pages for ID linking: check-in devices (register, key shown once, revoke) and
shelter arrivals (counts, CSV export)."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from saas import db
from saas.errors import ServiceError
from saas.idlink import checkin
from saas.tenants import audit
from saas.tenants.console import (
    CAN_ADMINISTER,
    recent_auth_required,
    require_role,
    signed_in_user,
    tenant_console,
)
from saas.tenants.context import current_tenant


@tenant_console.route("/devices", methods=["GET", "POST"])
def devices() -> Any:
    errors: dict[str, str] = {}
    values = {"name": "", "kind": "reception", "location": "", "origin": ""}
    if request.method == "POST":
        require_role(*CAN_ADMINISTER)
        values = {name: request.form.get(name, "") for name in values}
        try:
            device, key = checkin.register_device(current_tenant(), **values)
            audit.record(current_tenant(), "device.registered", actor=signed_in_user(), target=device.public_id,
                         details={"name": device.name, "kind": device.kind})
        except ServiceError as error:
            db.session.rollback()
            errors = {error.field or "form": str(error.message)}
        else:
            return render_template("idlink/device_key.html", tenant=current_tenant(), device=device, key=key)
    return render_template("idlink/devices.html", tenant=current_tenant(), devices=checkin.devices(),
                           arrivals=checkin.arrivals(), values=values, errors=errors,
                           kinds={"reception": _("Reception desk"), "gate": _("Ticket gate"),
                                  "shelter": _("Evacuation shelter")}), 422 if errors else 200


@tenant_console.post("/devices/<device_id>/revoke")
@recent_auth_required
def revoke_device(device_id: str) -> Response:
    require_role(*CAN_ADMINISTER)
    device = checkin.get_device(device_id)
    checkin.revoke_device(device)
    audit.record(current_tenant(), "device.revoked", actor=signed_in_user(), target=device.public_id)
    flash(_("The device's key no longer works."))
    return redirect(url_for("tenant_console.devices"))


@tenant_console.get("/devices/arrivals.csv")
def arrivals_csv() -> Response:
    response = Response(checkin.arrivals_csv(), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="shelter-arrivals.csv"'
    return response
