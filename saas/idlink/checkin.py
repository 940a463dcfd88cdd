"""Reception check-in, ticket gates and shelter arrivals with the card, at registered devices.

A device (a kiosk) has its own key (``kk_dev_…``, shown once, revocable). It asks for a
challenge, has the bridge agent on the kiosk authenticate the card against it (the PIN
typed into the agent), and posts the token. The answer: the local ids linked to that
person (a patient number), "not linked yet" (staff may then link one after checking), for
a gate whether the person holds the ticket, or the refusal with its reason (a revoked
card). Every check-in is recorded; shelters see arrival counts and export them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import request
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from saas import clock, db
from saas.db import all_tenants
from saas.errors import NotFound, ServiceError
from saas.idlink import services
from saas.idlink.models import CheckIn, Device, IdLink
from saas.jpki.errors import VerificationFailed
from saas.oidc import login
from saas.oidc.authorize import failure_message
from saas.tenants.context import current_tenant
from saas.tenants.models import Tenant

KINDS = ("reception", "gate", "shelter")
KEY_PREFIX = "kk_dev_"


class CheckInError(ServiceError):
    status = 422


class DeviceUnauthorized(ServiceError):
    status = 401
    code = "invalid_device_key"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def register_device(tenant: Tenant, *, name: str, kind: str, origin: str, location: str = "") -> tuple[Device, str]:
    """A new device and its key (shown this once)."""
    name, location = " ".join(str(name or "").split()), " ".join(str(location or "").split())
    if not name or len(name) > 200 or len(location) > 200:
        raise CheckInError(_l("Name the device (at most 200 characters)."), code="invalid_name", field="name")
    if kind not in KINDS:
        raise CheckInError(_l("The kind is reception, gate or shelter."), code="invalid_kind", field="kind")
    parts = urlsplit(str(origin or ""))
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise CheckInError(_l("The origin is the kiosk page's scheme and host, e.g. https://kiosk.example.jp."),
                           code="invalid_origin", field="origin")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    device = Device(tenant_id=tenant.id, name=name, kind=kind, location=location,
                    origin=f"{parts.scheme}://{parts.netloc}", key_hash=_hash(key), hint=key[:12] + "…",
                    created_at=clock.now())
    db.session.add(device)
    db.session.flush()
    return device, key


def devices() -> list[Device]:
    return list(db.session.scalars(select(Device).order_by(Device.id)))


def get_device(public_id: str) -> Device:
    device = db.session.scalar(select(Device).where(Device.public_id == public_id))
    if device is None:
        raise NotFound(_l("There is no such device."), code="device_not_found")
    return device


def revoke_device(device: Device) -> None:
    device.revoked_at = device.revoked_at or clock.now()
    db.session.flush()


def authenticate_device() -> Device:
    """The request's device, by ``Authorization: Bearer kk_dev_…``, of the URL's tenant."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value.startswith(KEY_PREFIX):
        raise DeviceUnauthorized(_l("Send the device key: Authorization: Bearer kk_dev_…"))
    with all_tenants(db.session):
        device = db.session.scalar(select(Device).where(Device.key_hash == _hash(value)))
    if device is None or device.tenant_id != current_tenant().id or device.revoked_at is not None:
        raise DeviceUnauthorized(_l("This device key is not valid here: unknown, revoked, or of another "
                                    "organisation."))
    return device


def challenge(device: Device) -> dict[str, str]:
    """A single-use challenge for the kiosk's bridge agent, and the origin it must sign."""
    device.last_seen_at = clock.now()
    return {"challenge": login.issue_challenge().nonce, "origin": device.origin}


def check_in(tenant: Tenant, device: Device, *, token: Any, nonce: Any, ticket: Any = None) -> dict[str, Any]:
    """Verify the card and answer what the device needs; the check-in is recorded."""
    if not isinstance(token, dict) or not isinstance(nonce, str):
        raise CheckInError(_l("Send the agent's token and the challenge it answered."), code="malformed")
    device_id, now = device.id, clock.now()
    try:
        card = login.verify_card_login(tenant, token, nonce=nonce, origin=device.origin)
    except VerificationFailed as error:
        db.session.commit()  # the spent challenge stays spent
        db.session.add(CheckIn(tenant_id=tenant.id, device_id=device_id, at=now, result="refused",
                               reason=error.code[:64], local_ids="[]"))
        db.session.flush()
        return {"result": "refused", "reason": error.code, "message": failure_message(error.code)}
    held = [found.local_id for found in services.links_of(card.person_id)]
    device = db.session.get(Device, device_id)  # type: ignore[assignment]
    if device.kind == "gate":
        wanted = str(ticket or "")
        result = "holder" if wanted and wanted in held else "not_holder"
        told = [wanted] if result == "holder" else []
    else:
        result, told = ("linked" if held else "not_linked"), held
    row = CheckIn(tenant_id=tenant.id, device_id=device_id, at=now, result=result, person_id=card.person_id,
                  sub=card.sub, local_ids=json.dumps(told, ensure_ascii=False))
    db.session.add(row)
    device.last_seen_at = now
    db.session.flush()
    return {"result": result, "checkin": row.public_id, "sub": card.sub, "local_ids": told}


def link_at_reception(tenant: Tenant, device: Device, *, checkin_id: Any, local_id: Any) -> IdLink:
    """Staff checked the person's papers: link the local id to whoever just checked in."""
    if device.kind != "reception":  # a gate or shelter kiosk has no staff to check papers
        raise CheckInError(_l("Only a reception device links local ids: this one is a ticket gate or a shelter "
                              "entrance."), code="not_a_reception_device", status=403)
    row = db.session.scalar(select(CheckIn).where(CheckIn.public_id == str(checkin_id or ""),
                                                  CheckIn.device_id == device.id))
    if row is None or row.person_id is None or row.sub is None:
        raise NotFound(_l("There is no such check-in at this device."), code="checkin_not_found")
    if (clock.now() - row.at).total_seconds() > 600:
        raise CheckInError(_l("The check-in is more than ten minutes old: check in again."), code="checkin_expired",
                           status=409)
    return services.link(tenant, local_id=services.checked_local_id(local_id), person_id=row.person_id, sub=row.sub,
                         assurance="reception", made_by=device.public_id)


def arrivals(since: datetime | None = None) -> list[tuple[Device, int, int]]:
    """(shelter device, check-ins, distinct persons) for the session's tenant."""
    query = (select(CheckIn.device_id, func.count(), func.count(func.distinct(CheckIn.person_id)))
             .where(CheckIn.result != "refused").group_by(CheckIn.device_id))
    if since is not None:
        query = query.where(CheckIn.at >= since)
    counts = {device_id: (total, people) for device_id, total, people in db.session.execute(query)}
    return [(device, *counts.get(device.id, (0, 0))) for device in devices() if device.kind == "shelter"]


ARRIVALS_HEADER = ("shelter", "location", "arrived_at", "person")


def arrivals_rows() -> list[tuple[str, str, datetime, str]]:
    """Every arrival at the tenant's shelters, for the municipality (no names, pairwise ids)."""
    shelters = {device.id: device for device in devices() if device.kind == "shelter"}
    return [(shelters[row.device_id].name, shelters[row.device_id].location, row.at, row.sub or "")
            for row in db.session.scalars(select(CheckIn).where(CheckIn.device_id.in_(shelters),
                                                                CheckIn.result != "refused").order_by(CheckIn.id))]
