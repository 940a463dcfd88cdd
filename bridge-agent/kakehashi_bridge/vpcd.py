"""The virtual card plugged into a real pcscd through vsmartcard's vpcd reader driver.

vpcd (Debian ``vsmartcard-vpcd``) listens on TCP 35963 by default. Each message is a
2-byte big-endian length and a payload. A 1-byte payload is a control: 0 power off,
1 power on, 2 reset (no answer), 4 "send the ATR". Anything longer is a command APDU,
answered with the response APDU.
"""

from __future__ import annotations

import socket
import threading

from kakehashi_bridge.virtual_card import ATR, VirtualCard

DEFAULT_PORT = 35963
POWER_OFF, POWER_ON, RESET, GET_ATR = 0, 1, 2, 4


class VpcdConnection:
    def __init__(self, card: VirtualCard, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.card = card
        self.socket = socket.create_connection((host, port), timeout=10)
        self.socket.settimeout(None)
        # vpcd writes a length and then its payload; with Nagle on one side and delayed
        # ACKs on the other every APDU would stall about 40 ms.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._quick_ack()
        self._stopped = threading.Event()

    def serve(self) -> None:
        """Answer vpcd until it goes away or :meth:`stop` is called."""
        try:
            while not self._stopped.is_set():
                message = self._receive()
                if message is None:
                    return
                if len(message) == 1:
                    control = message[0]
                    if control in (POWER_OFF, POWER_ON, RESET):
                        self.card.reset()
                    elif control == GET_ATR:
                        self._send(ATR)
                    continue
                self._send(self.card.process(message))
        except OSError:
            if not self._stopped.is_set():
                raise

    def stop(self) -> None:
        self._stopped.set()
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.socket.close()

    def _receive(self) -> bytes | None:
        header = self._exactly(2)
        if header is None:
            return None
        return self._exactly(int.from_bytes(header, "big"))

    def _exactly(self, count: int) -> bytes | None:
        data = bytearray()
        while len(data) < count:
            chunk = self.socket.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
            self._quick_ack()
        return bytes(data)

    def _quick_ack(self) -> None:
        quick_ack = getattr(socket, "TCP_QUICKACK", None)  # Linux only; re-armed per read
        if quick_ack is not None:
            self.socket.setsockopt(socket.IPPROTO_TCP, quick_ack, 1)

    def _send(self, payload: bytes) -> None:
        self.socket.sendall(len(payload).to_bytes(2, "big") + payload)
