"""The sandbox OCSP responder (RFC 6960): pure functions from a request to a signed answer.

The web endpoint owns the database; here the caller passes ``lookup`` (serial → the
revocation, None when good, ``"unknown"`` when the authority never issued it) and the time.
Answers are signed with SHA-256 by the root itself, or by a short-lived delegated
responder certificate, as a live responder may do either.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from saas.jpki import profiles
from saas.jpki.der import read_tlv
from saas.jpki.ocsp import issuer_hashes
from saas.jpki.revocation import Reason
from saas.sandbox.ca import SANDBOX_OU, CertificateAuthority, key_usage, new_rsa_key

ANSWER_VALIDITY = timedelta(hours=1)
RESPONDER_VALIDITY = timedelta(days=2)

Lookup = Callable[[int], tuple[Reason, datetime] | None | Literal["unknown"]]


def respond(request_der: bytes, *, authority: CertificateAuthority, lookup: Lookup, now: datetime,
            responder: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None) -> bytes:
    """The DER response to ``request_der`` for a certificate ``authority`` issued."""
    try:
        request = ocsp.load_der_ocsp_request(request_der)
        algorithm = request.hash_algorithm
        nonce = _nonce(request)
    except (ValueError, UnsupportedAlgorithm):
        return malformed_response()
    if (request.issuer_name_hash, request.issuer_key_hash) != issuer_hashes(authority.certificate,
                                                                            algorithm):
        return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    answer = lookup(request.serial_number)
    status, revoked_at, reason = ocsp.OCSPCertStatus.GOOD, None, None
    if answer == "unknown":
        status = ocsp.OCSPCertStatus.UNKNOWN
    elif answer is not None:
        status = ocsp.OCSPCertStatus.REVOKED
        revoked_at = answer[1]
        # RFC 5280 §5.3.1: rather than say "unspecified", leave the reason out.
        if answer[0] is not Reason.UNSPECIFIED:
            reason = x509.ReasonFlags(answer[0].value)
    signer, key = responder or (authority.certificate, authority.key)
    builder = (ocsp.OCSPResponseBuilder()
               .add_response_by_hash(request.issuer_name_hash, request.issuer_key_hash,
                                     request.serial_number, algorithm, status, now,
                                     now + ANSWER_VALIDITY, revoked_at, reason)
               .responder_id(ocsp.OCSPResponderEncoding.HASH, signer))
    if responder is not None:
        builder = builder.certificates([signer])
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return _produced_at(builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER), key, now)


def malformed_response() -> bytes:
    return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)


def delegated_responder(authority: CertificateAuthority,
                        now: datetime) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A responder certificate the authority delegates OCSP signing to (RFC 6960 §4.2.2.2).

    Short-lived and carrying id-pkix-ocsp-nocheck, so no one asks about the responder itself.
    """
    key = new_rsa_key()
    public = key.public_key()
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, profiles.TEST_ORGANISATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, SANDBOX_OU),
        x509.NameAttribute(NameOID.COMMON_NAME, f"OCSP Responder ({authority.kind})"),
    ])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(authority.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + RESPONDER_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(authority.key_id, None, None), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    return certificate, key


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _produced_at(response: bytes, key: rsa.RSAPrivateKey, now: datetime) -> bytes:
    """``response`` with producedAt set to ``now`` and the signature made again.

    cryptography stamps producedAt from the system clock, not the sandbox's ``now``. The
    GeneralizedTime and the signature keep their lengths, so both are replaced in place.
    """
    offset, _, _ = _enter(response, 0)  # OCSPResponse
    _, _, offset = read_tlv(response, offset)  # responseStatus
    for _ in range(2):  # [0] EXPLICIT, ResponseBytes
        offset, _, _ = _enter(response, offset)
    _, _, offset = read_tlv(response, offset)  # responseType
    offset, _, _ = _enter(response, offset)  # OCTET STRING
    offset, _, _ = _enter(response, offset)  # BasicOCSPResponse
    tbs_start = offset
    position, _, tbs_end = _enter(response, tbs_start)
    tag, _, _ = read_tlv(response, position)
    if tag == 0xA0:  # version, when not the default
        _, _, position = read_tlv(response, position)
    _, _, position = read_tlv(response, position)  # responderID
    time_start, time_value, _ = _enter(response, position)
    stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%SZ").encode()
    assert response[position] == 0x18 and len(time_value) == len(stamp)  # GeneralizedTime
    tbs = response[tbs_start:time_start] + stamp + response[time_start + len(stamp):tbs_end]
    _, _, position = read_tlv(response, tbs_end)  # signatureAlgorithm
    bits_start, bits, _ = _enter(response, position)
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    assert len(signature) == len(bits) - 1
    return (response[:tbs_start] + tbs + response[tbs_end:bits_start + 1] + signature
            + response[bits_start + len(bits):])


def _enter(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """``(value_offset, value, next_offset)`` of the TLV at ``offset``."""
    _, value, next_offset = read_tlv(data, offset)
    return next_offset - len(value), value, next_offset


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)
