"""Document signatures with the signature key, judged as of the signing time."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from saas.jpki.certificates import CertificateKind
from saas.jpki.errors import VerificationFailed
from saas.jpki.revocation import Reason, Revocation
from saas.jpki.signatures import verify_signature
from saas.jpki.trust import Mode, TrustStore

NOW = datetime.now(UTC)
DOCUMENT = "委任状: 株式会社架け橋は山田花子に入札の権限を委任する".encode()


class AsOf:
    """Revoked since ``revoked_at``: a checker that honours ``at`` like the real store."""

    def __init__(self, revoked_at: datetime | None) -> None:
        self.revoked_at = revoked_at

    def revocation(self, issuer_key_id: bytes, serial: int, *, at: datetime) -> Revocation | None:
        if self.revoked_at is not None and self.revoked_at <= at:
            return Revocation(Reason.AFFILIATION_CHANGED, self.revoked_at)
        return None


@pytest.fixture
def signed(sandbox_card: Any, sandbox_roots: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(DOCUMENT).digest()
    signature = sandbox_card.signature.key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    return {"digest": digest, "signature": signature,
            "certificate": sandbox_card.signature.certificate.public_bytes(serialization.Encoding.DER),
            "store": TrustStore(CertificateKind.SIGNATURE, Mode.SANDBOX,
                                [sandbox_roots["signature"].certificate])}


def test_a_signed_document_verifies_with_the_four_attributes(signed: dict[str, Any]) -> None:
    result = verify_signature(**signed, revocation=AsOf(None), signed_at=NOW)
    assert result.attributes.name == "吉田\u3000花子" and result.digest == signed["digest"]


def test_a_signature_before_a_later_revocation_stays_valid(signed: dict[str, Any]) -> None:
    result = verify_signature(**signed, revocation=AsOf(NOW + timedelta(days=1)), signed_at=NOW)
    assert result.signed_at == NOW


def test_a_signature_after_revocation_is_refused(signed: dict[str, Any]) -> None:
    with pytest.raises(VerificationFailed) as error:
        verify_signature(**signed, revocation=AsOf(NOW - timedelta(hours=1)), signed_at=NOW)
    assert error.value.code == "revoked:affiliationChanged"


def test_a_changed_document_is_refused(signed: dict[str, Any]) -> None:
    signed["digest"] = hashlib.sha256(DOCUMENT + b".").digest()
    with pytest.raises(VerificationFailed, match="does not match") as error:
        verify_signature(**signed, revocation=AsOf(None), signed_at=NOW)
    assert error.value.code == "bad_signature"


def test_an_auth_certificate_cannot_sign_documents(signed: dict[str, Any], sandbox_card: Any) -> None:
    signed["certificate"] = sandbox_card.auth.certificate.public_bytes(serialization.Encoding.DER)
    with pytest.raises(VerificationFailed) as error:
        verify_signature(**signed, revocation=AsOf(None), signed_at=NOW)
    assert error.value.code == "wrong_kind"


def test_a_digest_that_is_not_sha256_is_malformed(signed: dict[str, Any]) -> None:
    signed["digest"] = b"\x00" * 20
    with pytest.raises(VerificationFailed) as error:
        verify_signature(**signed, revocation=AsOf(None), signed_at=NOW)
    assert error.value.code == "malformed"
