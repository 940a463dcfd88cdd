"""Console pages for ID linking: check-in devices (register, key shown once, revoke) and
shelter arrivals (counts, CSV export)."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from saas import db, spreadsheet
from saas.errors import ServiceError
from saas.idlink import checkin, imports, services, sweep
from saas.idlink.models import IdLink
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
    return spreadsheet.download("shelter-arrivals.csv", checkin.ARRIVALS_HEADER, checkin.arrivals_rows())


# -- links and the bulk import ------------------------------------------------------------------------

@tenant_console.get("/links")
def links() -> tuple[str, int]:
    """The counts, the sweep's latest changes and imports, and the links page by page
    (oldest first), filtered; htmx swaps the table alone."""
    filters = _link_filters()
    errors: dict[str, str] = {}
    try:
        page, following = services.page(services.listing(**filters), after=request.args.get("after", ""),
                                         limit="50")
    except ServiceError as error:
        errors, page, following = {error.field or "form": str(error.message)}, [], None
    shown = {"links": page, "following": following, "filters": filters, "errors": errors,
             "card_labels": card_labels(), "paged": bool(request.args.get("after")),
             "status_labels": {"active": _("Linked"), "unlinked": _("Unlinked")},
             "assurance_labels": {"card_login": _("Card login"), "reception": _("At reception"),
                                  "operator": _("Operator review")}}
    status = 422 if errors else 200
    if request.headers.get("HX-Request"):
        return render_template("idlink/_link_rows.html", **shown), status
    return render_template("idlink/links.html", tenant=current_tenant(), **services.overview(),
                           last_sweep=sweep.latest(), batches=imports.latest(), change_labels=change_labels(),
                           several=services.several_per_person(current_tenant()), **shown), status


def _link_filters() -> dict[str, str]:
    return {"status": request.args.get("status", "").strip(), "card": request.args.get("card", "").strip(),
            "prefix": request.args.get("prefix", "").strip()}


@tenant_console.get("/links.csv")
def links_csv() -> Response:
    """Every link that the filters match, streamed (a million rows in pages of 1,000)."""
    tenant = current_tenant()
    filters = _link_filters()
    listing = services.listing(**filters)  # a bad filter: its code and message (422)
    rows = spreadsheet.tenant_pages(tenant.id, listing, key=IdLink.id, row=services.export_row)
    audit.record(tenant, "link.exported", actor=signed_in_user(), details={k: v for k, v in filters.items() if v})
    return spreadsheet.download(f"links-{tenant.slug}.csv", services.EXPORT_HEADER, rows)


@tenant_console.post("/links/policy")
@recent_auth_required
def link_policy() -> Response:
    require_role(*CAN_ADMINISTER)
    choice = request.form.get("several")
    if choice not in ("yes", "no"):
        raise services.LinkError(_("Choose one id per person or several."), code="invalid_choice", field="several")
    several = choice == "yes"
    services.set_several_per_person(current_tenant(), several, by=signed_in_user().public_id)  # type: ignore[union-attr]
    audit.record(current_tenant(), "link.policy_changed", actor=signed_in_user(),
                 details={"several_per_person": several})
    flash(_("A person may now hold several of your ids.") if several else
          _("A person may now hold one of your ids (links made before stay)."))
    return redirect(url_for("tenant_console.links"))


def card_labels() -> dict[str | None, str]:
    return {"valid": _("Valid"), "revoked": _("Revoked"), "lost": _("Reported lost"), "expired": _("Expired"),
            None: _("Not checked yet")}


def change_labels() -> dict[str, str]:
    return {"renewed": _("Card renewed (the link follows)"),
            "attributes_changed": _("Name or address changed"),
            "revoked": _("Card revoked"), "card_lost": _("Card reported lost"), "expired": _("Card expired")}


@tenant_console.route("/links/import", methods=["GET", "POST"])
def import_links() -> Any:
    errors: dict[str, str] = {}
    if request.method == "POST":
        require_role(*CAN_ADMINISTER)
        upload = request.files.get("file")
        try:
            batch = imports.preview(current_tenant(), filename=upload.filename if upload else "",
                                    raw=upload.read(imports.MAX_BYTES + 1) if upload else b"",
                                    by=f"{signed_in_user().public_id}")  # type: ignore[union-attr]
        except ServiceError as error:
            db.session.rollback()
            errors = {"file": str(error.message)}
        else:
            return redirect(url_for("tenant_console.import_batch", batch_id=batch.public_id))
    return render_template("idlink/import.html", tenant=current_tenant(), batch=None, errors=errors), \
        422 if errors else 200


@tenant_console.get("/links/import/<batch_id>")
def import_batch(batch_id: str) -> str:
    import json

    batch = imports.get(batch_id)
    if request.headers.get("HX-Request"):
        return render_template("idlink/_import_progress.html", batch=batch, state=imports.describe(batch))
    return render_template("idlink/import.html", tenant=current_tenant(), batch=batch, state=imports.describe(batch),
                           bad_rows=json.loads(batch.errors), errors={})


@tenant_console.post("/links/import/<batch_id>/start")
def start_import(batch_id: str) -> Response:
    require_role(*CAN_ADMINISTER)
    batch = imports.get(batch_id)
    imports.start(batch)
    audit.record(current_tenant(), "link.import_started", actor=signed_in_user(), target=batch.public_id,
                 details={"rows": batch.total_rows, "file": batch.filename})
    return redirect(url_for("tenant_console.import_batch", batch_id=batch.public_id))


@tenant_console.get("/links/import/<batch_id>/codes.csv")
@recent_auth_required
def import_codes(batch_id: str) -> Response:
    require_role(*CAN_ADMINISTER)
    batch = imports.get(batch_id)
    rows = imports.codes(batch)
    audit.record(current_tenant(), "link.codes_downloaded", actor=signed_in_user(), target=batch.public_id)
    response = spreadsheet.download(f"{batch.public_id}-codes.csv", imports.CODES_HEADER, rows)
    response.headers["Cache-Control"] = "no-store"
    return response
