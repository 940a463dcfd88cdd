"""Trust: which roots a certificate may chain to, and whether a leaf is acceptable.

JPKI is one tier: each root signs end-entity certificates directly. Auth and signature
certificates have separate roots and separate stores; live and sandbox roots are never
mixed in one store (a live store refuses a ``JPKI-TEST`` root and a sandbox store a live
one). Root generations share one DN, so the issuer is found by DN, narrowed by key id,
and decided by the signature itself. Certificates read from a card are never anchors.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import SignatureAlgorithmOID

from saas.jpki import profiles
from saas.jpki.certificates import CertificateKind, JPKICertificate, parse_certificate
from saas.jpki.errors import JPKIError, VerificationFailed

DEFAULT_SKEW = timedelta(minutes=5)


class Mode(enum.StrEnum):
    LIVE = "live"
    SANDBOX = "sandbox"


_POLICY = {
    (Mode.LIVE, CertificateKind.AUTH): profiles.POLICY_AUTH,
    (Mode.LIVE, CertificateKind.SIGNATURE): profiles.POLICY_SIGNATURE,
    (Mode.SANDBOX, CertificateKind.AUTH): profiles.POLICY_TEST_AUTH,
    (Mode.SANDBOX, CertificateKind.SIGNATURE): profiles.POLICY_TEST_SIGNATURE,
}
_KEY_USAGE = {
    CertificateKind.AUTH: frozenset({"digital_signature"}),
    CertificateKind.SIGNATURE: frozenset({"digital_signature", "content_commitment"}),
}


@dataclass(frozen=True)
class TrustAnchor:
    kind: CertificateKind
    certificate: x509.Certificate
    key_id: bytes

    @property
    def generation(self) -> str:
        """The root generation, named by the year it was issued (2015, 2019, 2023, …)."""
        return str(self.certificate.not_valid_before_utc.year)


@dataclass(frozen=True)
class TrustedCertificate:
    certificate: JPKICertificate
    anchor: TrustAnchor


class TrustStore:
    """The roots of one kind of certificate in one mode."""

    def __init__(self, kind: CertificateKind, mode: Mode, roots: Iterable[x509.Certificate]) -> None:
        self.kind = kind
        self.mode = mode
        self.policy = _POLICY[(mode, kind)]
        anchors = []
        for root in roots:
            parsed = parse_certificate(root.public_bytes(Encoding.DER))
            if not (parsed.is_ca and parsed.is_self_issued):
                raise JPKIError(f"{parsed.subject} is not a self-signed CA", code="bad_anchor")
            unit = profiles.OU_AUTH if kind is CertificateKind.AUTH else profiles.OU_SIGNATURE
            if unit not in parsed.subject:
                raise JPKIError(f"{parsed.subject} is not a root for {kind} certificates",
                                code="bad_anchor")
            if parsed.is_test != (mode is Mode.SANDBOX):
                raise JPKIError(f"{parsed.subject} does not belong in a {mode} trust store",
                                code="bad_anchor")
            if parsed.subject_key_id is None:
                raise JPKIError(f"{parsed.subject} has no subject key identifier", code="bad_anchor")
            anchors.append(TrustAnchor(kind, root, parsed.subject_key_id))
        if not anchors:
            raise JPKIError(f"no {mode} roots for {kind} certificates", code="bad_anchor")
        self.anchors: tuple[TrustAnchor, ...] = tuple(anchors)

    def validate(self, leaf: JPKICertificate, *, at: datetime,
                 skew: timedelta = DEFAULT_SKEW) -> TrustedCertificate:
        """Accept ``leaf`` as of ``at`` or raise :class:`VerificationFailed` saying why."""
        if leaf.is_ca:
            raise VerificationFailed("a CA certificate is not a card certificate", code="ca_certificate")
        if leaf.is_self_issued:
            raise VerificationFailed("a self-signed certificate is not a card certificate",
                                     code="self_signed")
        if self.mode is Mode.LIVE and leaf.is_test:
            raise VerificationFailed("a test certificate is never accepted live",
                                     code="test_certificate")
        if leaf.kind is not self.kind:
            raise VerificationFailed(f"expected a {self.kind} certificate, got {leaf.kind}",
                                     code="wrong_kind")
        if self.policy not in leaf.policies:
            raise VerificationFailed(f"policy {self.policy} is missing", code="wrong_policy")
        if leaf.key_usage != _KEY_USAGE[self.kind]:
            raise VerificationFailed(f"key usage {sorted(leaf.key_usage)} is not that of a "
                                     f"{self.kind} certificate", code="wrong_key_usage")
        anchor = self._issuer(leaf)
        for certificate, what in ((leaf.certificate, "certificate"), (anchor.certificate, "root")):
            if at < certificate.not_valid_before_utc - skew:
                raise VerificationFailed(f"the {what} is not valid before "
                                         f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M}Z",
                                         code="not_yet_valid")
            if at > certificate.not_valid_after_utc + skew:
                raise VerificationFailed(f"the {what} expired "
                                         f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M}Z",
                                         code="expired")
        return TrustedCertificate(leaf, anchor)

    def _issuer(self, leaf: JPKICertificate) -> TrustAnchor:
        issuer = leaf.certificate.issuer
        candidates = [a for a in self.anchors if a.certificate.subject == issuer]
        if leaf.authority_key_id is not None:
            # Prefer the generation the leaf names; still decided by the signature below.
            candidates.sort(key=lambda a: a.key_id != leaf.authority_key_id)
        for anchor in candidates:
            if signed_by(leaf.certificate, anchor.certificate):
                return anchor
        raise VerificationFailed("no trusted root signed this certificate", code="untrusted")


def signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key made ``certificate``'s sha256WithRSAEncryption signature."""
    return (certificate.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
            and rs256_valid(issuer.public_key(), certificate.signature, certificate.tbs_certificate_bytes))


def rs256_valid(key: object, signature: bytes, data: bytes | memoryview) -> bool:
    """A sha256WithRSAEncryption signature by ``key`` over ``data``; False for any other key.

    OpenSSL re-encodes the DigestInfo and compares it whole: the strict PKCS#1 v1.5
    check, with no lenient parsing of the padding.
    """
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class TrustStores:
    """Both stores of one mode."""

    mode: Mode
    auth: TrustStore
    signature: TrustStore

    def for_kind(self, kind: CertificateKind) -> TrustStore:
        return self.auth if kind is CertificateKind.AUTH else self.signature


@cache
def live_roots(kind: CertificateKind) -> tuple[x509.Certificate, ...]:
    """The real J-LIS roots pinned in ``saas/jpki/roots`` (every published generation)."""
    prefix = "auth_ca_" if kind is CertificateKind.AUTH else "sign_ca_"
    folder = resources.files("saas.jpki") / "roots"
    return tuple(x509.load_pem_x509_certificate(entry.read_bytes())
                 for entry in sorted(folder.iterdir(), key=lambda e: e.name)
                 if entry.name.startswith(prefix) and entry.name.endswith(".pem"))


@cache
def live_stores() -> TrustStores:
    return TrustStores(Mode.LIVE,
                       auth=TrustStore(CertificateKind.AUTH, Mode.LIVE, live_roots(CertificateKind.AUTH)),
                       signature=TrustStore(CertificateKind.SIGNATURE, Mode.LIVE,
                                            live_roots(CertificateKind.SIGNATURE)))
