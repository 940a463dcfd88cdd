"""An OCSP client (RFC 6960): ask one configured responder whether a certificate is revoked.

The responder URL comes from configuration only. JPKI certificates name no OCSP responder,
and a URL taken from a certificate is hostile input (it would let a card holder point the
service at any host). A response is believed only when it is successful, signed with
sha256WithRSAEncryption by the issuing root or by a responder certificate the root
delegated (id-kp-OCSPSigning, valid now), echoes this request's nonce, answers for exactly
this request's CertID, and is fresh. Anything else raises :class:`VerificationFailed`
with an ``ocsp_*`` code; an UNKNOWN answer is ``revocation_unknown``: callers fail closed.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from saas import clock
from saas.jpki.der import read_single, read_tlv
from saas.jpki.errors import VerificationFailed
from saas.jpki.revocation import Reason, Revocation
from saas.jpki.trust import DEFAULT_SKEW, rs256_valid, signed_by

NONCE_SIZE = 32  # RFC 8954 allows 1 to 32 octets; the most the responder must accept
MAX_RESPONSE_SIZE = 64 * 1024  # a one-certificate answer is a few KiB
DEFAULT_MAX_AGE = timedelta(hours=1)
REQUEST_CONTENT_TYPE = "application/ocsp-request"
# SHA-1 in the CertID is what RFC 5019 requires and what every responder answers to; here
# it is only a lookup key (the response is signed, and its CertID is compared with ours
# and with the issuer we hold), so SHA-1's weak collision resistance gives nothing away.
CERT_ID_HASH = hashes.SHA1


@dataclass(frozen=True)
class OCSPRequest:
    der: bytes
    nonce: bytes
    serial: int
    issuer_key_id: bytes  # the issuer's subject key identifier, as trust anchors name it


@dataclass(frozen=True)
class OCSPStatus:
    good: bool
    revocation: Revocation | None
    this_update: datetime
    next_update: datetime | None
    produced_at: datetime


def issuer_key_id(issuer: x509.Certificate) -> bytes:
    """The issuer's subject key identifier (the SHA-1 key hash when it has none)."""
    try:
        return issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return issuer_hashes(issuer, hashes.SHA1())[1]


def issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """``(issuerNameHash, issuerKeyHash)`` of a CertID: the hashes of the issuer's DER name
    and of its subjectPublicKey BIT STRING contents (without the unused-bits octet)."""
    name = issuer.subject.public_bytes()
    spki = issuer.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    _, body = read_single(spki)
    _, _, offset = read_tlv(body)  # the AlgorithmIdentifier
    _, bits, _ = read_tlv(body, offset)
    return _digest(algorithm, name), _digest(algorithm, bits[1:])


def build_request(certificate: x509.Certificate, issuer: x509.Certificate) -> OCSPRequest:
    """A request for ``certificate``, issued by ``issuer``, with a fresh 32-byte nonce."""
    if certificate.issuer != issuer.subject:
        raise ValueError("the certificate was not issued by this issuer")
    return build_request_for_serial(certificate.serial_number, issuer)


def build_request_for_serial(serial: int, issuer: x509.Certificate) -> OCSPRequest:
    """A request for the certificate ``issuer`` issued with ``serial``: the CertID needs
    only the issuer's hashes and the serial, so no leaf is required."""
    name_hash, key_hash = issuer_hashes(issuer, CERT_ID_HASH())
    nonce = os.urandom(NONCE_SIZE)
    request = (ocsp.OCSPRequestBuilder()
               .add_certificate_by_hash(name_hash, key_hash, serial, CERT_ID_HASH())
               .add_extension(x509.OCSPNonce(nonce), critical=False)
               .build())
    return OCSPRequest(der=request.public_bytes(serialization.Encoding.DER), nonce=nonce,
                       serial=serial, issuer_key_id=issuer_key_id(issuer))


@dataclass(frozen=True)
class _CertID:
    algorithm: str
    name_hash: bytes
    key_hash: bytes
    serial: int


@dataclass(frozen=True)
class _Answer:
    """What a successful response says, read whole before any of it is believed."""

    signature_algorithm: x509.ObjectIdentifier
    tbs: bytes
    signature: bytes
    certificates: list[x509.Certificate]
    responder_key_hash: bytes | None
    responder_name: x509.Name | None
    produced_at: datetime
    nonce: bytes | None
    cert_id: _CertID
    status: ocsp.OCSPCertStatus
    this_update: datetime
    next_update: datetime | None
    revoked_at: datetime | None
    reason: x509.ReasonFlags | None


