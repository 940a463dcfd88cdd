"""Sandbox My Number Cards: key pairs, certificates and PINs, and the card file format.

A card file is what the bridge agent's virtual card loads (``kakehashi sandbox
issue-card --out FILE``). It holds private keys and PINs of a *test* card only.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from saas.jpki.certificates import PersonAttributes
from saas.sandbox import ca as sandbox_ca
from saas.sandbox.persons import SyntheticPerson

CARD_FILE_FORMAT = "kakehashi-sandbox-card/1"
JST = timezone(timedelta(hours=9))
SIGNATURE_MINIMUM_AGE = 15


@dataclass(frozen=True)
class CardKey:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey


@dataclass(frozen=True)
class SandboxCard:
    person: SyntheticPerson
    auth: CardKey
    signature: CardKey | None  # none under 15, as on a real card
    auth_pin: str
    signature_password: str
    auth_ca: x509.Certificate
    signature_ca: x509.Certificate

    def to_json(self) -> dict[str, Any]:
        attributes = self.person.attributes
        return {
            "format": CARD_FILE_FORMAT,
            "auth": {"certificate": _pem(self.auth.certificate), "private_key": _key_pem(self.auth.key),
                     "pin": self.auth_pin, "ca_certificate": _pem(self.auth_ca)},
            "signature": None if self.signature is None else {
                "certificate": _pem(self.signature.certificate),
                "private_key": _key_pem(self.signature.key),
                "password": self.signature_password, "ca_certificate": _pem(self.signature_ca)},
            "holder": {"name": attributes.name, "birthdate": attributes.birthdate.isoformat(),
                       "address": attributes.address, "gender": attributes.gender.value},
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n")
        path.chmod(0o600)


def age_on(birthdate: date, day: date) -> int:
    return day.year - birthdate.year - ((day.month, day.day) < (birthdate.month, birthdate.day))


def certificate_expiry(birthdate: date, issued: datetime) -> datetime:
    """The end of the holder's 5th birthday after issue, 23:59:59 Japan time."""
    issued_day = issued.astimezone(JST).date()
    later_this_year = (birthdate.month, birthdate.day) > (issued_day.month, issued_day.day)
    year = (issued_day.year if later_this_year else issued_day.year + 1) + 4
    try:
        birthday = birthdate.replace(year=year)
    except ValueError:  # born on 29 February, expiring in a common year
        birthday = date(year, 2, 28)
    return datetime.combine(birthday, time(23, 59, 59), JST).astimezone(UTC)


def new_pin() -> str:
    return f"{secrets.randbelow(10_000):04d}"


def new_signature_password() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def issue_card(auth_ca: sandbox_ca.CertificateAuthority,
               signature_ca: sandbox_ca.CertificateAuthority, person: SyntheticPerson, *,
               now: datetime, auth_serial: int, signature_serial: int,
               auth_pin: str | None = None, signature_password: str | None = None) -> SandboxCard:
    """Issue both certificates of a card for ``person`` (no signature certificate under 15)."""
    expiry = certificate_expiry(person.attributes.birthdate, now)
    auth_key = sandbox_ca.new_rsa_key()
    auth = CardKey(sandbox_ca.issue_auth_certificate(
        auth_ca, auth_key.public_key(), serial=auth_serial, not_before=now,
        not_after=expiry), auth_key)
    signature = None
    if age_on(person.attributes.birthdate, now.astimezone(JST).date()) >= SIGNATURE_MINIMUM_AGE:
        signature = issue_signature_key(signature_ca, person.attributes, person.prefecture_romaji,
                                        now=now, serial=signature_serial, not_after=expiry)
    return SandboxCard(person=person, auth=auth, signature=signature,
                       auth_pin=auth_pin or new_pin(),
                       signature_password=signature_password or new_signature_password(),
                       auth_ca=auth_ca.certificate, signature_ca=signature_ca.certificate)


def issue_signature_key(signature_ca: sandbox_ca.CertificateAuthority,
                        attributes: PersonAttributes, prefecture_romaji: str, *, now: datetime,
                        serial: int, not_after: datetime) -> CardKey:
    key = sandbox_ca.new_rsa_key()
    certificate = sandbox_ca.issue_signature_certificate(
        signature_ca, key.public_key(), attributes, serial=serial, not_before=now,
        not_after=not_after, prefecture=prefecture_romaji)
    return CardKey(certificate, key)


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
