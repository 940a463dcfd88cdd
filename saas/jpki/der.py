"""A tiny, bounded DER reader for the few values ``cryptography`` hands over raw.

Every length is checked against the bytes actually present before anything is sliced,
so hostile input costs at most its own size; errors raise ``ValueError``.
"""

from __future__ import annotations

UTF8_STRING = 0x0C
OCTET_STRING = 0x04


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """``(tag, value, next_offset)`` of the TLV at ``offset``; definite lengths only."""
    end = len(data)
    if offset + 2 > end:
        raise ValueError("truncated DER header")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte DER tags are not used here")
    first = data[offset + 1]
    position = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise ValueError("indefinite length is not DER")
    else:
        count = first & 0x7F
        if count > 4 or position + count > end:
            raise ValueError("DER length out of range")
        length = int.from_bytes(data[position:position + count], "big")
        if length < 0x80 or data[position] == 0:
            raise ValueError("DER length not minimal")
        position += count
    if position + length > end:
        raise ValueError("DER value runs past the end")
    return tag, data[position:position + length], position + length


def read_single(data: bytes) -> tuple[int, bytes]:
    """The one TLV that ``data`` must consist of exactly."""
    tag, value, next_offset = read_tlv(data)
    if next_offset != len(data):
        raise ValueError("trailing bytes after DER value")
    return tag, value


def read_text(data: bytes) -> str:
    """A string value given as UTF8String, or as an OCTET STRING holding UTF-8."""
    tag, value = read_single(data)
    if tag not in (UTF8_STRING, OCTET_STRING):
        raise ValueError(f"expected a string, got DER tag 0x{tag:02x}")
    return value.decode("utf-8")
