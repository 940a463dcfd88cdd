"""Reading X.509 v2 CRLs (RFC 5280 §5) for revocation ingest.

A full JPKI CRL has millions of entries, so the reader is split in two: ``read_crl`` checks
the whole outer structure and returns the header (enough to verify the signature, the CRL
number and the validity window) without decoding entries; ``iter_revoked`` and
``revoked_serials`` then stream the entries. Ingest verifies the header first, then reads
the entries all-or-nothing: an entry error raises midway, so nothing may be kept from a CRL
whose read did not finish.

The input is hostile until its signature is checked, and even then it is parsed strictly:
DER only (definite, minimal lengths), every length bounded by the bytes actually present
(nothing is allocated from a claimed length), no trailing bytes at any level, version v2,
no duplicate extensions, no unrecognised critical extension. Any such fault is a
``CRLFormatError``; no other exception escapes for bad bytes.

Entries are parsed by a hand-written scanner: the common entry layout
(``30 LL 02 LL serial 17 0D time [extensions]``) is checked at fixed offsets, and decoded
dates and entry extensions are cached by their raw bytes, so an entry costs about a
microsecond. Anything else goes through the general DER path with the same checks.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import repeat

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from saas.jpki.trust import rs256_valid

SHA256_WITH_RSA_OID = "1.2.840.113549.1.1.11"

# CRLReason codes (RFC 5280 §5.3.1) to x509.ReasonFlags values. 7 is unassigned, and
# removeFromCRL (8) only has a meaning in delta CRLs, which this reader refuses.
REASON_NAMES: dict[int, str] = {
    0: "unspecified",
    1: "keyCompromise",
    2: "cACompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
    6: "certificateHold",
    9: "privilegeWithdrawn",
    10: "aACompromise",
}
NO_REASON = -1  # the code ``revoked_serials`` reports for an entry without reasonCode

_SEQUENCE, _INTEGER, _OID, _OCTETS, _BIT_STRING, _NULL = 0x30, 0x02, 0x06, 0x04, 0x03, 0x05
_UTC_TIME, _GENERALIZED_TIME, _ENUMERATED = 0x17, 0x18, 0x0A
_EXPLICIT_0 = 0xA0

# Extension OIDs, compared in their DER content form.
_CRL_NUMBER = b"\x55\x1d\x14"
_AUTHORITY_KEY_ID = b"\x55\x1d\x23"
_ISSUING_DISTRIBUTION_POINT = b"\x55\x1d\x1c"
_REASON_CODE = b"\x55\x1d\x15"
_INVALIDITY_DATE = b"\x55\x1d\x18"
_MAX_SERIAL_OCTETS = 20
_BATCH = 65_536
_CACHE_LIMIT = 65_536  # bounds the decode caches when an input makes every value distinct
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()


class CRLFormatError(ValueError):
    """The bytes are not a DER X.509 v2 CRL of the shape this reader accepts."""


@dataclass(frozen=True, slots=True)
class CRLHeader:
    issuer: x509.Name
    issuer_der: bytes
    crl_number: int
    this_update: datetime
    next_update: datetime | None
    authority_key_id: bytes | None
    signature_algorithm_oid: str
    tbs: memoryview  # a view into the CRL: a full CRL is hundreds of megabytes
    signature: bytes
    entry_count_hint: int | None = None  # not known without scanning the entries


@dataclass(frozen=True, slots=True)
class RevokedColumns:
    """All entries of a CRL as parallel columns, compact enough for ten million entries."""

    serials: list[int]
    revoked_at: array[int]  # "q": seconds since the Unix epoch, UTC
    reasons: array[int]  # "b": CRLReason code, NO_REASON when the entry has none


def reason_name(code: int) -> str | None:
    """The x509.ReasonFlags value for a code from ``RevokedColumns.reasons``."""
    return None if code == NO_REASON else REASON_NAMES[code]


def read_crl(der: bytes) -> CRLHeader:
    """The header of a CRL, after checking its whole structure except the entries' contents."""
    buf = _as_bytes(der)
    layout = _Layout(buf)
    return CRLHeader(
        issuer=layout.issuer,
        issuer_der=buf[layout.issuer_span[0] : layout.issuer_span[1]],
        crl_number=layout.crl_number,
        this_update=layout.this_update,
        next_update=layout.next_update,
        authority_key_id=layout.authority_key_id,
        signature_algorithm_oid=layout.signature_algorithm_oid,
        tbs=memoryview(buf)[layout.tbs_span[0] : layout.tbs_span[1]],
        signature=layout.signature,
    )


