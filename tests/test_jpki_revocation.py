"""OCSP for the present, the CRL store for the past and when the responder is away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from saas import clock
from saas.jpki.errors import VerificationFailed
from saas.jpki.revocation import LayeredRevocation, Reason, Revocation

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LOST = Revocation(Reason.KEY_COMPROMISE, NOW - timedelta(minutes=1))


class Answers:
    def __init__(self, answer: Revocation | None = None, failure: str | None = None) -> None:
        self.answer, self.failure, self.asked = answer, failure, 0

    def revocation(self, issuer_key_id: bytes, serial: int, *, at: datetime) -> Revocation | None:
        self.asked += 1
        if self.failure:
            raise VerificationFailed(self.failure, code=self.failure)
        return self.answer


def test_a_login_now_asks_ocsp_which_knows_more_than_yesterdays_crl() -> None:
    crl, ocsp = Answers(None), Answers(LOST)
    with clock.frozen(NOW):
        assert LayeredRevocation(crl, ocsp).revocation(b"k", 1, at=NOW) == LOST
    assert crl.asked == 0


def test_an_unreachable_responder_falls_back_to_the_crl() -> None:
    crl, ocsp = Answers(LOST), Answers(failure="ocsp_unavailable")
    with clock.frozen(NOW):
        assert LayeredRevocation(crl, ocsp).revocation(b"k", 1, at=NOW) == LOST
    assert (ocsp.asked, crl.asked) == (1, 1)


@pytest.mark.parametrize("code", ["ocsp_bad_signature", "ocsp_nonce_mismatch", "ocsp_stale"])
def test_a_suspicious_ocsp_answer_is_never_papered_over(code: str) -> None:
    crl, ocsp = Answers(None), Answers(failure=code)
    with clock.frozen(NOW), pytest.raises(VerificationFailed) as error:
        LayeredRevocation(crl, ocsp).revocation(b"k", 1, at=NOW)
    assert error.value.code == code and crl.asked == 0


def test_the_past_is_asked_of_the_crl_store() -> None:
    crl, ocsp = Answers(None), Answers(LOST)
    with clock.frozen(NOW):
        assert LayeredRevocation(crl, ocsp).revocation(b"k", 1, at=NOW - timedelta(days=30)) is None
    assert ocsp.asked == 0


def test_without_a_responder_the_crl_store_answers() -> None:
    with clock.frozen(NOW):
        assert LayeredRevocation(Answers(LOST)).revocation(b"k", 1, at=NOW) == LOST
