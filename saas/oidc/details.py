"""RFC 9396 ``authorization_details``: what a client may ask for, and who answers.

The provider knows no product: a product registers a type and a function that, given
the person who logged in, returns the objects the token response and the ID token carry
(the powers-of-attorney service registers ``kakehashi_power_of_attorney``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from saas.tenants.models import Tenant

MAX_DETAILS = 10

# type → (tenant, person_id, sub, client public id, the requested object) → objects to present
Presenter = Callable[[Tenant, int, str, str, dict[str, Any]], list[dict[str, Any]]]
PRESENTERS: dict[str, Presenter] = {}


def register(type_: str, presenter: Presenter) -> None:
    PRESENTERS[type_] = presenter


def parse(value: str | None) -> list[dict[str, Any]] | None:
    """The request's ``authorization_details``, or None; ValueError says what is wrong."""
    if not value:
        return None
    try:
        requested = json.loads(value)
    except ValueError:
        raise ValueError("authorization_details is not JSON") from None
    if not isinstance(requested, list) or not 1 <= len(requested) <= MAX_DETAILS:
        raise ValueError(f"authorization_details is a list of 1 to {MAX_DETAILS} objects")
    for item in requested:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise ValueError("each authorization_details object needs a type")
        if item["type"] not in PRESENTERS:
            raise ValueError(f"unsupported authorization_details type {item['type']!r}; supported: "
                             f"{', '.join(sorted(PRESENTERS)) or 'none'}")
    return requested


def present(tenant: Tenant, person_id: int, sub: str, client_id: str,
            requested: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every object the registered presenters grant for this person (possibly none)."""
    found: list[dict[str, Any]] = []
    for item in requested:
        presenter = PRESENTERS.get(item["type"])
        if presenter is not None:
            found += presenter(tenant, person_id, sub, client_id, item)
    return found