def verify_crl_signature(header: CRLHeader, issuer_public_key: rsa.RSAPublicKey) -> bool:
    """True only for a valid sha256WithRSAEncryption PKCS#1 v1.5 signature by this key."""
    return (header.signature_algorithm_oid == SHA256_WITH_RSA_OID
            and rs256_valid(issuer_public_key, header.signature, header.tbs))


def iter_revoked(der: bytes) -> Iterator[tuple[int, datetime, str | None]]:
    """(serial, revocation time in UTC, reason as an x509.ReasonFlags value or None) per entry."""
    buf = _as_bytes(der)
    pos, end = _Layout(buf).revoked_span
    scanner = _EntryScanner()
    moments: dict[int, datetime] = {}
    while pos < end:
        serials: list[int] = []
        times, codes = array("q"), array("b")
        pos = scanner.scan(buf, pos, end, _BATCH, serials, times, codes)
        for serial, seconds, code in zip(serials, times, codes, strict=True):
            moment = moments.get(seconds)
            if moment is None:
                if len(moments) >= _CACHE_LIMIT:
                    moments.clear()
                moment = moments[seconds] = datetime.fromtimestamp(seconds, UTC)
            yield serial, moment, None if code == NO_REASON else REASON_NAMES[code]


def revoked_serials(der: bytes) -> RevokedColumns:
    """Every entry at once, without a datetime or tuple per entry: the fast path for ingest."""
    buf = _as_bytes(der)
    pos, end = _Layout(buf).revoked_span
    columns = RevokedColumns(serials=[], revoked_at=array("q"), reasons=array("b"))
    _EntryScanner().scan(buf, pos, end, end - pos, columns.serials, columns.revoked_at, columns.reasons)
    return columns


def _as_bytes(der: bytes) -> bytes:
    # Raw slices are used as cache keys, which needs an immutable buffer.
    if isinstance(der, bytes):
        return der
    if isinstance(der, (bytearray, memoryview)):
        return bytes(der)
    raise TypeError("a CRL is read from bytes")


