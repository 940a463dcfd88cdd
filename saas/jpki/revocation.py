"""Revocation status: the interface verifiers ask, and the status it answers.

Stores that hold revocation data (fed by CRL ingest and OCSP) implement
:class:`RevocationChecker`. A checker that cannot vouch for a certificate's issuer
(no CRL yet, or a CRL past its nextUpdate) raises :class:`VerificationFailed` with
``revocation_unknown`` or ``revocation_stale``: verification fails closed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from saas import clock
from saas.jpki.errors import VerificationFailed


class Reason(enum.StrEnum):
    """CRL reason codes (RFC 5280) as JPKI uses them."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"  # lost or stolen card
    AFFILIATION_CHANGED = "affiliationChanged"  # one of the four attributes changed
    SUPERSEDED = "superseded"  # renewed
    CESSATION_OF_OPERATION = "cessationOfOperation"  # no longer needed: returned, death
    CA_COMPROMISE = "cACompromise"
    CERTIFICATE_HOLD = "certificateHold"
    REMOVE_FROM_CRL = "removeFromCRL"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"
    AA_COMPROMISE = "aACompromise"


@dataclass(frozen=True)
class Revocation:
    reason: Reason
    revoked_at: datetime


class RevocationChecker(Protocol):
    def revocation(self, issuer_key_id: bytes, serial: int, *, at: datetime) -> Revocation | None:
        """The revocation in force at ``at``, or None; raises when the data cannot vouch."""


def require_not_revoked(checker: RevocationChecker, issuer_key_id: bytes, serial: int, *,
                        at: datetime) -> None:
    revocation = checker.revocation(issuer_key_id, serial, at=at)
    if revocation is not None:
        raise VerificationFailed(
            f"revoked ({revocation.reason}) at {revocation.revoked_at:%Y-%m-%d %H:%M}Z",
            code=f"revoked:{revocation.reason}")


class LayeredRevocation:
    """OCSP for the present, the CRL store for the rest.

    A check about now (a login, a signature being made) asks the OCSP responder when one
    is configured: its answer is current, where a CRL can be a day old. When the responder
    cannot be reached, the CRL store answers instead (it still fails closed when stale).
    Checks about a past moment (a signature made last year) go to the CRL store, which
    keeps revocation dates. Any other OCSP failure (bad signature, nonce, staleness) is
    raised, never papered over.
    """

    PRESENT = timedelta(minutes=5)

    def __init__(self, crl: RevocationChecker, ocsp: RevocationChecker | None = None) -> None:
        self.crl = crl
        self.ocsp = ocsp

    def revocation(self, issuer_key_id: bytes, serial: int, *, at: datetime) -> Revocation | None:
        if self.ocsp is not None and abs(clock.now() - at) <= self.PRESENT:
            try:
                return self.ocsp.revocation(issuer_key_id, serial, at=at)
            except VerificationFailed as error:
                if error.code != "ocsp_unavailable":
                    raise
        return self.crl.revocation(issuer_key_id, serial, at=at)
