"""JPKI certificates parsed into typed values, including the basic four attributes.

:func:`parse_certificate` accepts any bytes: a well-formed certificate becomes a
:class:`JPKICertificate`; anything else (truncated, huge lengths, wrong types, duplicate
extensions, attributes that do not parse) raises :class:`MalformedCertificate` and
nothing else. Whether the certificate is *trusted* is :mod:`saas.jpki.trust`'s question.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from saas.jpki import der, profiles
from saas.jpki.errors import MalformedCertificate

MAX_CERTIFICATE_SIZE = 16 * 1024  # JPKI certificates are about 1.5 KiB


class CertificateKind(enum.StrEnum):
    AUTH = "auth"  # 利用者証明用電子証明書
    SIGNATURE = "signature"  # 署名用電子証明書


class Gender(enum.StrEnum):
    MALE = "male"
    FEMALE = "female"
    UNKNOWN = "unknown"


_GENDER_CODES = {"1": Gender.MALE, "2": Gender.FEMALE, "3": Gender.UNKNOWN}


class Era(enum.IntEnum):
    """The era code of the birthdate attribute, with the first day of each era."""

    MEIJI = 1
    TAISHO = 2
    SHOWA = 3
    HEISEI = 4
    REIWA = 5

    @property
    def first_day(self) -> date:
        return _ERA_STARTS[self]

    @classmethod
    def of(cls, day: date) -> Era:
        era = cls.MEIJI
        for candidate in cls:
            if day >= candidate.first_day:
                era = candidate
        return era


_ERA_STARTS = {
    Era.MEIJI: date(1868, 1, 25),
    Era.TAISHO: date(1912, 7, 30),
    Era.SHOWA: date(1926, 12, 25),
    Era.HEISEI: date(1989, 1, 8),
    Era.REIWA: date(2019, 5, 1),
}


@dataclass(frozen=True)
class PersonAttributes:
    """The basic four attributes (基本4情報) as the signature certificate states them.

    ``*_substitutes`` are the 0-based positions of characters the issuing municipality
    replaced with a substitute because the registered character is outside the
    certificate's character set (外字); relying parties must not treat such a name as an
    exact spelling.
    """

    name: str
    name_substitutes: tuple[int, ...]
    gender: Gender
    birthdate: date
    birth_era: Era
    address: str
    address_substitutes: tuple[int, ...]

    @property
    def family_name(self) -> str:
        return self.name.split("\u3000", 1)[0]

    @property
    def given_name(self) -> str:
        parts = self.name.split("\u3000", 1)
        return parts[1] if len(parts) == 2 else ""


@dataclass(frozen=True)
class JPKICertificate:
    """One parsed certificate. ``der`` is kept only while it is being verified."""

    der: bytes
    certificate: x509.Certificate
    kind: CertificateKind | None
    serial: int
    subject: str
    issuer: str
    issuer_organisation: str | None
    authority_key_id: bytes | None
    subject_key_id: bytes | None
    not_before: datetime
    not_after: datetime
    policies: tuple[str, ...]
    key_usage: frozenset[str]
    is_ca: bool
    is_self_issued: bool
    attributes: PersonAttributes | None

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER, hex: an identifier that is not the certificate itself."""
        return hashlib.sha256(self.der).hexdigest()

    @property
    def is_test(self) -> bool:
        """True for sandbox certificates: the test organisation or a test policy."""
        return (self.issuer_organisation == profiles.TEST_ORGANISATION
                or bool(set(self.policies) & {profiles.POLICY_TEST_AUTH,
                                              profiles.POLICY_TEST_SIGNATURE}))

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        key = self.certificate.public_key()
        assert isinstance(key, rsa.RSAPublicKey)  # parse_certificate refuses other keys
        return key


_KIND_BY_POLICY = {
    profiles.POLICY_AUTH: CertificateKind.AUTH,
    profiles.POLICY_TEST_AUTH: CertificateKind.AUTH,
    profiles.POLICY_SIGNATURE: CertificateKind.SIGNATURE,
    profiles.POLICY_TEST_SIGNATURE: CertificateKind.SIGNATURE,
}
_KEY_USAGES = ("digital_signature", "content_commitment", "key_encipherment",
               "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign")


