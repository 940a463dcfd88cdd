"""The outbox and webhook delivery: events commit with their change, are signed, retried
with backoff, dead-lettered, delivered in order per subject, and survive Redis going away
and a worker dying mid-delivery (real Redis, real rq workers, a real HTTP receiver)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, func, select, text

from saas import ROOT, clock, db, jobs
from saas.db import all_tenants, tenant_scope
from saas.events import relay, services, signatures
from saas.events.models import Delivery, DeliveryAttempt, DeliveryStatus, Event
from saas.tenants import services as tenants
from tests.conftest import SECRET, make_app

KEK = base64.b64encode(b"e" * 32).decode()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on loopback; ``answer`` decides each response's status."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    answer: Callable[[Received], int] = lambda _: 200
    server: Any = None

    def keys(self) -> list[str]:
        return [r.headers["Idempotency-Key"] for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got = Received(dict(self.headers.items()), body)
            state.received.append(got)
            status = state.answer(got)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # a worker posts 16 at once; the default backlog of 5 drops connections

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url, state.server = f"http://127.0.0.1:{server.server_port}/hooks", server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def app(committed_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(committed_url, tmp_path, KEY_ENCRYPTION_KEY=KEK, WEBHOOK_MAX_ATTEMPTS=3,
                           WEBHOOK_RETRY_BASE_SECONDS=10)
    with application.app_context():
        tenants.create_tenant(slug="bank", display_name="かけはし銀行", kind="bank")
        tenants.create_tenant(slug="clinic", display_name="かけはし医院", kind="hospital")
        db.session.commit()
    yield application
    db.get_database(application).engine.dispose()


def add_endpoint(app: Flask, url: str, types: tuple[str, ...] = ("*",), slug: str = "bank") -> tuple[str, str]:
    with app.app_context():
        tenant = tenants.active_tenant(slug)
        with tenant_scope(db.session, tenant.id):
            endpoint, secret = services.create_endpoint(tenant, url=url, event_types=types)
            public_id = endpoint.public_id
        db.session.commit()
    return public_id, secret


def emit(app: Flask, type: str = "oidc.session.ended", subject: str = "sub:a", slug: str = "bank",
         **data: Any) -> str:
    with app.app_context():
        tenant = tenants.active_tenant(slug)
        with tenant_scope(db.session, tenant.id):
            event_id = services.emit(tenant, type, subject, data or {"sub": subject})
        db.session.commit()
    return event_id


def deliveries(app: Flask) -> list[Delivery]:
    with app.app_context(), all_tenants(db.session):
        rows = list(db.session.scalars(select(Delivery).order_by(Delivery.id)))
        db.session.expunge_all()
        return rows


def relay_and_deliver(app: Flask) -> dict[str, int]:
    """One pass of the relay and of a worker, in-process and in order."""
    with app.app_context():
        relay.fan_out()
        token, ids = relay.claim()
        db.session.commit()
        if not ids:
            return {"succeeded": 0, "failed": 0}
        outcome = relay.deliver(token, ids)
        db.session.commit()
        return outcome


# -- the outbox ------------------------------------------------------------------------------

def test_an_event_commits_with_its_change_and_only_to_subscribed_endpoints(app: Flask, receiver: Receiver) -> None:
    add_endpoint(app, receiver.url, ("oidc.session.ended",))
    add_endpoint(app, receiver.url + "/keys", ("oidc.signing_key.rotated",))
    add_endpoint(app, receiver.url + "/clinic", ("*",), slug="clinic")
    emit(app)
    assert deliveries(app) == []  # fanned out by the relay, after the commit
    with app.app_context():
        assert relay.fan_out() == 1
        db.session.commit()
    assert len(deliveries(app)) == 1  # the subscribed endpoint of this tenant only
    with app.app_context():
        tenant = tenants.active_tenant("bank")
        with tenant_scope(db.session, tenant.id):
            services.emit(tenant, "oidc.session.ended", "sub:b", {"sub": "b"})
        db.session.rollback()  # the change did not happen: neither did its event
        with all_tenants(db.session):
            assert db.session.scalar(select(func.count()).select_from(Event)) == 1
        assert relay.fan_out() == 0
    assert len(deliveries(app)) == 1


def test_a_delivery_is_signed_and_carries_the_event_id_as_idempotency_key(app: Flask, receiver: Receiver) -> None:
    _, secret = add_endpoint(app, receiver.url)
    event_id = emit(app, sub="sub-1")
    assert relay_and_deliver(app) == {"succeeded": 1, "failed": 0}
    [got] = receiver.received
    assert signatures.verify(got.body, got.headers[signatures.HEADER], secret)
    assert got.headers["Idempotency-Key"] == event_id == got.headers["Kakehashi-Event-Id"]
    body = json.loads(got.body)
    assert body["id"] == event_id and body["type"] == "oidc.session.ended" and body["mode"] == "sandbox"
    assert body["data"] == {"sub": "sub-1"}
    with pytest.raises(signatures.SignatureError):
        signatures.verify(got.body, got.headers[signatures.HEADER], "whsec_wrong")
    with pytest.raises(signatures.SignatureError):
        signatures.verify(got.body + b" ", got.headers[signatures.HEADER], secret)
    with pytest.raises(signatures.SignatureError):  # a replay long after
        signatures.verify(got.body, got.headers[signatures.HEADER], secret, now=int(time.time()) + 3600)
    [delivery] = deliveries(app)
    assert delivery.status is DeliveryStatus.SUCCEEDED and delivery.last_status_code == 200


def test_after_a_secret_rotation_both_secrets_verify_for_a_day(app: Flask, receiver: Receiver) -> None:
    endpoint_id, old = add_endpoint(app, receiver.url)
    with app.app_context():
        tenant = tenants.active_tenant("bank")
        with tenant_scope(db.session, tenant.id):
            new = services.rotate_secret(tenant, services.get_endpoint(endpoint_id))
        db.session.commit()
    emit(app)
    relay_and_deliver(app)
    got = receiver.received[-1]
    for secret in (old, new):
        signatures.verify(got.body, got.headers[signatures.HEADER], secret)
    with clock.frozen(clock.now() + timedelta(hours=25)):
        emit(app, subject="sub:later")
        relay_and_deliver(app)
    got = receiver.received[-1]
    signatures.verify(got.body, got.headers[signatures.HEADER], new)
    with pytest.raises(signatures.SignatureError):
        signatures.verify(got.body, got.headers[signatures.HEADER], old)


# -- retries, dead letters, order ----------------------------------------------------------------

def test_a_failing_receiver_is_retried_with_backoff_then_dead_lettered_and_redelivered_by_hand(
        app: Flask, receiver: Receiver) -> None:
    receiver.answer = lambda _: 500
    add_endpoint(app, receiver.url)
    emit(app)
    with clock.frozen(clock.now()) as frozen:
        assert relay_and_deliver(app) == {"succeeded": 0, "failed": 1}
        [delivery] = deliveries(app)
        wait = delivery.next_attempt_at - clock.now()
        assert timedelta(seconds=5) <= wait <= timedelta(seconds=10)  # base 10 s, jitter over the upper half
        assert relay_and_deliver(app)["failed"] == 0  # not due yet
        frozen.tick(timedelta(seconds=11))
        assert relay_and_deliver(app)["failed"] == 1
        [delivery] = deliveries(app)
        assert timedelta(seconds=10) <= delivery.next_attempt_at - clock.now() <= timedelta(seconds=20)
        frozen.tick(timedelta(seconds=21))
        assert relay_and_deliver(app)["failed"] == 1
        [delivery] = deliveries(app)
        assert delivery.status is DeliveryStatus.DEAD and delivery.attempts == 3
        assert delivery.last_status_code == 500 and delivery.last_error == "HTTP 500"
        frozen.tick(timedelta(days=1))
        assert relay_and_deliver(app)["failed"] == 0  # dead stays dead
    assert len(receiver.received) == 3 and len(set(receiver.keys())) == 1
    with app.app_context(), all_tenants(db.session):
        assert db.session.scalar(select(func.count()).select_from(DeliveryAttempt)) == 3

    receiver.answer = lambda _: 204
    with app.app_context():
        with tenant_scope(db.session, tenants.active_tenant("bank").id):
            services.redeliver(db.session.get(Delivery, delivery.id))
        db.session.commit()
    assert relay_and_deliver(app) == {"succeeded": 1, "failed": 0}
    assert deliveries(app)[0].status is DeliveryStatus.SUCCEEDED and len(set(receiver.keys())) == 1


def test_only_the_relays_bookkeeping_commits_without_waiting_for_the_disk(app: Flask, receiver: Receiver) -> None:
    """The fan-out, the claim and the record of attempts may be lost in a crash: they are
    repeated, and the receiver dedupes on the event id. An event itself may not: its
    producer's commit waits for the disk, and the setting never outlives a transaction."""
    add_endpoint(app, receiver.url)
    engine = db.get_database(app).engine
    lagging: list[str] = []

    def seen(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SET LOCAL synchronous_commit"):
            lagging.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        emit(app, subject="sub:lag")
        after_emit = list(lagging)
        with app.app_context():
            relay.fan_out()
            db.session.commit()
            token, ids = relay.claim()
            db.session.commit()
            outcome = relay.deliver(token, ids)
            db.session.commit()
            setting = db.session.execute(text("SHOW synchronous_commit")).scalar() \
                if engine.dialect.name == "postgresql" else "on"
            db.session.commit()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert outcome == {"succeeded": 1, "failed": 0} and len(receiver.received) == 1
    assert after_emit == []
    assert lagging == (["SET LOCAL synchronous_commit = off"] * 3 if engine.dialect.name == "postgresql" else [])
    assert setting == "on"


def test_deliveries_of_one_subject_arrive_in_order(app: Flask, receiver: Receiver) -> None:
    failing = {"first": True}

    def answer(got: Received) -> int:
        if json.loads(got.body)["data"].get("n") == 1 and failing["first"]:
            return 503
        return 200

    receiver.answer = answer
    add_endpoint(app, receiver.url)
    emit(app, subject="sub:a", n=1)
    emit(app, subject="sub:a", n=2)
    emit(app, subject="sub:b", n=3)
    assert relay_and_deliver(app) == {"succeeded": 1, "failed": 1}  # n=1 failed, n=3 went; n=2 waits
    assert sorted(json.loads(r.body)["data"]["n"] for r in receiver.received) == [1, 3]
    failing["first"] = False
    with clock.frozen(clock.now() + timedelta(minutes=1)):
        relay_and_deliver(app)  # n=1 now
        relay_and_deliver(app)  # then n=2
    order = [json.loads(r.body)["data"]["n"] for r in receiver.received if json.loads(r.body)["subject"] == "sub:a"]
    assert order == [1, 1, 2]


def test_a_claim_reads_past_deliveries_held_up_by_their_subject(app: Flask, receiver: Receiver,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # A claim reads due deliveries a page at a time; whole pages of deliveries held up
    # behind a failing one of their subject must not hide the others (nor, once it is
    # due again, the failing one itself).
    monkeypatch.setattr(relay, "CLAIM_PAGE", 2)
    add_endpoint(app, receiver.url)
    failing = {"first": True}

    def fail_first(got: Received) -> int:
        if failing["first"]:
            failing["first"] = False
            return 500
        return 200

    receiver.answer = fail_first
    emit(app, subject="sub:a", n=1)
    assert relay_and_deliver(app) == {"succeeded": 0, "failed": 1}  # n=1 waits for its retry
    for n in range(2, 7):
        emit(app, subject="sub:a", n=n)  # due now, held up behind n=1: three pages of them
    emit(app, subject="sub:b", n=7)
    assert relay_and_deliver(app) == {"succeeded": 1, "failed": 0}
    assert [json.loads(r.body)["data"]["n"] for r in receiver.received] == [1, 7]
    with clock.frozen(clock.now() + timedelta(minutes=1)):  # n=1 is due again, after all of them
        for _ in range(6):
            relay_and_deliver(app)
    assert [json.loads(r.body)["data"]["n"] for r in receiver.received] == [1, 7, 1, 2, 3, 4, 5, 6]


def test_the_embedded_relay_delivers_from_its_own_thread(app: Flask, receiver: Receiver) -> None:
    # Without Redis (make demo), the web process relays and posts on its own threads.
    assert isinstance(jobs.runner(app), jobs.InProcessRunner)
    add_endpoint(app, receiver.url)
    stop = relay.start_in_process(app)
    try:
        event_id = emit(app)
        deadline = time.monotonic() + 20
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
    assert receiver.keys() == [event_id]
    deadline = time.monotonic() + 10
    while deliveries(app)[0].status is not DeliveryStatus.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert deliveries(app)[0].status is DeliveryStatus.SUCCEEDED


def test_the_relay_pauses_less_the_fuller_its_last_pass_and_backs_off_after_failures(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    passes: list[Any] = [1000, 900, 500, 0, RuntimeError("database away"), RuntimeError("still away"), 0]
    waits: list[float] = []

    class Stop:
        def is_set(self) -> bool:
            return not passes

        def wait(self, seconds: float) -> None:
            waits.append(round(seconds, 3))

    def relay_once(limit: int) -> int:
        outcome = passes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(relay, "relay_once", relay_once)
    relay.run(app, Stop(), idle=0.5, limit=1000)  # type: ignore[arg-type]
    # a full pass goes on at once; then 900, 500 and 0 of 1,000; two failures; a quiet pass
    assert waits == [0.05, 0.25, 0.5, 1.0, 2.0, 0.5]


def test_a_lease_that_ran_out_is_claimed_again_and_the_old_claim_delivers_nothing(
        app: Flask, receiver: Receiver) -> None:
    add_endpoint(app, receiver.url)
    emit(app)
    with app.app_context():
        relay.fan_out()
        stale_token, ids = relay.claim()  # a worker took it and died
        db.session.commit()
        _, again = relay.claim()
        assert again == []  # leased: nobody else takes it
        db.session.commit()
    with clock.frozen(clock.now() + timedelta(seconds=61)):
        assert relay_and_deliver(app) == {"succeeded": 1, "failed": 0}
    with app.app_context():
        assert relay.deliver(stale_token, ids) == {"succeeded": 0, "failed": 0}
        db.session.commit()
    assert len(receiver.received) == 1


def test_private_addresses_are_refused_unless_configured(committed_url: str, tmp_path: Path,
                                                         receiver: Receiver) -> None:
    app = make_app(committed_url, tmp_path, KEY_ENCRYPTION_KEY=KEK, WEBHOOK_ALLOW_PRIVATE_NETWORKS=False)
    with app.app_context():
        tenant = tenants.create_tenant(slug="bank", display_name="かけはし銀行", kind="bank")
        db.session.commit()
        with tenant_scope(db.session, tenant.id), pytest.raises(services.WebhookError) as refused:
            services.create_endpoint(tenant, url="http://10.0.0.8/hook", event_types=["*"])
        assert refused.value.code == "invalid_url"
        db.session.rollback()
    app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = True  # registered while allowed…
    add_endpoint(app, receiver.url.replace("127.0.0.1", "localhost"))
    app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = False  # …and refused when it is posted
    emit(app)
    assert relay_and_deliver(app) == {"succeeded": 0, "failed": 1}
    assert receiver.received == []
    assert "non-public address" in (deliveries(app)[0].last_error or "")
    db.get_database(app).engine.dispose()


def test_a_host_is_resolved_once_and_the_checked_address_is_the_one_connected(
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: a name that answers a public address to the check and a private one
    # to the connection. The relay connects to the address it checked, so the second
    # answer never matters; a name with any private answer is refused without a connection.
    port = int(receiver.url.rsplit(":", 1)[1].split("/", 1)[0])
    real = socket.getaddrinfo
    asked: list[str] = []

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("hook.test", "mixed.test"):
            asked.append(host)
            loopback = real("127.0.0.1", port, type=socket.SOCK_STREAM)
            public = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]
            return public + loopback if host == "mixed.test" else loopback
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    item = relay.Outgoing(1, 1, f"http://hook.test:{port}/hook", b"{}", {"Idempotency-Key": "evt_1"})
    assert relay.post(item, allow_private=True, timeout=2).status_code == 200
    assert asked == ["hook.test"]  # one answer, and the connection went to it
    assert receiver.received[0].headers["Host"] == f"hook.test:{port}"
    refused = relay.post(relay.Outgoing(2, 1, f"http://mixed.test:{port}/hook", b"{}", {}),
                         allow_private=False, timeout=2)
    assert refused.status_code is None and refused.error == "mixed.test resolves to a non-public address"
    assert len(receiver.received) == 1
    gone = relay.post(relay.Outgoing(3, 1, "http://127.0.0.1:1/hook", b"{}", {}), allow_private=True, timeout=2)
    assert gone.error == "connection refused"  # the kind of failure, not the network's details


class _Raw:
    """A TCP server that answers each connection with ``handle`` (a bad receiver)."""

    def __init__(self, handle: Callable[[socket.socket], None], wrap: Any = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handle, self.wrap = handle, wrap
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            try:
                self.handle(self.wrap(connection) if self.wrap else connection)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def _respond(body: bytes) -> Callable[[socket.socket], None]:
    def handle(connection: socket.socket) -> None:
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        connection.close()

    return handle


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = clock.now()
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    cert, private = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, private


def test_a_failed_post_tells_the_kind_of_failure(tmp_path: Path) -> None:
    import ssl

    def post(port: int, scheme: str = "http", timeout: float = 2) -> relay.Outcome:
        return relay.post(relay.Outgoing(1, 1, f"{scheme}://127.0.0.1:{port}/hook", b"{}", {}),
                          allow_private=True, timeout=timeout)

    silent = _Raw(lambda connection: time.sleep(3))
    hang_up = _Raw(lambda connection: (connection.recv(65536), connection.close()))
    garbage = _Raw(lambda connection: (connection.recv(65536), connection.sendall(b"SMTP ready\r\n\r\n"),
                                       connection.close()))
    long_body = _Raw(_respond(b"x" * (3 * relay.RESPONSE_READ_LIMIT)))
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    untrusted = _Raw(_respond(b"ok"), wrap=lambda connection: context.wrap_socket(connection, server_side=True))
    try:
        assert post(silent.port, timeout=0.5).error == "timed out"
        assert post(hang_up.port).error == "the connection closed without a valid HTTP response"
        assert post(garbage.port).error == "the connection closed without a valid HTTP response"
        cut_short = post(long_body.port)  # a 200 with a long body: read as far as needed, then left
        assert (cut_short.status_code, cut_short.error, cut_short.succeeded) == (200, None, True)
        refused = post(untrusted.port, scheme="https")
        assert refused.status_code is None and (refused.error or "").startswith("TLS certificate not accepted: ")
        unknown = relay.post(relay.Outgoing(1, 1, "http://no-such-host.invalid/hook", b"{}", {}),
                             allow_private=True, timeout=2)
        assert unknown.error == "the host name could not be resolved"
    finally:
        for server in (silent, hang_up, garbage, long_body, untrusted):
            server.close()


def test_each_outcome_of_many_posts_keeps_its_place(receiver: Receiver) -> None:
    items = [relay.Outgoing(n, 1, receiver.url if n % 3 else "http://127.0.0.1:1/hook",
                            json.dumps({"n": n}).encode(), {"Idempotency-Key": f"evt_{n}"}) for n in range(40)]
    outcomes = relay.post_all(items, allow_private=True, timeout=2, concurrency=4)
    assert [outcome.succeeded for outcome in outcomes] == [bool(n % 3) for n in range(40)]
    assert {outcome.error for n, outcome in enumerate(outcomes) if not n % 3} == {"connection refused"}
    assert sorted(json.loads(r.body)["n"] for r in receiver.received) == [n for n in range(40) if n % 3]


def test_what_cannot_be_posted_is_an_outcome_and_the_rest_goes_out(receiver: Receiver) -> None:
    # Endpoints registered before today's URL rules, or a stream's header: never an
    # exception that would leave the whole batch unrecorded.
    items = [relay.Outgoing(1, 1, "http://127.0.0.1:99999/hook", b"{}", {}),
             relay.Outgoing(2, 1, receiver.url + "/ü", b"{}", {}),
             relay.Outgoing(3, 1, receiver.url, b"{}", {"Authorization": "Bearer x\r\nX-Injected: 1"}),
             relay.Outgoing(4, 1, "http://example..com/hook", b"{}", {}),
             relay.Outgoing(5, 1, receiver.url, b"{}", {"Idempotency-Key": "evt_5"}),
             relay.Outgoing(6, 1, receiver.url, b"{}", {"X-Name: injected": "1"}),
             relay.Outgoing(7, 1, receiver.url, b"{}", {"X-Name\nX-Injected": "1"})]
    outcomes = relay.post_all(items, allow_private=True, timeout=2)
    assert [outcome.error for outcome in outcomes] == [
        "the URL is not valid", "the URL is not valid", "a header is not valid",
        "the host name could not be resolved", None, "a header is not valid", "a header is not valid"]
    assert [r.headers.get("Idempotency-Key") for r in receiver.received] == ["evt_5"]


def test_a_slow_host_name_lookup_holds_up_no_other_host(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow.test":
            time.sleep(3)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    began = time.monotonic()
    slow, fast = relay.post_all([relay.Outgoing(1, 1, "http://slow.test/hook", b"{}", {}),
                                 relay.Outgoing(2, 1, receiver.url, b"{}", {})], allow_private=True, timeout=0.5)
    assert time.monotonic() - began < 2
    assert slow.error == "the host name lookup timed out" and fast.succeeded


def test_a_socket_to_an_address_that_was_not_checked_is_never_opened() -> None:
    # CURLOPT_RESOLVE pins libcurl to the checked addresses; the socket guard is the
    # second lock: an address outside them gets no socket, and the failure says why.
    response = relay._Response()
    guard = relay._guard(frozenset({"93.184.216.34"}), response)
    address = type("Address", (), {"family": socket.AF_INET, "socktype": socket.SOCK_STREAM, "protocol": 6,
                                    "addr": ("10.0.0.8", 443)})()
    assert guard(0, address) == relay.pycurl.SOCKET_BAD and response.refused


@pytest.mark.parametrize(("url", "types", "code"), [
    ("ftp://example.com/hook", ["*"], "invalid_url"),
    ("https://user:pw@example.com/hook", ["*"], "invalid_url"),
    ("https://example.com/hook#x", ["*"], "invalid_url"),
    ("https://example.com/" + "a" * 600, ["*"], "invalid_url"),
    ("https://example.com:99999/hook", ["*"], "invalid_url"),
    ("https://example.com:port/hook", ["*"], "invalid_url"),
    ("https://例え.jp/hook", ["*"], "invalid_url"),  # xn--r8jz45g.jp is fine
    ("https://example..com/hook", ["*"], "invalid_url"),
    ("https://example.com/hook", [], "invalid_event_types"),
    ("https://example.com/hook", ["oidc.nothing"], "invalid_event_types"),
])
def test_bad_endpoints_are_refused_with_a_code(app: Flask, url: str, types: list[str], code: str) -> None:
    with app.app_context():
        tenant = tenants.active_tenant("bank")
        with tenant_scope(db.session, tenant.id), pytest.raises(services.WebhookError) as refused:
            services.create_endpoint(tenant, url=url, event_types=types)
        assert refused.value.code == code


def test_a_url_with_spaces_or_control_characters_is_refused(app: Flask) -> None:
    # urlsplit drops tabs and newlines without a word: the URL checked would not be the one stored.
    with app.app_context():
        tenant = tenants.active_tenant("bank")
        with tenant_scope(db.session, tenant.id):
            for character in ("\t", "\r", "\n", "\x00", "\x1f", " ", "\x7f"):
                with pytest.raises(services.WebhookError) as refused:
                    services.create_endpoint(tenant, url=f"https://exam{character}ple.com/h", event_types=["*"])
                assert refused.value.code == "invalid_url" and refused.value.field == "url", repr(character)


def test_another_tenants_endpoint_is_not_found(app: Flask, receiver: Receiver) -> None:
    endpoint_id, _ = add_endpoint(app, receiver.url, slug="clinic")
    with app.app_context():
        with tenant_scope(db.session, tenants.active_tenant("bank").id), pytest.raises(services.NotFound):
            services.get_endpoint(endpoint_id)


def test_oidc_revocations_and_key_rotations_are_events(app: Flask, receiver: Receiver) -> None:
    from saas.oidc import keys

    add_endpoint(app, receiver.url)
    with app.app_context():
        tenant = tenants.active_tenant("bank")
        with tenant_scope(db.session, tenant.id):
            keys.ensure_keys(tenant)
            keys.rotate(tenant, "ES256")
        db.session.commit()
    relay_and_deliver(app)
    [got] = receiver.received
    body = json.loads(got.body)
    assert body["type"] == "oidc.signing_key.rotated" and body["data"]["alg"] == "ES256"


# -- with the real Redis and real rq workers -------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_redis(port: int) -> subprocess.Popen[bytes]:
    from redis import Redis

    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            Redis(port=port, socket_connect_timeout=0.2).ping()
            return process
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.05)
    process.kill()
    raise AssertionError("redis-server did not start")


def worker_env(url: str, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "JOB_QUEUE_PREFIX": prefix,
            "SECRET_KEY": SECRET, "KEY_ENCRYPTION_KEY": KEK, "KAKEHASHI_ENV": "development",
            "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING", **extra}


def run_worker_burst(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "saas.cli", "worker", "--burst", "--queue", "webhooks"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.redis
def test_redis_stopped_while_events_are_produced_loses_nothing(committed_url: str, tmp_path: Path,
                                                              receiver: Receiver, redis_url: str) -> None:
    port = free_port()
    private_redis = f"redis://127.0.0.1:{port}/0"
    server = start_redis(port)
    prefix = f"kktest-{secrets.token_hex(4)}-"
    app = make_app(committed_url, tmp_path, KEY_ENCRYPTION_KEY=KEK, REDIS_URL=private_redis,
                   JOB_QUEUE_PREFIX=prefix)
    assert isinstance(jobs.runner(app), jobs.RqRunner)
    with app.app_context():
        tenants.create_tenant(slug="bank", display_name="かけはし銀行", kind="bank")
        db.session.commit()
    add_endpoint(app, receiver.url)
    try:
        server.terminate()
        server.wait(10)
        produced = [emit(app, subject=f"sub:{n}") for n in range(25)]  # Redis is down
        with app.app_context():
            assert relay.relay_once() == 0  # could not queue: released, still pending
        assert all(d.status is DeliveryStatus.PENDING and d.leased_until is None for d in deliveries(app))
        server = start_redis(port)  # back
        with app.app_context():
            assert relay.relay_once() == 25
        run_worker_burst(worker_env(committed_url, private_redis, prefix))
    finally:
        server.kill()
        server.wait(10)
    assert sorted(receiver.keys()) == sorted(produced)
    assert all(d.status is DeliveryStatus.SUCCEEDED for d in deliveries(app))
    db.get_database(app).engine.dispose()


@pytest.mark.redis
def test_a_worker_killed_mid_delivery_means_the_event_is_delivered_again_with_the_same_key(
        committed_url: str, tmp_path: Path, receiver: Receiver, redis_url: str) -> None:
    prefix = f"kktest-{secrets.token_hex(4)}-"
    app = make_app(committed_url, tmp_path, KEY_ENCRYPTION_KEY=KEK, REDIS_URL=redis_url,
                   JOB_QUEUE_PREFIX=prefix, WEBHOOK_LEASE_SECONDS=2)
    with app.app_context():
        tenants.create_tenant(slug="bank", display_name="かけはし銀行", kind="bank")
        db.session.commit()
    add_endpoint(app, receiver.url)
    arrived = threading.Event()

    def hang_first(got: Received) -> int:
        if len(receiver.received) == 1:
            arrived.set()
            time.sleep(20)  # the worker is killed while it waits for this answer
        return 200

    receiver.answer = hang_first
    event_id = emit(app)
    with app.app_context():
        assert relay.relay_once() == 1
    env = worker_env(committed_url, redis_url, prefix, WEBHOOK_LEASE_SECONDS="2")
    worker = subprocess.Popen([sys.executable, "-m", "saas.cli", "worker", "--queue", "webhooks"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        assert arrived.wait(60), "the worker never posted"
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its work horse
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    [delivery] = deliveries(app)
    assert delivery.status is DeliveryStatus.PENDING and delivery.attempts == 0
    time.sleep(2.2)  # the lease runs out
    with app.app_context():
        assert relay.relay_once() == 1
    run_worker_burst(env)
    assert receiver.keys() == [event_id, event_id]
    assert receiver.received[0].body == receiver.received[1].body
    [delivery] = deliveries(app)
    assert delivery.status is DeliveryStatus.SUCCEEDED and delivery.attempts == 1
    from rq import Queue

    Queue(prefix + "webhooks", connection=jobs.runner(app).connection).delete(delete_jobs=True)
    db.get_database(app).engine.dispose()


def test_an_endpoint_turned_off_holds_its_events_until_it_is_on_again(app: Flask, receiver: Receiver) -> None:
    endpoint_id, _ = add_endpoint(app, receiver.url)
    with app.app_context():
        with tenant_scope(db.session, tenants.active_tenant("bank").id):
            services.update_endpoint(services.get_endpoint(endpoint_id), enabled=False)
        db.session.commit()
    held = emit(app)
    assert relay_and_deliver(app) == {"succeeded": 0, "failed": 0} and receiver.received == []
    with app.app_context():
        with tenant_scope(db.session, tenants.active_tenant("bank").id):
            services.update_endpoint(services.get_endpoint(endpoint_id), enabled=True)
        db.session.commit()
    assert relay_and_deliver(app) == {"succeeded": 1, "failed": 0}
    assert receiver.keys() == [held]


def test_purge_forgets_old_finished_events_and_keeps_what_still_waits(app: Flask, receiver: Receiver) -> None:
    add_endpoint(app, receiver.url)
    emit(app, subject="sub:done")
    relay_and_deliver(app)
    start = clock.now()
    with clock.frozen(start + timedelta(days=1, seconds=5)):
        emit(app, subject="sub:recent")  # delivered, and 5 s short of old enough when purged below
        relay_and_deliver(app)
    receiver.answer = lambda _: 500
    emit(app, subject="sub:waiting")
    relay_and_deliver(app)  # failed once: still pending
    with app.app_context():
        assert relay.purge(older_than=timedelta(days=30)) == 0  # nothing is old yet
        db.session.commit()
    with clock.frozen(start + timedelta(days=31)), app.app_context():
        assert relay.purge(older_than=timedelta(days=30)) == 1  # the delivered one
        db.session.commit()
        with all_tenants(db.session):
            assert sorted(db.session.scalars(select(Event.subject))) == ["sub:recent", "sub:waiting"]
            assert db.session.scalar(select(func.count()).select_from(DeliveryAttempt)) == 2
    result = app.test_cli_runner().invoke(args=["events", "purge", "--days", "30"])
    assert result.exit_code == 0 and "events deleted: 0" in result.output