# --- DER primitives -------------------------------------------------------------------


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at ``pos``, which must fit before ``end``."""
    if end - pos < 2:
        raise CRLFormatError("truncated element")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise CRLFormatError("multi-octet tags do not occur in CRLs")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise CRLFormatError("indefinite length")
        if count > 4 or count > end - pos:
            raise CRLFormatError("length field out of range")
        if buf[pos] == 0:
            raise CRLFormatError("non-minimal length")
        length = int.from_bytes(buf[pos : pos + count], "big")
        if length < 0x80:
            raise CRLFormatError("non-minimal length")
        pos += count
    if length > end - pos:
        raise CRLFormatError("length past the end of the enclosing element")
    return tag, pos, pos + length


def _expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    found, start, stop = _tlv(buf, pos, end)
    if found != tag:
        raise CRLFormatError(f"expected tag {tag:#04x}, found {found:#04x}")
    return start, stop


def _integer(content: bytes) -> int:
    if not content:
        raise CRLFormatError("empty INTEGER")
    if len(content) > 1 and (
        (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise CRLFormatError("non-minimal INTEGER")
    return int.from_bytes(content, "big", signed=True)


def _oid(content: bytes) -> str:
    if not content or content[-1] & 0x80:
        raise CRLFormatError("malformed OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    octets = 0
    for octet in content:
        if octets == 0 and octet == 0x80:
            raise CRLFormatError("non-minimal OBJECT IDENTIFIER arc")
        value = (value << 7) | (octet & 0x7F)
        octets += 1
        if octets > 20:  # 2.25 UUID arcs need 19; longer ones only serve to be expensive
            raise CRLFormatError("OBJECT IDENTIFIER arc too long")
        if not octet & 0x80:
            arcs.append(value)
            value = octets = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))


def _extensions(buf: bytes, start: int, end: int) -> dict[bytes, tuple[bool, int, int]]:
    """Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension, by OID: (critical, value span)."""
    found: dict[bytes, tuple[bool, int, int]] = {}
    seq_start, seq_end = _expect(buf, start, end, _SEQUENCE)
    if seq_end != end or seq_start == seq_end:
        raise CRLFormatError("malformed extensions")
    pos = seq_start
    while pos < seq_end:
        ext_start, ext_end = _expect(buf, pos, seq_end, _SEQUENCE)
        oid_start, at = _expect(buf, ext_start, ext_end, _OID)
        oid = buf[oid_start:at]
        _oid(oid)
        critical = False
        tag, value_start, value_end = _tlv(buf, at, ext_end)
        if tag == 0x01:  # BOOLEAN
            flag = buf[value_start:value_end]
            # An explicit FALSE is not DER but is common and harmless; TRUE must be FF.
            if flag not in (b"\x00", b"\xff"):
                raise CRLFormatError("malformed critical flag")
            critical = flag == b"\xff"
            tag, value_start, value_end = _tlv(buf, value_end, ext_end)
        if tag != _OCTETS or value_end != ext_end:
            raise CRLFormatError("malformed extension")
        if oid in found:
            raise CRLFormatError(f"duplicate extension {_oid(oid)}")
        found[oid] = (critical, value_start, value_end)
        pos = ext_end
    return found


# --- entries ------------------------------------------------------------------------------


class _EntryScanner:
    """Decodes revokedCertificates entries, caching decoded times and extensions by raw bytes.

    The fast path reads the usual layout at fixed offsets: an entry under 128 octets, a
    serial, a UTCTime, then optional extensions. Whatever does not fit it goes through
    ``entry``, which parses the same fields with the general DER checks.
    """

    def __init__(self) -> None:
        self.days: dict[bytes, int] = {}
        self.extensions: dict[bytes, int] = {}

    def scan(
        self, buf: bytes, pos: int, end: int, limit: int,
        serials: list[int], times: array[int], codes: array[int],
    ) -> int:
        """Appends up to ``limit`` entries from ``buf[pos:end]``; returns where it stopped.

        ``_Layout`` guarantees crlExtensions follow revokedCertificates, so ``end`` is at
        least two octets before the end of ``buf`` and the header reads below stay inside it.
        """
        day_cache, extension_cache = self.days, self.extensions
        put_serial, put_time, put_code = serials.append, times.append, codes.append
        for _ in repeat(None, limit):
            if pos >= end:
                break
            if buf[pos] == _SEQUENCE and buf[pos + 1] < 0x80:
                content, entry_end = pos + 2, pos + 2 + buf[pos + 1]
                if entry_end > end:
                    raise CRLFormatError("entry past the end of revokedCertificates")
            else:
                content, entry_end = _expect(buf, pos, end, _SEQUENCE)
            size = buf[content + 1]
            serial_end = content + 2 + size
            time_end = serial_end + 15
            if (
                time_end <= entry_end
                and buf[content] == _INTEGER
                and 0 < size <= _MAX_SERIAL_OCTETS
                and buf[serial_end] == _UTC_TIME
                and buf[serial_end + 1] == 13
            ):
                first = buf[content + 2]
                if not (0 < first < 0x80 or (first == 0 and size > 1 and buf[content + 3] >= 0x80)):
                    raise CRLFormatError("a serial must be a positive, minimal INTEGER")
                serial = int.from_bytes(buf[content + 2 : serial_end], "big")
                # Revocation times are mostly distinct, even to the minute, so only the
                # day is cached and the time of day is decoded here.
                at = serial_end + 8
                day = day_cache.get(buf[serial_end + 2 : at])
                if day is None:
                    if len(day_cache) >= _CACHE_LIMIT:
                        day_cache.clear()
                    day = day_cache[buf[serial_end + 2 : at]] = _day_seconds(buf[serial_end + 2 : at])
                clock = buf[at : at + 6]
                if not clock.isdigit() or buf[at + 6] != 0x5A:
                    raise CRLFormatError("malformed revocation time")
                hour, rest = divmod(int(clock), 10_000)
                minute, second = divmod(rest, 100)
                if hour > 23 or minute > 59 or second > 59:
                    raise CRLFormatError("time of day out of range")
                seconds = day + hour * 3600 + minute * 60 + second
            else:
                serial, seconds, time_end = self.entry(buf, content, entry_end)
            if time_end == entry_end:
                code = NO_REASON
            else:
                raw = buf[time_end:entry_end]
                code = extension_cache.get(raw)
                if code is None:
                    if len(extension_cache) >= _CACHE_LIMIT:
                        extension_cache.clear()
                    code = extension_cache[raw] = _entry_reason(buf, time_end, entry_end)
            put_serial(serial)
            put_time(seconds)
            put_code(code)
            pos = entry_end
        return pos

    def entry(self, buf: bytes, start: int, end: int) -> tuple[int, int, int]:
        """(serial, revocation seconds, end of the time) of an entry off the fast path."""
        serial_start, serial_end = _expect(buf, start, end, _INTEGER)
        serial = _integer(buf[serial_start:serial_end])
        if serial <= 0 or serial_end - serial_start > _MAX_SERIAL_OCTETS:
            raise CRLFormatError("a serial must be a positive INTEGER of at most 20 octets")
        tag, time_start, time_end = _tlv(buf, serial_end, end)
        return serial, _seconds(tag, buf[time_start:time_end], self.days), time_end


def _seconds(tag: int, raw: bytes, days: dict[bytes, int]) -> int:
    """Seconds since the epoch of a time in RFC 5280's form (YYMMDDHHMMSSZ or YYYYMMDDHHMMSSZ).

    Revocation times are mostly distinct, so ``days`` caches the date part on its own.
    """
    if tag == _UTC_TIME and len(raw) == 13:
        day_raw = raw[:6]
    elif tag == _GENERALIZED_TIME and len(raw) == 15:
        day_raw = raw[:8]
    else:
        raise CRLFormatError("a CRL time must be UTCTime or GeneralizedTime, to the second, in Zulu")
    clock = raw[-7:-1]
    if raw[-1] != 0x5A or not clock.isdigit():
        raise CRLFormatError("malformed time")
    day = days.get(day_raw)
    if day is None:
        if len(days) >= _CACHE_LIMIT:
            days.clear()
        day = days[day_raw] = _day_seconds(day_raw)
    hour, rest = divmod(int(clock), 10_000)
    minute, second = divmod(rest, 100)
    if hour > 23 or minute > 59 or second > 59:
        raise CRLFormatError("time of day out of range")
    return day + hour * 3600 + minute * 60 + second


def _day_seconds(raw: bytes) -> int:
    """Seconds from the epoch to the start of a YYMMDD (UTCTime) or YYYYMMDD day."""
    if not raw.isdigit():
        raise CRLFormatError("malformed date")
    if len(raw) == 6:
        year = int(raw[0:2])
        year += 1900 if year >= 50 else 2000  # RFC 5280 §4.1.2.5.1
    else:
        year = int(raw[0:4])
    try:
        day = date(year, int(raw[-4:-2]), int(raw[-2:]))
    except ValueError:
        raise CRLFormatError("date out of range") from None
    return (day.toordinal() - _EPOCH_ORDINAL) * 86_400


def _time(buf: bytes, pos: int, end: int) -> tuple[datetime, int]:
    tag, start, stop = _tlv(buf, pos, end)
    seconds = _seconds(tag, buf[start:stop], {})
    return _EPOCH + timedelta(seconds=seconds), stop


def _entry_reason(buf: bytes, start: int, end: int) -> int:
    """The reasonCode in an entry's crlEntryExtensions, or NO_REASON."""
    code = NO_REASON
    for oid, (critical, value_start, value_end) in _extensions(buf, start, end).items():
        if oid == _REASON_CODE:
            code_start, code_end = _expect(buf, value_start, value_end, _ENUMERATED)
            raw = buf[code_start:code_end]
            if code_end != value_end or len(raw) != 1 or raw[0] not in REASON_NAMES:
                raise CRLFormatError("malformed or unsupported reasonCode")
            code = raw[0]
        elif oid == _INVALIDITY_DATE:
            pass  # the revocation date is what ingest records
        elif critical:
            # Includes certificateIssuer: indirect CRLs are not ingested.
            raise CRLFormatError(f"unsupported critical entry extension {_oid(oid)}")
    return code


