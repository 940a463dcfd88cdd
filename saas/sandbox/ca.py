"""The sandbox's certification authorities: the real JPKI profile under test names.

Roots are one tier, self-signed RSA-2048 with sha256WithRSAEncryption and the live DN
shape, but ``O=JPKI-TEST`` and ``OU=Kakehashi Sandbox``; leaves carry the test policies.
Nothing issued here can chain to a live root or pass a live verifier.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from saas.jpki import der, profiles
from saas.jpki.certificates import CertificateKind, Gender, PersonAttributes, format_birthdate
from saas.sandbox.persons import substitute_flags

SANDBOX_OU = "Kakehashi Sandbox"
ROOT_VALIDITY = timedelta(days=3652)
_GENDER_CODES = {Gender.MALE: "1", Gender.FEMALE: "2", Gender.UNKNOWN: "3"}


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_usage(*, digital_signature: bool = False, content_commitment: bool = False,
              key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    """A KeyUsage naming only the usages JPKI certificates have."""
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=content_commitment,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=key_cert_sign, crl_sign=crl_sign, encipher_only=False,
                         decipher_only=False)


def root_name(kind: CertificateKind) -> x509.Name:
    unit = profiles.OU_AUTH if kind is CertificateKind.AUTH else profiles.OU_SIGNATURE
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, profiles.TEST_ORGANISATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, SANDBOX_OU),
    ])


@dataclass(frozen=True)
class CertificateAuthority:
    kind: CertificateKind
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def key_id(self) -> bytes:
        return self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest


def create_root(kind: CertificateKind, now: datetime,
                key: rsa.RSAPrivateKey | None = None) -> CertificateAuthority:
    """A new root generation for ``kind``; generations share the DN, not the key."""
    key = key or new_rsa_key()
    name = root_name(kind)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(kind=kind, certificate=certificate, key=key)


def issue_auth_certificate(ca: CertificateAuthority, public_key: rsa.RSAPublicKey, *,
                           serial: int, not_before: datetime,
                           not_after: datetime) -> x509.Certificate:
    """A user-authentication certificate: opaque subject, no personal attributes."""
    assert ca.kind is CertificateKind.AUTH
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.COMMON_NAME, _opaque_id()),
    ])
    builder = leaf_builder(ca, subject, public_key, serial, not_before, not_after,
                    profiles.POLICY_TEST_AUTH, content_commitment=False)
    return builder.sign(ca.key, hashes.SHA256())


def issue_signature_certificate(ca: CertificateAuthority, public_key: rsa.RSAPublicKey,
                                attributes: PersonAttributes, *, serial: int,
                                not_before: datetime, not_after: datetime,
                                prefecture: str) -> x509.Certificate:
    """A signature certificate carrying the four attributes as subjectAltName otherNames."""
    assert ca.kind is CertificateKind.SIGNATURE
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, prefecture),
        x509.NameAttribute(NameOID.COMMON_NAME, _opaque_id()),
    ])
    builder = leaf_builder(ca, subject, public_key, serial, not_before, not_after,
                    profiles.POLICY_TEST_SIGNATURE, content_commitment=True)
    builder = builder.add_extension(x509.SubjectAlternativeName(attribute_names(attributes)),
                                    critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def attribute_names(attributes: PersonAttributes) -> list[x509.GeneralName]:
    """The otherNames of the four attributes, as UTF8String values."""
    values = [
        (profiles.OID_NAME, attributes.name),
        (profiles.OID_NAME_SUBSTITUTES,
         substitute_flags(attributes.name, attributes.name_substitutes) or "0" * len(attributes.name)),
        (profiles.OID_GENDER, _GENDER_CODES[attributes.gender]),
        (profiles.OID_BIRTHDATE, format_birthdate(attributes.birthdate)),
        (profiles.OID_ADDRESS, attributes.address),
        (profiles.OID_ADDRESS_SUBSTITUTES,
         substitute_flags(attributes.address, attributes.address_substitutes) or "0" * len(attributes.address)),
    ]
    return [x509.OtherName(oid, utf8_string(text)) for oid, text in values]


def utf8_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return bytes([der.UTF8_STRING]) + _length(len(raw)) + raw


def _length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _opaque_id() -> str:
    # The live CN is an opaque identifier with no personal meaning; so is this one.
    return secrets.token_hex(10).upper()


def leaf_builder(ca: CertificateAuthority, subject: x509.Name, public_key: rsa.RSAPublicKey,
          serial: int, not_before: datetime, not_after: datetime, policy: str,
          content_commitment: bool) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True, content_commitment=content_commitment), critical=True)
        .add_extension(x509.CertificatePolicies([
            x509.PolicyInformation(x509.ObjectIdentifier(policy), None)]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier(ca.key_id, None, None), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.DirectoryName(ca.certificate.subject)], relative_name=None,
            reasons=None, crl_issuer=None)]), critical=False)
    )
