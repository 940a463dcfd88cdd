"""What a power allows, and whether one power fits inside another: pure functions.

A power's scope is twofold: up to 20 delegated matters in Japanese for people, and the
same as RFC 9396 ``authorization_details`` objects for machines. A sub-delegated power
must fit inside its parent: every matter and every detail of the child is covered by
the parent's, and the child's validity lies within the parent's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_babel import lazy_gettext as _l

MAX_MATTERS = 20
MAX_MATTER_LENGTH = 200
MAX_DETAILS = 20
_LIST_FIELDS = ("actions", "locations", "datatypes", "privileges")


@dataclass(frozen=True)
class ScopeError(Exception):
    code: str
    message: Any  # a lazy translation
    field: str

    def __str__(self) -> str:
        return str(self.message)


def matters(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value):
        raise ScopeError("invalid_matters", _l("Give the delegated matters as a list of 1 to 20 texts."), "matters")
    cleaned = [" ".join(m.split()) for m in value]
    if len(cleaned) > MAX_MATTERS or any(not m or len(m) > MAX_MATTER_LENGTH for m in cleaned):
        raise ScopeError("invalid_matters", _l("A power lists 1 to 20 matters, each of 1 to 200 characters."), "matters")
    if len(set(cleaned)) != len(cleaned):
        raise ScopeError("invalid_matters", _l("A matter is listed twice."), "matters")
    return cleaned


def authorization_details(value: Any) -> list[dict[str, Any]]:
    """RFC 9396 objects: each has a ``type``; the common list fields are lists of strings;
    ``limits.amount`` (if any) is ``{"currency": "JPY", "max": <number>}``."""
    if not isinstance(value, list) or not value or len(value) > MAX_DETAILS:
        raise ScopeError("invalid_authorization_details",
                         _l("authorization_details is a list of 1 to 20 objects."), "authorization_details")
    details = []
    for index, item in enumerate(value):
        where = f"authorization_details[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or not item["type"].strip():
            raise ScopeError("invalid_authorization_details", _l("%(where)s needs a type (RFC 9396).", where=where),
                             "authorization_details")
        try:  # Python's JSON reads NaN and Infinity, which no JSON (nor the signed power) may hold
            json.dumps(item, allow_nan=False)
        except ValueError:
            raise ScopeError("invalid_authorization_details",
                             _l("%(where)s holds a number that is not finite (NaN or Infinity).", where=where),
                             "authorization_details") from None
        for name in _LIST_FIELDS:
            if name in item and (not isinstance(item[name], list)
                                 or not all(isinstance(v, str) and v for v in item[name])):
                raise ScopeError("invalid_authorization_details", _l("%(where)s.%(name)s must be a list of strings.", where=where, name=name),
                                 "authorization_details")
        if "identifier" in item and not isinstance(item["identifier"], str):
            raise ScopeError("invalid_authorization_details", _l("%(where)s.identifier must be a string.", where=where),
                             "authorization_details")
        limit = _amount(item)
        if "limits" in item and limit is None:
            raise ScopeError("invalid_authorization_details",
                             _l('%(where)s.limits must be {"amount": {"currency": "JPY", "max": 1000000}}.', where=where),
                             "authorization_details")
        details.append(item)
    return details


def _amount(item: dict[str, Any]) -> tuple[str, int | float] | None:
    limits = item.get("limits")
    if not isinstance(limits, dict) or set(limits) != {"amount"}:
        return None
    amount = limits["amount"]
    if not isinstance(amount, dict) or set(amount) != {"currency", "max"}:
        return None
    currency, ceiling = amount["currency"], amount["max"]
    if not isinstance(currency, str) or len(currency) != 3 or isinstance(ceiling, bool) \
            or not isinstance(ceiling, int | float) or (isinstance(ceiling, float) and not math.isfinite(ceiling)) \
            or ceiling < 0:
        return None  # NaN compares false with any ceiling: it would pass every one
    return currency.upper(), ceiling  # an int as it is: float() loses digits and overflows


def validity(valid_from: datetime, valid_until: datetime, *, now: datetime, maximum_days: int) -> None:
    if valid_until <= valid_from:
        raise ScopeError("invalid_validity", _l("The power must end after it starts."), "valid_until")
    if valid_until <= now:
        raise ScopeError("invalid_validity", _l("The power would already have ended."), "valid_until")
    if (valid_until - valid_from).days > maximum_days:
        raise ScopeError("invalid_validity", _l("A power lasts at most %(days)d days.", days=maximum_days), "valid_until")


def _covers(parent: dict[str, Any], child: dict[str, Any]) -> bool:
    if parent["type"] != child["type"]:
        return False
    for name in _LIST_FIELDS:
        if name in parent and not set(child.get(name, [None])) <= set(parent[name]):
            return False  # the parent names what is allowed; the child may not widen it
    if "identifier" in parent and child.get("identifier") != parent["identifier"]:
        return False
    ceiling = _amount(parent)
    if ceiling is not None:
        own = _amount(child)
        if own is None or own[0] != ceiling[0] or own[1] > ceiling[1]:
            return False
    extra = set(parent) - {"type", "identifier", "limits", *_LIST_FIELDS}
    return all(child.get(name) == parent[name] for name in extra)


def within_parent(parent: dict[str, Any], child: dict[str, Any]) -> None:
    """Raise unless ``child`` (matters, details, validity) fits inside ``parent``."""
    wider = [m for m in child["matters"] if m not in parent["matters"]]
    if wider:
        raise ScopeError("wider_than_parent", _l("The parent power does not delegate: %(matter)s", matter=wider[0]), "matters")
    for detail in child["authorization_details"]:
        if not any(_covers(p, detail) for p in parent["authorization_details"]):
            raise ScopeError("wider_than_parent",
                             _l("The parent power does not cover the %(type)s detail as asked.", type=detail["type"]),
                             "authorization_details")
    if child["valid_from"] < parent["valid_from"] or child["valid_until"] > parent["valid_until"]:
        raise ScopeError("wider_than_parent", _l("A sub-delegated power must lie within its parent's validity."),
                         "valid_until")