# --- the outer structure ------------------------------------------------------------------


class _Layout:
    """The checked outer structure of a CRL: header values and where the parts are."""

    def __init__(self, buf: bytes) -> None:
        outer_start, outer_end = _expect(buf, 0, len(buf), _SEQUENCE)
        if outer_end != len(buf):
            raise CRLFormatError("trailing bytes after the CRL")
        tbs_start, tbs_end = _expect(buf, outer_start, outer_end, _SEQUENCE)
        self.tbs_span = (outer_start, tbs_end)
        inner_algorithm = self._tbs(buf, tbs_start, tbs_end)
        alg_start, alg_end = _expect(buf, tbs_end, outer_end, _SEQUENCE)
        if buf[tbs_end:alg_end] != inner_algorithm:
            raise CRLFormatError("the signature algorithms inside and outside the TBS differ")
        self.signature_algorithm_oid = self._algorithm(buf, alg_start, alg_end)
        sig_start, sig_end = _expect(buf, alg_end, outer_end, _BIT_STRING)
        if sig_end != outer_end:
            raise CRLFormatError("trailing fields after the signature")
        if sig_start == sig_end or buf[sig_start] != 0:
            raise CRLFormatError("the signature must be a whole number of octets")
        self.signature = buf[sig_start + 1 : sig_end]

    def _tbs(self, buf: bytes, pos: int, end: int) -> bytes:
        """Reads the TBS fields; returns its signature AlgorithmIdentifier, raw."""
        if pos < end and buf[pos] != _INTEGER:  # v1 CRLs omit the version
            raise CRLFormatError("only version 2 CRLs are accepted")
        version_start, pos = _expect(buf, pos, end, _INTEGER)
        if buf[version_start:pos] != b"\x01":
            raise CRLFormatError("only version 2 CRLs are accepted")
        alg_end = _expect(buf, pos, end, _SEQUENCE)[1]
        algorithm = buf[pos:alg_end]
        issuer_end = _expect(buf, alg_end, end, _SEQUENCE)[1]
        self.issuer_span = (alg_end, issuer_end)
        self.issuer = _name(buf[alg_end:issuer_end])
        self.this_update, pos = _time(buf, issuer_end, end)
        self.next_update: datetime | None = None
        if pos < end and buf[pos] in (_UTC_TIME, _GENERALIZED_TIME):
            self.next_update, pos = _time(buf, pos, end)
        self.revoked_span = (pos, pos)
        if pos < end and buf[pos] == _SEQUENCE:
            revoked_start, pos = _expect(buf, pos, end, _SEQUENCE)
            if revoked_start == pos:
                raise CRLFormatError("revokedCertificates must be absent, not empty")
            self.revoked_span = (revoked_start, pos)
        if pos == end:
            raise CRLFormatError("a v2 CRL needs crlExtensions with a CRL number")
        extensions_start, extensions_end = _expect(buf, pos, end, _EXPLICIT_0)
        if extensions_end != end:
            raise CRLFormatError("trailing fields in the TBS")
        self._crl_extensions(buf, extensions_start, extensions_end)
        return algorithm

    def _crl_extensions(self, buf: bytes, start: int, end: int) -> None:
        self.authority_key_id: bytes | None = None
        extensions = _extensions(buf, start, end)
        for oid, (critical, value_start, value_end) in extensions.items():
            if oid == _CRL_NUMBER:
                number_start, number_end = _expect(buf, value_start, value_end, _INTEGER)
                number = _integer(buf[number_start:number_end])
                if number_end != value_end or not 0 <= number or number_end - number_start > 20:
                    raise CRLFormatError("malformed CRL number")
                self.crl_number = number
            elif oid == _AUTHORITY_KEY_ID:
                self.authority_key_id = _key_identifier(buf, value_start, value_end)
            elif oid == _ISSUING_DISTRIBUTION_POINT:
                # Recognised so a critical one is accepted; the scope it states is the
                # distribution point the ingest job fetched, so nothing here depends on it.
                if _expect(buf, value_start, value_end, _SEQUENCE)[1] != value_end:
                    raise CRLFormatError("malformed issuing distribution point")
            elif critical:
                # Includes deltaCRLIndicator: only full CRLs are ingested.
                raise CRLFormatError(f"unsupported critical CRL extension {_oid(oid)}")
        if _CRL_NUMBER not in extensions:
            raise CRLFormatError("the CRL number is missing")

    @staticmethod
    def _algorithm(buf: bytes, start: int, end: int) -> str:
        oid_start, pos = _expect(buf, start, end, _OID)
        oid = _oid(buf[oid_start:pos])
        if pos != end:
            params_tag, _, params_end = _tlv(buf, pos, end)
            if params_end != end or (oid == SHA256_WITH_RSA_OID and (params_tag != _NULL or params_end - pos != 2)):
                raise CRLFormatError("malformed algorithm parameters")
        return oid


