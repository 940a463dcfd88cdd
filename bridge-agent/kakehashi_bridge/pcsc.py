"""PC/SC through pyscard: readers, card presence, and an APDU transport.

Works with any reader pcscd (Linux, macOS) or WinSCard (Windows) knows; the virtual
card is just one more reader when plugged in through vpcd.
"""

from __future__ import annotations

import time
from typing import Any

from kakehashi_bridge.card import (
    CardError,
    CardRemoved,
    JPKICard,
    NoCard,
    NoReader,
    ReaderGone,
    SharingViolation,
)

SCARD_E_SHARING_VIOLATION = 0x8010000B
SCARD_E_NO_SMARTCARD = 0x8010000C
SCARD_W_REMOVED_CARD = 0x80100069
SCARD_E_READER_UNAVAILABLE = 0x80100017
SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
SCARD_E_UNKNOWN_READER = 0x80100009
SCARD_W_RESET_CARD = 0x80100068
SCARD_E_PROTO_MISMATCH = 0x8010000F
_RESET_BY_OTHERS = (SCARD_W_RESET_CARD, SCARD_E_PROTO_MISMATCH)
SCARD_RESET_CARD = 1  # SCardDisconnect disposition


def reader_names() -> list[str]:
    return [str(r) for r in _readers()]


def _readers() -> list[Any]:
    """pyscard's readers; a PC/SC service that is stopped or missing is NoReader."""
    from smartcard.Exceptions import SmartcardException
    from smartcard.pcsc.PCSCExceptions import BaseSCardException
    from smartcard.System import readers

    # readers() raises from two unrelated hierarchies: BaseSCardException when no PC/SC
    # context can be had (no service), SmartcardException when the service stopped or vanished.
    try:
        return list(readers())
    except (BaseSCardException, SmartcardException) as error:
        if getattr(error, "hresult", None) == SCARD_E_NO_READERS_AVAILABLE:
            return []
        raise NoReader(f"PC/SC is not available (is pcscd running?): {error}") from None


class PCSCTransport:
    """A connection to the card in one reader."""

    def __init__(self, reader_name: str) -> None:
        from smartcard.Exceptions import CardConnectionException, NoCardException

        self.commands = 0
        matches = [r for r in _readers() if str(r) == reader_name]
        if not matches:
            raise ReaderGone(f"reader {reader_name!r} is not connected")
        self.connection = matches[0].createConnection()
        try:
            # On disconnect, reset rather than power the card down: the verified PIN is
            # forgotten just the same, and the next connection skips a power-up.
            self.connection.connect(disposition=SCARD_RESET_CARD)
        except NoCardException:
            raise NoCard(f"no card in {reader_name}") from None
        except CardConnectionException as error:
            raise _translate(error) from None

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        from smartcard.Exceptions import CardConnectionException

        try:
            data, sw1, sw2 = self.connection.transmit(list(apdu))
        except CardConnectionException as error:
            if getattr(error, "hresult", None) not in _RESET_BY_OTHERS or self.commands:
                raise _translate(error) from None
            # Reset (by insertion or another program) before our first command: nothing of
            # ours was lost, so reconnect and go on. Later, a reset means starting over.
            try:
                self.connection.reconnect()
                data, sw1, sw2 = self.connection.transmit(list(apdu))
            except CardConnectionException as again:
                raise _translate(again) from None
        self.commands += 1
        return bytes(data), (sw1 << 8) | sw2

    def begin_transaction(self) -> None:
        """Hold the card for one operation: no other PC/SC program can slip a command in
        between our VERIFY and our signature."""
        from smartcard.scard import SCARD_S_SUCCESS, SCardBeginTransaction

        if SCardBeginTransaction(self._handle()) != SCARD_S_SUCCESS:
            raise SharingViolation("another program is using the card")

    def end_transaction(self) -> None:
        from smartcard.scard import SCARD_RESET_CARD as RESET
        from smartcard.scard import SCardEndTransaction

        SCardEndTransaction(self._handle(), RESET)  # forget the verified PIN at once

    def _handle(self) -> int:
        connection = getattr(self.connection, "component", self.connection)
        return connection.hcard

    def close(self) -> None:
        try:
            self.connection.disconnect()
        except Exception:  # already gone with the card: nothing left to release
            pass


