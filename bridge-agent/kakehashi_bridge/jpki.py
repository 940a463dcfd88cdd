"""The JPKI card's application, files, commands and status words (shared JPKI.md).

Only the JPKI AP is ever selected. The card-info input-assist AP, which holds the
individual number, has no constant here on purpose: nothing in the agent can name it.
"""

from __future__ import annotations

import enum

JPKI_AP = bytes.fromhex("D392F000260100000001")

DIGEST_INFO_SHA256 = bytes.fromhex("3031300D060960864801650304020105000420")


class Kind(enum.StrEnum):
    AUTH = "auth"
    SIGNATURE = "signature"


# (certificate EF, PIN EF, key EF) per kind.
FILES = {
    Kind.AUTH: (0x000A, 0x0018, 0x0017),
    Kind.SIGNATURE: (0x0001, 0x001B, 0x001A),
}
CA_FILES = {Kind.AUTH: 0x000B, Kind.SIGNATURE: 0x0002}
TOKEN_INFO = 0x0006
MAX_TRIES = {Kind.AUTH: 3, Kind.SIGNATURE: 5}

SW_OK = 0x9000
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_BLOCKED = 0x6984
SW_FILE_NOT_FOUND = 0x6A82
SW_WRONG_P1P2 = 0x6A86
SW_WRONG_LENGTH = 0x6700
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_CONDITIONS = 0x6985
SW_WRONG_DATA = 0x6A80


def select_df(aid: bytes) -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x0C, len(aid)]) + aid


def select_ef(fid: int) -> bytes:
    return bytes([0x00, 0xA4, 0x02, 0x0C, 0x02]) + fid.to_bytes(2, "big")


def read_binary(offset: int, length: int) -> bytes:
    return bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, length & 0xFF])


def verify(pin: bytes | None = None) -> bytes:
    if pin is None:
        return bytes([0x00, 0x20, 0x00, 0x80])  # retries left, no try spent
    return bytes([0x00, 0x20, 0x00, 0x80, len(pin)]) + pin


def change_pin(new_pin: bytes) -> bytes:
    return bytes([0x00, 0x24, 0x01, 0x80, len(new_pin)]) + new_pin


def compute_signature(digest_info: bytes) -> bytes:
    return bytes([0x80, 0x2A, 0x00, 0x80, len(digest_info)]) + digest_info + b"\x00"


def valid_pin(kind: Kind, pin: str) -> bool:
    """Auth: 4 digits. Signature: 6–16 of A–Z and 0–9 (upper-cased before use)."""
    if kind is Kind.AUTH:
        return len(pin) == 4 and pin.isascii() and pin.isdigit()
    return 6 <= len(pin) <= 16 and pin.isascii() and pin.isalnum() and pin.upper() == pin
