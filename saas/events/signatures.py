"""Webhook signatures: HMAC-SHA256 over ``<timestamp>.<body>``.

Every delivery carries::

    Kakehashi-Signature: t=1764051200,v1=5f2c…
    Idempotency-Key: evt_01jdx…

``v1`` is the lower-case hex HMAC-SHA256 of ``f"{t}.".encode() + body`` under the
endpoint's secret. For a day after a secret is rotated there are two ``v1`` values (new
and old secret); a receiver accepts the request if any of them matches. A receiver
should refuse a ``t`` more than five minutes from its clock (replays) and use the
idempotency key to ignore a delivery it has already processed. :func:`verify` does the
first part and is importable by receivers written in Python; nothing here needs Flask.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

HEADER = "Kakehashi-Signature"
TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match."""


def sign(body: bytes, secrets: Iterable[str], timestamp: int | None = None) -> str:
    """The ``Kakehashi-Signature`` header value for ``body`` under each secret."""
    moment = int(time.time()) if timestamp is None else timestamp
    signed = f"{moment}.".encode() + body
    values = [hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets]
    return ",".join([f"t={moment}", *(f"v1={value}" for value in values)])


def verify(body: bytes, header: str | None, secret: str, *, tolerance: int = TOLERANCE_SECONDS,
           now: int | None = None) -> int:
    """Check a delivery; returns its timestamp or raises :class:`SignatureError`."""
    if not header:
        raise SignatureError(f"the {HEADER} header is missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"the {HEADER} header has no t= or no v1=")
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("the signature is too old or from the future (replay?)")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("no signature matches this secret")
    return timestamp