def _translate(error: Exception) -> Exception:
    code = getattr(error, "hresult", None)
    text = str(error)
    if code == SCARD_E_SHARING_VIOLATION or "sharing violation" in text.lower():
        return SharingViolation("another program is using the card")
    if code in (SCARD_W_REMOVED_CARD, SCARD_E_NO_SMARTCARD) or "removed" in text.lower():
        return CardRemoved("the card was removed")
    if code in (SCARD_E_READER_UNAVAILABLE, SCARD_E_UNKNOWN_READER):
        return ReaderGone("the reader was disconnected")
    return CardRemoved(f"the card stopped answering: {text}")


def find_jpki_card(timeout: float = 0.0) -> tuple[str, JPKICard, PCSCTransport]:
    """The first reader holding a JPKI card, recognised by selecting the JPKI AP.

    Waits up to ``timeout`` seconds for one to be inserted.
    """
    deadline = time.monotonic() + timeout
    while True:
        names = reader_names()
        if not names and time.monotonic() >= deadline:
            raise NoReader("no card reader is connected")
        busy: SharingViolation | None = None
        for name in names:
            try:
                transport = PCSCTransport(name)
            except SharingViolation as error:
                busy = error  # a card is there, but another program holds it
                continue
            except (NoCard, ReaderGone):
                continue
            card = JPKICard(transport)
            try:
                card.select_jpki()
            except CardError:  # not a JPKI card, or it went away: try the next reader
                transport.close()
                continue
            return name, card, transport
        if time.monotonic() >= deadline:
            if busy is not None:
                raise busy
            raise NoCard("no My Number Card in any reader")
        time.sleep(0.25)


def wait_for_card(present: bool, timeout: float, reader_name: str | None = None) -> str | None:
    """Block until a card is inserted (``present``) or removed, in ``reader_name`` or in
    any reader; returns the reader's name, or None when ``timeout`` seconds pass first.

    Uses PC/SC's own change notification (SCardGetStatusChange), not polling connects,
    which would power the card up and down.
    """
    from smartcard.scard import (
        SCARD_E_TIMEOUT,
        SCARD_S_SUCCESS,
        SCARD_SCOPE_USER,
        SCARD_STATE_CHANGED,
        SCARD_STATE_PRESENT,
        SCARD_STATE_UNAWARE,
        SCardEstablishContext,
        SCardGetStatusChange,
        SCardListReaders,
        SCardReleaseContext,
    )

    result, context = SCardEstablishContext(SCARD_SCOPE_USER)
    if result != SCARD_S_SUCCESS:
        raise NoReader("PC/SC is not available (is pcscd running?)")
    try:
        _, names = SCardListReaders(context, [])
        names = [n for n in (names or []) if reader_name in (None, n)]
        if not names:
            raise NoReader("no card reader is connected")
        result, states = SCardGetStatusChange(context, 0, [(n, SCARD_STATE_UNAWARE) for n in names])
        deadline = time.monotonic() + timeout
        while True:
            for name, state, _atr in states:
                if bool(state & SCARD_STATE_PRESENT) == present:
                    return name
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            result, changed = SCardGetStatusChange(
                context, int(min(remaining, 1.0) * 1000),
                [(name, state & ~SCARD_STATE_CHANGED) for name, state, _ in states])
            if result == SCARD_S_SUCCESS:
                states = changed
            elif result != SCARD_E_TIMEOUT:
                raise ReaderGone("the reader stopped answering")
    finally:
        SCardReleaseContext(context)
