"""Web eID token verification: the happy path and every failure code."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from saas.jpki.certificates import CertificateKind
from saas.jpki.errors import VerificationFailed
from saas.jpki.revocation import Reason, Revocation
from saas.jpki.trust import Mode, TrustStore, live_stores
from saas.jpki.webeid import MemoryNonceStore, new_challenge, verify_token

ORIGIN = "https://demo.kakehashi.example"
NOW = datetime.now(UTC)


class Revocations:
    """A revocation checker over a fixed list, for the library tests."""

    def __init__(self, revoked: dict[int, Revocation] | None = None, stale: bool = False) -> None:
        self.revoked = revoked or {}
        self.stale = stale

    def revocation(self, issuer_key_id: bytes, serial: int, *, at: datetime) -> Revocation | None:
        if self.stale:
            raise VerificationFailed("CRL past nextUpdate", code="revocation_stale")
        return self.revoked.get(serial)


def sign_token(card: Any, signed_origin: str, nonce: str, *, key: Any = None,
               **overrides: Any) -> dict[str, Any]:
    """What the bridge agent sends: the card signs H(H(origin) ‖ H(nonce))."""
    data = hashlib.sha256(signed_origin.encode()).digest() + hashlib.sha256(nonce.encode()).digest()
    signature = (key or card.auth.key).sign(data, padding.PKCS1v15(), hashes.SHA256())
    token = {"format": "web-eid:1.0", "algorithm": "RS256",
             "unverifiedCertificate": base64.b64encode(
                 card.auth.certificate.public_bytes(serialization.Encoding.DER)).decode(),
             "signature": base64.b64encode(signature).decode(),
             "appVersion": "https://kakehashi.example/bridge/0.1.0"}
    token.update(overrides)
    return token


@pytest.fixture
def setup(sandbox_roots: dict[str, Any]) -> dict[str, Any]:
    nonces = MemoryNonceStore()
    challenge = new_challenge(at=NOW)
    nonces.put(challenge)
    store = TrustStore(CertificateKind.AUTH, Mode.SANDBOX, [sandbox_roots["auth"].certificate])
    return {"nonces": nonces, "challenge": challenge, "store": store}


def verify(setup: dict[str, Any], token: Any, *, revocation: Any = None, at: datetime = NOW,
           origin: str = ORIGIN, store: Any = None) -> Any:
    return verify_token(token, nonce=setup["challenge"].nonce, origin=origin, nonces=setup["nonces"],
                        store=store or setup["store"], revocation=revocation or Revocations(), at=at)


def code_of(setup: dict[str, Any], token: Any, **kwargs: Any) -> str:
    with pytest.raises(VerificationFailed) as error:
        verify(setup, token, **kwargs)
    return error.value.code


def test_a_token_from_a_sandbox_card_verifies(setup: dict[str, Any], sandbox_card: Any) -> None:
    result = verify(setup, sign_token(sandbox_card, ORIGIN, setup["challenge"].nonce))
    assert result.serial == sandbox_card.auth.certificate.serial_number
    assert result.mode is Mode.SANDBOX and result.verified_at == NOW
    assert not hasattr(result, "der")


def test_json_text_is_accepted_too(setup: dict[str, Any], sandbox_card: Any) -> None:
    text = json.dumps(sign_token(sandbox_card, ORIGIN, setup["challenge"].nonce))
    assert verify(setup, text).serial == sandbox_card.auth.certificate.serial_number


def test_challenges_are_256_bits_and_live_at_most_five_minutes() -> None:
    challenge = new_challenge(at=NOW, lifetime=timedelta(hours=1))
    assert len(base64.b64decode(challenge.nonce)) == 32
    assert challenge.expires_at == NOW + timedelta(minutes=5)
    assert new_challenge(at=NOW).nonce != challenge.nonce


def test_a_nonce_is_single_use(setup: dict[str, Any], sandbox_card: Any) -> None:
    token = sign_token(sandbox_card, ORIGIN, setup["challenge"].nonce)
    verify(setup, token)
    assert code_of(setup, token) == "replayed"


def test_a_failed_attempt_spends_the_nonce_too(setup: dict[str, Any], sandbox_card: Any) -> None:
    assert code_of(setup, sign_token(sandbox_card, "https://evil.example", setup["challenge"].nonce)) == "bad_signature"
    assert code_of(setup, sign_token(sandbox_card, ORIGIN, setup["challenge"].nonce)) == "replayed"


def test_a_malformed_token_spends_the_nonce_too(setup: dict[str, Any], sandbox_card: Any) -> None:
    nonce = setup["challenge"].nonce
    assert code_of(setup, sign_token(sandbox_card, ORIGIN, nonce, algorithm="ES256")) == "malformed"
    assert code_of(setup, sign_token(sandbox_card, ORIGIN, nonce)) == "replayed"


def test_an_expired_challenge(setup: dict[str, Any], sandbox_card: Any) -> None:
    token = sign_token(sandbox_card, ORIGIN, setup["challenge"].nonce)
    assert code_of(setup, token, at=NOW + timedelta(minutes=5, seconds=1)) == "nonce_expired"


def test_another_origin(setup: dict[str, Any], sandbox_card: Any) -> None:
    elsewhere = "https://phish.example"
    token = sign_token(sandbox_card, elsewhere, setup["challenge"].nonce, origin=elsewhere)
    assert code_of(setup, token) == "wrong_origin"


def test_a_signature_over_something_else(setup: dict[str, Any], sandbox_card: Any) -> None:
    token = sign_token(sandbox_card, ORIGIN, "another nonce")
    assert code_of(setup, token) == "bad_signature"


def test_a_signature_by_another_key(setup: dict[str, Any], sandbox_card: Any) -> None:
    token = sign_token(sandbox_card, ORIGIN, setup["challenge"].nonce, key=sandbox_card.signature.key)
    assert code_of(setup, token) == "bad_signature"


def test_a_revoked_certificate_says_why(setup: dict[str, Any], sandbox_card: Any) -> None:
    serial = sandbox_card.auth.certificate.serial_number
    revoked = Revocations({serial: Revocation(Reason.KEY_COMPROMISE, NOW - timedelta(days=1))})
    token = sign_token(sandbox_card, ORIGIN, setup["challenge"].nonce)
    assert code_of(setup, token, revocation=revoked) == "revoked:keyCompromise"


def test_stale_revocation_data_fails_closed(setup: dict[str, Any], sandbox_card: Any) -> None:
    token = sign_token(sandbox_card, ORIGIN, setup["challenge"].nonce)
    assert code_of(setup, token, revocation=Revocations(stale=True)) == "revocation_stale"


def test_a_sandbox_card_is_untrusted_live(setup: dict[str, Any], sandbox_card: Any) -> None:
    token = sign_token(sandbox_card, ORIGIN, setup["challenge"].nonce)
    assert code_of(setup, token, store=live_stores().auth) == "test_certificate"


def test_the_signature_certificate_cannot_log_in(setup: dict[str, Any], sandbox_card: Any) -> None:
    token = sign_token(sandbox_card, ORIGIN, setup["challenge"].nonce, key=sandbox_card.signature.key,
                       unverifiedCertificate=base64.b64encode(sandbox_card.signature.certificate.public_bytes(
                           serialization.Encoding.DER)).decode())
    assert code_of(setup, token) == "wrong_kind"


def test_an_expired_certificate(setup: dict[str, Any], sandbox_card: Any) -> None:
    token = sign_token(sandbox_card, ORIGIN, setup["challenge"].nonce)
    later = sandbox_card.auth.certificate.not_valid_after_utc + timedelta(days=1)
    setup["nonces"].put(type(setup["challenge"])(setup["challenge"].nonce, later + timedelta(minutes=1)))
    assert code_of(setup, token, at=later) == "expired"


@pytest.mark.parametrize("change", [
    {"format": "web-eid:0.9"}, {"algorithm": "ES256"}, {"signature": "***"},
    {"unverifiedCertificate": ""}, {"unverifiedCertificate": base64.b64encode(b"junk").decode()},
    {"origin": 5}, {"appVersion": ["x"]},
])
def test_malformed_tokens(setup: dict[str, Any], sandbox_card: Any, change: dict[str, Any]) -> None:
    token = sign_token(sandbox_card, ORIGIN, setup["challenge"].nonce, **change)
    assert code_of(setup, token) == "malformed"


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", "x" * 20_000, b"\xff\xfe"])
def test_tokens_that_are_not_objects(setup: dict[str, Any], raw: Any) -> None:
    assert code_of(setup, raw) == "malformed"


def test_deeply_nested_json_is_malformed_not_a_crash(setup: dict[str, Any]) -> None:
    assert code_of(setup, "[" * 10_000) == "malformed"
