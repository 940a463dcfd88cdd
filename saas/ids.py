"""Public identifiers: ``<prefix>_<26 characters>``, e.g. ``ten_01jdx4q6m8v9z3k2c7b5n1r0yt``.

The 26 characters are a ULID in lower-case Crockford base32: 48 bits of milliseconds
then 80 random bits, so ids sort by creation time (cheap keyset paging) and cannot be
guessed. Internal integer keys never leave the service; these do.
"""

from __future__ import annotations

import base64
import re
import secrets
from datetime import datetime

from saas import clock

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET)
_PREFIX = re.compile(r"^[a-z]{2,8}$")
_BODY = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")


def new_id(prefix: str) -> str:
    """A new public id with ``prefix`` (2–8 lower-case letters)."""
    return _encode(prefix, clock.now(), secrets.randbits(80))


def first_id_at(prefix: str, moment: datetime) -> str:
    """The lowest id with ``prefix`` that :func:`new_id` makes at ``moment`` (to the
    millisecond): every id below it was made earlier, so a time range is a range of the
    ids' index (the events purge needs no index of its own on the time)."""
    return _encode(prefix, moment, 0)


def _encode(prefix: str, moment: datetime, random: int) -> str:
    if not _PREFIX.match(prefix):
        raise ValueError(f"id prefix must be 2-8 lower-case letters, got {prefix!r}")
    value = (int(moment.timestamp() * 1000) << 80) | random
    # 26 base32 digits are 130 bits: the value's 128 with two zero bits on top. Shifted
    # to the top of 160 bits, base64's base32 (C) writes them as the first 26 of 32 digits.
    return f"{prefix}_{base64.b32encode((value << 30).to_bytes(20, 'big'))[:26].decode().translate(_CROCKFORD)}"


def is_id(value: str, prefix: str) -> bool:
    """True when ``value`` has the shape of a public id with ``prefix``."""
    head, sep, body = value.partition("_")
    return sep == "_" and head == prefix and bool(_BODY.match(body))