def _key_identifier(buf: bytes, start: int, end: int) -> bytes | None:
    aki_start, aki_end = _expect(buf, start, end, _SEQUENCE)
    if aki_end != end:
        raise CRLFormatError("malformed authority key identifier")
    key_id = None
    pos = aki_start
    last = -1
    while pos < aki_end:
        tag, content_start, content_end = _tlv(buf, pos, aki_end)
        # keyIdentifier [0], authorityCertIssuer [1], authorityCertSerialNumber [2], in order
        number = (0x80, 0xA1, 0x82).index(tag) if tag in (0x80, 0xA1, 0x82) else -1
        if number <= last:
            raise CRLFormatError("malformed authority key identifier")
        if number == 0:
            key_id = buf[content_start:content_end]
        last = number
        pos = content_end
    return key_id


# Attributes that cryptography only warns about when their length is off, by DER OID
# content: a hostile issuer must not reach it with them (warnings are not errors).
_LENGTH_LIMITED_ATTRIBUTES = {
    b"\x55\x04\x06": (2, 2),  # countryName
    b"\x2b\x06\x01\x04\x01\x82\x37\x3c\x02\x01\x03": (2, 2),  # jurisdictionCountryName
    b"\x55\x04\x03": (1, 64),  # commonName
}
_UTF8, _PRINTABLE, _IA5 = 0x0C, 0x13, 0x16


