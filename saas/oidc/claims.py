"""The four attributes as claims: sealed while kept, released by scope.

Standard claim names (``name``, ``address.formatted``, ``birthdate``, ``gender``) for any
OpenID Connect library, and the certificate's own forms under a namespaced claim: the
name with its full-width space, the era-coded birthdate, and the positions of substitute
characters (外字), which tell a relying party that a spelling is not exact.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from authlib.oauth2.rfc6749 import scope_to_list

from saas.jpki.certificates import Era, Gender, PersonAttributes, format_birthdate
from saas.sealing import seal, unseal
from saas.tenants.models import Tenant

ATTRIBUTE_SCOPES = ("name", "address", "birthdate", "gender")
JPKI_CLAIM = "https://kakehashi.jp/claims/jpki"


def _context(tenant: Tenant, sub: str) -> str:
    return f"{tenant.public_id}:attributes:{sub}"


def seal_attributes(tenant: Tenant, sub: str, attributes: PersonAttributes) -> bytes:
    data = {"name": attributes.name, "name_substitutes": list(attributes.name_substitutes),
            "gender": attributes.gender.value, "birthdate": attributes.birthdate.isoformat(),
            "birth_era": attributes.birth_era.value, "address": attributes.address,
            "address_substitutes": list(attributes.address_substitutes)}
    return seal(json.dumps(data, ensure_ascii=False).encode(), _context(tenant, sub))


def open_attributes(tenant: Tenant, sub: str, sealed: bytes) -> PersonAttributes:
    data = json.loads(unseal(sealed, _context(tenant, sub)))
    return PersonAttributes(
        name=data["name"], name_substitutes=tuple(data["name_substitutes"]), gender=Gender(data["gender"]),
        birthdate=date.fromisoformat(data["birthdate"]), birth_era=Era(data["birth_era"]),
        address=data["address"], address_substitutes=tuple(data["address_substitutes"]))


def requested_attributes(scope: str | None) -> list[str]:
    scopes = scope_to_list(scope) or []
    return [name for name in ATTRIBUTE_SCOPES if name in scopes]


def person_claims(tenant: Tenant, sub: str, scope: str | None, sealed: bytes | None) -> dict[str, Any]:
    """``sub`` and the attribute claims the scope asks for (and the person released)."""
    claims: dict[str, Any] = {"sub": sub}
    wanted = requested_attributes(scope)
    if not wanted or sealed is None:
        return claims
    attributes = open_attributes(tenant, sub, sealed)
    raw: dict[str, Any] = {}
    if "name" in wanted:
        claims["name"] = attributes.name.replace("\u3000", " ")
        claims["family_name"], claims["given_name"] = attributes.family_name, attributes.given_name
        raw.update(name=attributes.name, name_substitutes=list(attributes.name_substitutes))
    if "address" in wanted:
        claims["address"] = {"formatted": attributes.address, "country": "JP"}
        raw.update(address=attributes.address, address_substitutes=list(attributes.address_substitutes))
    if "birthdate" in wanted:
        claims["birthdate"] = attributes.birthdate.isoformat()
        raw["birthdate"] = format_birthdate(attributes.birthdate)
    if "gender" in wanted:
        claims["gender"] = attributes.gender.value
        raw["gender"] = attributes.gender.value
    claims[JPKI_CLAIM] = raw
    return claims