def check_response(der: bytes, request: OCSPRequest, *, issuer: x509.Certificate, at: datetime,
                   max_age: timedelta = DEFAULT_MAX_AGE,
                   skew: timedelta = DEFAULT_SKEW) -> OCSPStatus:
    """The status a response gives for ``request``, as of ``at``, or :class:`VerificationFailed`."""
    asked = ocsp.load_der_ocsp_request(request.der)
    if (asked.issuer_name_hash, asked.issuer_key_hash) != issuer_hashes(issuer, asked.hash_algorithm):
        raise ValueError("the request was not built for this issuer")
    expected = _CertID(asked.hash_algorithm.name, asked.issuer_name_hash, asked.issuer_key_hash,
                       asked.serial_number)
    try:
        answer = _read(der)
        _check_signer(answer, issuer, at=at, skew=skew)
    except _HOSTILE as error:  # whatever the bytes make cryptography say: one typed error
        raise VerificationFailed(f"the OCSP response: {type(error).__name__}: {error}",
                                 code="ocsp_malformed") from None
    if answer.nonce != request.nonce:
        raise VerificationFailed("the response does not echo this request's nonce",
                                 code="ocsp_nonce_mismatch")
    if answer.cert_id != expected:
        raise VerificationFailed("the response answers for another certificate",
                                 code="ocsp_wrong_certificate")
    if max(answer.this_update, answer.produced_at) > at + skew:
        raise VerificationFailed("the response is dated in the future", code="ocsp_stale")
    if answer.this_update < at - max_age:
        raise VerificationFailed(f"the response is older than {max_age}", code="ocsp_stale")
    if answer.next_update is not None and answer.next_update < at - skew:
        raise VerificationFailed(f"the response expired {answer.next_update:%Y-%m-%d %H:%M:%S}Z",
                                 code="ocsp_stale")
    if answer.status is ocsp.OCSPCertStatus.UNKNOWN:
        raise VerificationFailed("the responder does not know this certificate",
                                 code="revocation_unknown")
    revocation = None
    if answer.status is ocsp.OCSPCertStatus.REVOKED:
        assert answer.revoked_at is not None  # the parser requires revocationTime
        reason = Reason.UNSPECIFIED if answer.reason is None else Reason(answer.reason.value)
        revocation = Revocation(reason, answer.revoked_at)
    return OCSPStatus(good=revocation is None, revocation=revocation,
                      this_update=answer.this_update, next_update=answer.next_update,
                      produced_at=answer.produced_at)


_HOSTILE = (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension,
            x509.InvalidVersion, x509.UnsupportedGeneralNameType)


def _read(data: bytes) -> _Answer:
    if len(data) > MAX_RESPONSE_SIZE:
        raise VerificationFailed("the response is too large", code="ocsp_malformed")
    try:
        response = ocsp.load_der_ocsp_response(data)
    except ValueError as error:
        raise VerificationFailed(f"not an OCSP response: {error}", code="ocsp_malformed") from None
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise VerificationFailed(f"the responder answered {response.response_status.name}",
                                 code="ocsp_unsuccessful")
    try:
        singles = list(response.responses)
        if len(singles) != 1:
            raise VerificationFailed(f"expected one answer, got {len(singles)}", code="ocsp_malformed")
        single = singles[0]
        try:
            nonce = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            nonce = None
        return _Answer(
            signature_algorithm=response.signature_algorithm_oid, tbs=response.tbs_response_bytes,
            signature=response.signature, certificates=response.certificates,
            responder_key_hash=response.responder_key_hash, responder_name=response.responder_name,
            produced_at=response.produced_at_utc, nonce=nonce,
            cert_id=_CertID(single.hash_algorithm.name, single.issuer_name_hash,
                            single.issuer_key_hash, single.serial_number),
            status=single.certificate_status, this_update=single.this_update_utc,
            next_update=single.next_update_utc, revoked_at=single.revocation_time_utc,
            reason=single.revocation_reason)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise VerificationFailed(f"the OCSP response: {error}", code="ocsp_malformed") from None


