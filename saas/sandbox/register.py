"""The commercial-register stand-in: corporations, their 法人番号 and representatives.

Shaped like a register-certificate lookup (登記事項証明書): given a corporate number,
the corporation's name and head-office address and its current representatives. The
power-of-attorney service asks a :class:`CommercialRegister`; this sandbox one answers
from the database, and a live source plugs in behind the same protocol.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from saas import clock, db
from saas.errors import ServiceError
from saas.sandbox.models import SandboxCorporation, SandboxPerson, SandboxRepresentative
from saas.tenants import corporate_number


@dataclass(frozen=True)
class Representative:
    title: str
    name: str
    address: str | None  # None where the company hides it
    appointed_on: date


@dataclass(frozen=True)
class RegisterRecord:
    corporate_number: str
    name: str
    address: str
    representatives: tuple[Representative, ...]
    as_of: date


class CommercialRegister(Protocol):
    def lookup(self, number: str) -> RegisterRecord | None: ...


class SandboxRegister:
    """The sandbox's register, read from its own tables."""

    def lookup(self, number: str) -> RegisterRecord | None:
        corporation = db.session.scalar(select(SandboxCorporation).where(
            SandboxCorporation.corporate_number == number))
        if corporation is None:
            return None
        today = clock.now().date()
        current = [r for r in corporation.representatives
                   if r.appointed_on <= today and (r.resigned_on is None or r.resigned_on > today)]
        return RegisterRecord(
            corporate_number=corporation.corporate_number, name=corporation.name,
            address=corporation.address, as_of=today,
            representatives=tuple(Representative(
                title=r.title, name=r.name, appointed_on=r.appointed_on,
                address=None if corporation.representative_address_hidden else r.address)
                for r in current))


def new_corporate_number(rng: random.Random) -> str:
    base = f"{rng.randrange(10**12):012d}"
    return f"{corporate_number.check_digit(base)}{base}"


def register_corporation(*, name: str, address: str, representative: SandboxPerson,
                         title: str = "代表取締役", number: str | None = None,
                         address_hidden: bool = False) -> SandboxCorporation:
    """A corporation whose representative is a sandbox card holder (so JPKI can prove it)."""
    number = number or new_corporate_number(random.Random())
    if not corporate_number.is_valid(number):
        raise ServiceError(_l("This corporate number (法人番号) fails its check digit."), code="invalid_corporate_number",
                           status=422)
    if db.session.scalar(select(SandboxCorporation.id).where(
            SandboxCorporation.corporate_number == number)) is not None:
        raise ServiceError(_l("This corporate number is already registered."), code="already_registered",
                           status=409)
    today = clock.now().date()
    corporation = SandboxCorporation(corporate_number=number, name=name, address=address,
                                     representative_address_hidden=address_hidden,
                                     registered_at=clock.now())
    corporation.representatives.append(SandboxRepresentative(
        title=title, name=representative.name, address=representative.address, appointed_on=today))
    db.session.add(corporation)
    db.session.flush()
    return corporation