def parse_certificate(data: bytes) -> JPKICertificate:
    """Parse DER bytes into a :class:`JPKICertificate`, or raise :class:`MalformedCertificate`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedCertificate("a certificate is bytes")
    data = bytes(data)
    if len(data) > MAX_CERTIFICATE_SIZE:
        raise MalformedCertificate(f"certificate larger than {MAX_CERTIFICATE_SIZE} bytes")
    try:
        certificate = x509.load_der_x509_certificate(data)
        return _read(data, certificate)
    except MalformedCertificate:
        raise
    except (ValueError, TypeError, UnicodeError, x509.DuplicateExtension,
            x509.UnsupportedGeneralNameType, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        raise MalformedCertificate(f"{type(exc).__name__}: {exc}") from None


def _read(data: bytes, certificate: x509.Certificate) -> JPKICertificate:
    if certificate.version != x509.Version.v3:
        raise MalformedCertificate("not an X.509 v3 certificate")
    if certificate.serial_number <= 0:  # RFC 5280 §4.1.2.2; a CRL could never list it
        raise MalformedCertificate("the serial number is not a positive integer")
    if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
        raise MalformedCertificate("JPKI keys are RSA")
    extensions = certificate.extensions  # raises DuplicateExtension on duplicates
    policies = tuple(p.policy_identifier.dotted_string
                     for p in _extension(extensions, ExtensionOID.CERTIFICATE_POLICIES) or ())
    kinds = {_KIND_BY_POLICY[p] for p in policies if p in _KIND_BY_POLICY}
    if len(kinds) > 1:
        raise MalformedCertificate("certificate claims both the auth and the signature policy")
    basic = _extension(extensions, ExtensionOID.BASIC_CONSTRAINTS)
    usage = _extension(extensions, ExtensionOID.KEY_USAGE)
    key_usage = frozenset(name for name in _KEY_USAGES if usage is not None and _usage(usage, name))
    aki = _extension(extensions, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    ski = _extension(extensions, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    kind = kinds.pop() if kinds else None
    attributes = None
    if kind is CertificateKind.SIGNATURE:
        attributes = _attributes(_extension(extensions, ExtensionOID.SUBJECT_ALTERNATIVE_NAME))
    organisations = certificate.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return JPKICertificate(
        der=data,
        certificate=certificate,
        kind=kind,
        serial=certificate.serial_number,
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        issuer_organisation=str(organisations[0].value) if organisations else None,
        authority_key_id=aki.key_identifier if aki is not None else None,
        subject_key_id=ski.digest if ski is not None else None,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        policies=policies,
        key_usage=key_usage,
        is_ca=bool(basic is not None and basic.ca),
        is_self_issued=certificate.issuer == certificate.subject,
        attributes=attributes,
    )


def _extension(extensions: x509.Extensions, oid: x509.ObjectIdentifier) -> Any:
    try:
        return extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _usage(usage: x509.KeyUsage, name: str) -> bool:
    return bool(getattr(usage, name))


def _attributes(san: x509.SubjectAlternativeName | None) -> PersonAttributes:
    if san is None:
        raise MalformedCertificate("signature certificate without the four attributes")
    values: dict[str, str] = {}
    for other in san.get_values_for_type(x509.OtherName):
        oid = other.type_id.dotted_string
        if oid.startswith("1.2.392.200149.8.5.5."):
            if oid in values:
                raise MalformedCertificate(f"attribute {oid} appears twice")
            try:
                values[oid] = der.read_text(other.value)
            except (ValueError, UnicodeError) as exc:
                raise MalformedCertificate(f"attribute {oid}: {exc}") from None
    try:
        name = values[profiles.OID_NAME.dotted_string]
        gender_code = values[profiles.OID_GENDER.dotted_string]
        birth = values[profiles.OID_BIRTHDATE.dotted_string]
        address = values[profiles.OID_ADDRESS.dotted_string]
    except KeyError as missing:
        raise MalformedCertificate(f"attribute {missing.args[0]} is missing") from None
    if gender_code not in _GENDER_CODES:
        raise MalformedCertificate(f"gender code {gender_code!r} is not 1, 2 or 3")
    birthdate, era = parse_birthdate(birth)
    return PersonAttributes(
        name=name,
        name_substitutes=_substitutes(values.get(profiles.OID_NAME_SUBSTITUTES.dotted_string), name),
        gender=_GENDER_CODES[gender_code],
        birthdate=birthdate,
        birth_era=era,
        address=address,
        address_substitutes=_substitutes(
            values.get(profiles.OID_ADDRESS_SUBSTITUTES.dotted_string), address),
    )


def parse_birthdate(value: str) -> tuple[date, Era]:
    """``EYYYYMMDD`` (era code, then the Gregorian date) → the date and its era."""
    if len(value) != 9 or not value.isascii() or not value.isdigit():
        raise MalformedCertificate(f"birthdate {value!r} is not EYYYYMMDD")
    try:
        era = Era(int(value[0]))
        day = date(int(value[1:5]), int(value[5:7]), int(value[7:9]))
    except ValueError:
        raise MalformedCertificate(f"birthdate {value!r} is not a real date in a known era") from None
    if Era.of(day) is not era:
        raise MalformedCertificate(f"birthdate {value!r}: {day} is not in era {era.name}")
    return day, era


def format_birthdate(day: date) -> str:
    return f"{Era.of(day).value}{day:%Y%m%d}"


def _substitutes(flags: str | None, text: str) -> tuple[int, ...]:
    """One digit per character; a non-zero digit marks a substitute character."""
    if not flags:
        return ()
    if not flags.isascii() or not flags.isdigit() or len(flags) != len(text):
        raise MalformedCertificate("substitute-character flags do not match the text")
    return tuple(i for i, flag in enumerate(flags) if flag != "0")


