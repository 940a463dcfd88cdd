"""Documents signed with the signature key (署名用電子証明書): verified as of a moment.

The card signs a SHA-256 DigestInfo (``80 2A 00 80``), which verifies as an ordinary
RS256 signature over the pre-computed digest. Trust and revocation are judged as of
``signed_at`` (for a power of attorney: when the representative signed), so a signature
made before a later revocation stays valid, and one made after it does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from saas.jpki.certificates import CertificateKind, PersonAttributes, parse_certificate
from saas.jpki.errors import MalformedCertificate, VerificationFailed
from saas.jpki.revocation import RevocationChecker, require_not_revoked
from saas.jpki.trust import DEFAULT_SKEW, TrustStore

SHA256_SIZE = 32


@dataclass(frozen=True)
class VerifiedSignature:
    serial: int
    issuer_key_id: bytes
    root_generation: str
    attributes: PersonAttributes
    signed_at: datetime
    digest: bytes
    fingerprint: str


def verify_signature(*, digest: bytes, signature: bytes, certificate: bytes, store: TrustStore,
                     revocation: RevocationChecker, signed_at: datetime,
                     skew: timedelta = DEFAULT_SKEW) -> VerifiedSignature:
    """Verify a signature over a SHA-256 ``digest`` as of ``signed_at``."""
    if store.kind is not CertificateKind.SIGNATURE:
        raise ValueError("document signatures are verified against the signature trust store")
    if len(digest) != SHA256_SIZE:
        raise VerificationFailed("the digest is not SHA-256", code="malformed")
    try:
        parsed = parse_certificate(certificate)
    except MalformedCertificate as error:
        raise VerificationFailed(f"certificate: {error.detail}", code="malformed") from None
    trusted = store.validate(parsed, at=signed_at, skew=skew)
    try:
        parsed.public_key.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationFailed("the signature does not match the document",
                                 code="bad_signature") from None
    require_not_revoked(revocation, trusted.anchor.key_id, parsed.serial, at=signed_at)
    assert parsed.attributes is not None  # a signature certificate always has them
    return VerifiedSignature(serial=parsed.serial, issuer_key_id=trusted.anchor.key_id,
                             root_generation=trusted.anchor.generation,
                             attributes=parsed.attributes, signed_at=signed_at, digest=digest,
                             fingerprint=parsed.fingerprint)