def _name(issuer_der: bytes) -> x509.Name:
    """The issuer as cryptography sees it, so it compares equal to certificates' names.

    cryptography has no public loader for a bare Name, so the Name is wrapped in the
    smallest CRL it accepts and read back from there.
    """
    _check_name(issuer_der)
    algorithm = bytes.fromhex("300d06092a864886f70d01010b0500")
    tbs = _der_sequence(algorithm + issuer_der + b"\x17\x0d700101000000Z")
    try:
        return x509.load_der_x509_crl(_der_sequence(tbs + algorithm + b"\x03\x01\x00")).issuer
    except (ValueError, TypeError) as error:  # TypeError: e.g. a BIT STRING value cryptography refuses
        raise CRLFormatError(f"malformed issuer name: {error}") from None


def _check_name(der: bytes) -> None:
    """Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value }, with sane country and CN values."""
    rdn_pos, end = _expect(der, 0, len(der), _SEQUENCE)
    while rdn_pos < end:
        atv_pos, rdn_end = _expect(der, rdn_pos, end, 0x31)
        if atv_pos == rdn_end:
            raise CRLFormatError("empty relative distinguished name")
        while atv_pos < rdn_end:
            oid_start, atv_end = _expect(der, atv_pos, rdn_end, _SEQUENCE)
            oid_start, oid_end = _expect(der, oid_start, atv_end, _OID)
            value_tag, value_start, value_end = _tlv(der, oid_end, atv_end)
            if value_end != atv_end:
                raise CRLFormatError("malformed name attribute")
            limits = _LENGTH_LIMITED_ATTRIBUTES.get(der[oid_start:oid_end])
            # In these string types the octet count is the UTF-8 length cryptography checks.
            if limits and (
                value_tag not in (_UTF8, _PRINTABLE, _IA5)
                or not limits[0] <= value_end - value_start <= limits[1]
            ):
                raise CRLFormatError("country or common name of the wrong type or length")
            atv_pos = atv_end
        rdn_pos = rdn_end


def _der_sequence(content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return b"\x30" + bytes((size,)) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes((0x80 | len(octets),)) + octets + content