def _check_signer(answer: _Answer, issuer: x509.Certificate, *, at: datetime,
                  skew: timedelta) -> None:
    """The responder ID names the signer: the issuer itself, or a certificate in the
    response that the issuer delegated OCSP signing to."""
    if answer.signature_algorithm != SignatureAlgorithmOID.RSA_WITH_SHA256:
        raise VerificationFailed("only sha256WithRSAEncryption responses are accepted",
                                 code="ocsp_bad_signature")
    candidates = [c for c in (issuer, *answer.certificates) if _is_responder(answer, c)]
    if not candidates:
        raise VerificationFailed("the responder is neither the issuer nor a certificate it sent",
                                 code="ocsp_untrusted_responder")
    signer = next((c for c in candidates if _verifies(answer, c)), None)
    if signer is None:
        raise VerificationFailed("the response signature does not verify", code="ocsp_bad_signature")
    if signer != issuer and not _delegated(signer, issuer, at=at, skew=skew):
        raise VerificationFailed("the response was signed by a responder the issuer did not "
                                 "delegate", code="ocsp_untrusted_responder")


def _is_responder(answer: _Answer, certificate: x509.Certificate) -> bool:
    if answer.responder_key_hash is not None:
        return issuer_hashes(certificate, hashes.SHA1())[1] == answer.responder_key_hash
    return answer.responder_name == certificate.subject


def _verifies(answer: _Answer, certificate: x509.Certificate) -> bool:
    return rs256_valid(certificate.public_key(), answer.signature, answer.tbs)


def _delegated(responder: x509.Certificate, issuer: x509.Certificate, *, at: datetime,
               skew: timedelta) -> bool:
    """RFC 6960 §4.2.2.2: issued directly by the CA, with id-kp-OCSPSigning, valid at ``at``."""
    if responder.issuer != issuer.subject or not signed_by(responder, issuer):
        return False
    try:
        usages = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return (ExtendedKeyUsageOID.OCSP_SIGNING in usages
            and responder.not_valid_before_utc - skew <= at <= responder.not_valid_after_utc + skew)


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    return hashlib.new(algorithm.name, data).digest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A responder has no reason to redirect, and following one would let it pick the host.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def post_request(url: str, body: bytes, *, timeout: float) -> bytes:
    """POST a DER request to ``url`` (http or https only) and return the response body."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"the OCSP responder URL must be http or https, not {url!r}")
    opener = urllib.request.build_opener(_NoRedirect)
    http_request = urllib.request.Request(url, data=body, method="POST",
                                          headers={"Content-Type": REQUEST_CONTENT_TYPE})
    try:
        with opener.open(http_request, timeout=timeout) as reply:
            content = reply.read(MAX_RESPONSE_SIZE + 1)
    except (urllib.error.URLError, OSError) as error:  # HTTP errors, refusals, timeouts
        raise VerificationFailed(f"the OCSP responder is unavailable: {error}",
                                 code="ocsp_unavailable") from None
    if len(content) > MAX_RESPONSE_SIZE:
        raise VerificationFailed("the response is too large", code="ocsp_malformed")
    return content


class OCSPClient:
    """A :class:`~saas.jpki.revocation.RevocationChecker` backed by one configured responder.

    Each lookup asks the responder afresh; the answer's freshness is judged by the service
    clock (OCSP speaks of the present), and a revocation counts only if it took effect by
    ``at``, so a signature made before a later revocation stays valid.
    """

    def __init__(self, url: str, issuers: Iterable[x509.Certificate], *,
                 post: Callable[[str, bytes], bytes] | None = None, timeout: float = 5.0) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"the OCSP responder URL must be http or https, not {url!r}")
        self.url = url
        self._issuers = {issuer_key_id(issuer): issuer for issuer in issuers}
        self._post = post or partial(post_request, timeout=timeout)

    def status(self, issuer_key_id: bytes, serial: int) -> OCSPStatus:
        issuer = self._issuers.get(issuer_key_id)
        if issuer is None:
            raise VerificationFailed("this OCSP responder does not answer for that issuer",
                                     code="revocation_unknown")
        request = build_request_for_serial(serial, issuer)
        return check_response(self._post(self.url, request.der), request, issuer=issuer,
                              at=clock.now())

    def revocation(self, issuer_key_id: bytes, serial: int, *, at: datetime) -> Revocation | None:
        revocation = self.status(issuer_key_id, serial).revocation
        if revocation is None or revocation.revoked_at > at:
            return None
        return revocation
