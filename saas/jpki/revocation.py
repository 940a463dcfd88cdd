"""Revocation status: the interface verifiers ask, and the status it answers.

Stores that hold revocation data (fed by CRL ingest and OCSP) implement
:class:`RevocationChecker`. A checker that cannot vouch for a certificate's issuer
(no CRL yet, or a CRL past its nextUpdate) raises :class:`VerificationFailed` with
``revocation_unknown`` or ``revocation_stale``: verification fails closed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

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
