"""``kakehashi-bridge``: run the agent, run a virtual card, or check the reader.

    kakehashi-bridge serve --origin https://login.example.jp [--port 24817]
    kakehashi-bridge serve --origin http://127.0.0.1:5000 --virtual-card card.json [--test-pin]
    kakehashi-bridge virtual-card --card card.json [--vpcd 127.0.0.1:35963]
    kakehashi-bridge selftest
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kakehashi_bridge import __version__
from kakehashi_bridge.agent import FALLBACK_PORTS, Agent, AgentConfig, is_origin
from kakehashi_bridge.card import CardError, InProcessTransport, JPKICard
from kakehashi_bridge.jpki import Kind


def pcsc_opener():  # type: ignore[no-untyped-def]
    from kakehashi_bridge.pcsc import find_jpki_card

    @contextmanager
    def open_card() -> Iterator[JPKICard]:
        _, card, transport = find_jpki_card(timeout=0)
        try:
            transport.begin_transaction()
            try:
                yield card
            finally:
                transport.end_transaction()
        finally:
            transport.close()

    return open_card


def virtual_opener(card_file: Path):  # type: ignore[no-untyped-def]
    from kakehashi_bridge.virtual_card import VirtualCard

    virtual = VirtualCard(card_file)

    @contextmanager
    def open_card() -> Iterator[JPKICard]:
        virtual.reset()  # every operation starts from a fresh power-on
        card = JPKICard(InProcessTransport(virtual))
        card.select_jpki()
        yield card

    return open_card


def card_file_pins(card_file: Path) -> dict[Kind, str]:
    document = json.loads(card_file.read_text())
    pins = {Kind.AUTH: document["auth"]["pin"]}
    if document.get("signature"):
        pins[Kind.SIGNATURE] = document["signature"]["password"]
    return pins


def serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    origins = frozenset(args.origin or ())
    if args.service:
        if not is_origin(args.service.rstrip("/")):
            print(f"error: {args.service!r} is not the service's https origin", file=sys.stderr)
            return 2
        origins |= {args.service.rstrip("/")}
    if not origins:
        print("error: name the allowed sites with --origin or the service with --service", file=sys.stderr)
        return 2
    for origin in origins:
        if not is_origin(origin):
            print(f"error: {origin!r} is not an origin (https://host[:port], or http on loopback)",
                  file=sys.stderr)
            return 2
    if args.test_pin and not args.virtual_card:
        print("error: --test-pin only works with --virtual-card", file=sys.stderr)
        return 2
    opener = virtual_opener(args.virtual_card) if args.virtual_card else pcsc_opener()
    ports = [args.port] if args.port else list(FALLBACK_PORTS)
    for port in ports:
        config = AgentConfig(allowed_origins=origins, port=port, service=args.service,
                             test_pins=card_file_pins(args.virtual_card) if args.test_pin else None)
        agent = Agent(config, opener)
        try:
            server = make_server("127.0.0.1", port, agent, threaded=True)
        except OSError:
            continue
        if args.service:
            agent.keep_origins_fresh()
        print(f"kakehashi-bridge {__version__} on http://127.0.0.1:{port}/ for {', '.join(sorted(origins))}",
              flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        return 0
    print(f"error: none of the ports {ports} is free", file=sys.stderr)
    return 1


def virtual_card(args: argparse.Namespace) -> int:
    from kakehashi_bridge.virtual_card import VirtualCard
    from kakehashi_bridge.vpcd import DEFAULT_PORT, VpcdConnection

    host, _, port = (args.vpcd or f"127.0.0.1:{DEFAULT_PORT}").rpartition(":")
    card = VirtualCard(args.card, apdu_log_file=args.apdu_log)
    print(f"virtual card {args.card} → vpcd {host}:{port}", flush=True)
    while True:
        try:
            connection = VpcdConnection(card, host, int(port))
        except OSError as error:
            print(f"waiting for vpcd at {host}:{port} ({error})", file=sys.stderr, flush=True)
            time.sleep(1)
            continue
        try:
            connection.serve()
        except KeyboardInterrupt:
            connection.stop()
            return 0
        time.sleep(0.5)  # pcscd restarted: plug in again


def selftest(args: argparse.Namespace) -> int:
    from cryptography import x509

    from kakehashi_bridge.pcsc import find_jpki_card, reader_names

    try:
        names = reader_names()
    except CardError as error:
        print(f"readers: {error}")
        return 1
    print("readers:", ", ".join(names) if names else "none (is pcscd running?)")
    try:
        name, card, transport = find_jpki_card(timeout=args.wait)
    except CardError as error:
        print(f"card: {error}")
        return 1
    try:
        print(f"JPKI card in: {name}")
        print(f"card type: {card.card_type()}")
        for kind in Kind:
            print(f"{kind} PIN tries left: {card.tries_left(kind)}")
        certificate = x509.load_der_x509_certificate(card.read_certificate(Kind.AUTH))
        print(f"auth certificate: {certificate.subject.rfc4514_string()} "
              f"(until {certificate.not_valid_after_utc:%Y-%m-%d})")
        for kind in Kind:
            issuer = x509.load_der_x509_certificate(card.read_ca_certificate(kind))
            print(f"{kind} CA on the card: {issuer.subject.rfc4514_string()}")
        print("signature certificate: readable only with the signature password")
    finally:
        transport.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kakehashi-bridge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the agent on 127.0.0.1")
    run.add_argument("--origin", action="append", help="an allowed web origin (repeat)")
    run.add_argument("--service", default=None,
                     help="the Kakehashi service (https origin): allowed, and asked hourly for more origins")
    run.add_argument("--port", type=int, default=None, help=f"default: first free of {FALLBACK_PORTS}")
    run.add_argument("--virtual-card", type=Path, default=None, help="use this sandbox card file in-process")
    run.add_argument("--test-pin", action="store_true", help="virtual card only: PIN from the card file")
    run.set_defaults(handler=serve)
    virtual = commands.add_parser("virtual-card", help="plug a sandbox card file into pcscd via vpcd")
    virtual.add_argument("--card", type=Path, required=True)
    virtual.add_argument("--vpcd", default=None, help="HOST:PORT of vpcd (default 127.0.0.1:35963)")
    virtual.add_argument("--apdu-log", type=Path, default=None, help="append every APDU received (hex)")
    virtual.set_defaults(handler=virtual_card)
    check = commands.add_parser("selftest", help="print readers, card type and certificate")
    check.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a card")
    check.set_defaults(handler=selftest)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
