"""The bridge agent: a loopback HTTP server between a web page and the card reader.

Rules it never bends (shared DESIGN.md):

- it listens on 127.0.0.1 only, and answers only requests whose ``Host`` is exactly
  ``127.0.0.1:<port>`` or ``localhost:<port>`` (a DNS-rebinding page gets nothing);
- it serves only the origins it was configured with, taken from the ``Origin`` header,
  compared exactly; there is no wildcard CORS;
- it offers high-level operations only: status, authenticate (a ``web-eid:1.0`` token
  over the page's origin and challenge), sign (a SHA-256 digest, with the text shown to
  the person); no APDU pass-through, no signing of raw hashes with the auth key;
- the PIN is typed into the agent's own consent page (its own origin, opened by the web
  page as a pop-up), which says which site asks and what for; the web page never sees it;
- one operation is pending at a time (a second gets 409).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
import threading
import time
import unicodedata
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from kakehashi_bridge import __version__
from kakehashi_bridge.card import CardError, FileNotFound, InvalidPinFormat, JPKICard, PinBlocked, WrongPin
from kakehashi_bridge.jpki import Kind
from kakehashi_bridge.ui import render_consent, render_result

DEFAULT_PORT = 24817
FALLBACK_PORTS = (24817, 24818, 24819)  # the login page tries these in order
MAX_REQUEST = 16 * 1024
OPERATION_LIFETIME = 300  # seconds: the server's challenge lives five minutes too
MAX_TEXT = 2000
APP_VERSION_URL = f"https://kakehashi.example/bridge-agent/{__version__}"

log = logging.getLogger("kakehashi.bridge")

CardOpener = Callable[[], Any]  # returns a context manager yielding a JPKICard


@dataclass
class Operation:
    id: str
    kind: str  # authenticate | sign
    origin: str
    challenge: str | None = None
    digest: bytes | None = None
    text: str | None = None
    form_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    status: str = "awaiting_consent"  # → done | failed | cancelled
    result: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.monotonic)


@dataclass
class AgentConfig:
    allowed_origins: frozenset[str]
    port: int = DEFAULT_PORT
    test_pins: dict[Kind, str] | None = None  # virtual card only: PINs from configuration
    service: str | None = None  # the Kakehashi service whose /bridge/origins extends the list


def is_origin(value: str) -> bool:
    """``https://host[:port]``, or plain http on loopback only; nothing after the host."""
    parts = urlsplit(value)
    if parts.path or parts.query or parts.fragment or parts.username or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")


class Agent:
    """The WSGI application of the agent."""

    def __init__(self, config: AgentConfig, open_card: CardOpener) -> None:
        self.config = config
        self.origins = set(config.allowed_origins)
        self.open_card = open_card
        self.hosts = {f"127.0.0.1:{config.port}", f"localhost:{config.port}"}
        self.own_origins = {f"http://{host}" for host in self.hosts}
        self._operations: dict[str, Operation] = {}
        self._lock = threading.Lock()
        self._card_lock = threading.Lock()

    # -- WSGI ---------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        request.max_content_length = MAX_REQUEST
        try:
            response = self.dispatch(request)
        except HTTPException as error:
            response = _json({"error": error.name.lower().replace(" ", "_")}, error.code or 500)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if request.host not in self.hosts:
            return _json({"error": "wrong_host"}, 421)  # DNS rebinding and other strangers
        path = request.path.rstrip("/") or "/"
        if path.startswith("/consent/"):
            return self._consent(request, path.removeprefix("/consent/"))
        if path == "/static/consent.js":
            return _static("consent.js", "text/javascript")
        if path == "/static/consent.css":
            return _static("consent.css", "text/css")
        origin = request.headers.get("Origin")
        if origin is None or origin not in self.origins:
            return _json({"error": "origin_not_allowed"}, 403)  # and no CORS headers
        if request.method == "OPTIONS":
            response = Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
            if request.headers.get("Access-Control-Request-Private-Network") == "true":
                response.headers["Access-Control-Allow-Private-Network"] = "true"
            return self._cors(response, origin)
        routes: dict[tuple[str, str], Callable[[Request, str], Response]] = {
            ("GET", "/version"): self._version,
            ("GET", "/status"): self._status,
            ("POST", "/operations"): self._create,
        }
        handler = routes.get((request.method, path))
        if handler is None and request.method == "GET" and path.startswith("/operations/"):
            return self._cors(self._poll(path.removeprefix("/operations/"), origin), origin)
        if handler is None and request.method == "DELETE" and path.startswith("/operations/"):
            return self._cors(self._cancel(path.removeprefix("/operations/"), origin), origin)
        if handler is None:
            return self._cors(_json({"error": "not_found"}, 404), origin)
        return self._cors(handler(request, origin), origin)

    def _cors(self, response: Response, origin: str) -> Response:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        return response

    # -- origins from the service ---------------------------------------------------------

    def refresh_origins(self, fetch: Callable[[str], bytes] | None = None) -> bool:
        """Replace the service's extra origins with what it lists now; keep them on failure."""
        if self.config.service is None:
            return False
        url = self.config.service.rstrip("/") + "/bridge/origins"
        try:
            body = json.loads((fetch or _fetch)(url))
            listed = {o for o in body["origins"] if isinstance(o, str) and is_origin(o)}
        except (OSError, ValueError, KeyError, TypeError):
            return False
        self.origins = set(self.config.allowed_origins) | listed
        return True

    def keep_origins_fresh(self, every: float = 3600.0) -> threading.Thread:
        def loop() -> None:
            while True:
                self.refresh_origins()
                time.sleep(every)

        thread = threading.Thread(target=loop, name="origins", daemon=True)
        thread.start()
        return thread

    # -- API ------------------------------------------------------------------------------

    def _version(self, request: Request, origin: str) -> Response:
        return _json({"name": "kakehashi-bridge", "version": __version__, "protocol": 1})

    def _status(self, request: Request, origin: str) -> Response:
        try:
            with self._card() as card:
                tries: dict[str, int | None] = {}
                for kind in Kind:
                    try:
                        tries[kind.value] = card.tries_left(kind)
                    except FileNotFound:  # no signature key on a card of a holder under 15
                        tries[kind.value] = None
        except CardError as error:
            return _json({"card": False, "error": error.code})
        return _json({"card": True, "tries_left": tries})

    def _create(self, request: Request, origin: str) -> Response:
        try:
            body = json.loads(request.get_data(cache=False) or b"{}")
        except ValueError:
            return _json({"error": "malformed_json"}, 400)
        if not isinstance(body, dict):
            return _json({"error": "malformed_json"}, 400)
        kind = body.get("type")
        operation = Operation(id=secrets.token_urlsafe(16), kind=str(kind), origin=origin)
        if kind == "authenticate":
            challenge = body.get("challenge")
            if not isinstance(challenge, str) or not 32 <= len(challenge) <= 200:
                return _json({"error": "invalid_challenge"}, 400)
            operation.challenge = challenge
        elif kind == "sign":
            try:
                digest = base64.b64decode(body.get("digest", ""), validate=True)
            except (binascii.Error, TypeError):
                digest = b""
            text = body.get("text")
            if len(digest) != 32:
                return _json({"error": "invalid_digest", "message": "a base64 SHA-256 digest"}, 400)
            if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT or not _displayable(text):
                return _json({"error": "invalid_text",
                              "message": "1–2000 characters the person can read: no control or "
                                         "direction-changing characters"}, 400)
            operation.digest, operation.text = digest, text
        else:
            return _json({"error": "unknown_operation"}, 400)
        with self._lock:
            self._expire()
            if any(op.status in ("awaiting_consent", "in_progress") for op in self._operations.values()):
                return _json({"error": "busy", "message": "another operation is pending"}, 409)
            self._operations[operation.id] = operation
        consent = f"http://127.0.0.1:{self.config.port}/consent/{operation.id}"
        return _json({"id": operation.id, "consent_url": consent}, 201)

    def _poll(self, operation_id: str, origin: str) -> Response:
        with self._lock:
            self._expire()
            operation = self._operations.get(operation_id)
            if operation is None or operation.origin != origin:
                return _json({"error": "not_found"}, 404)
            body: dict[str, Any] = {"status": operation.status}
            if operation.status == "done":
                body["result"] = operation.result
                del self._operations[operation_id]  # handed over once
            elif operation.status in ("failed", "cancelled"):
                body["error"] = operation.error
                del self._operations[operation_id]
        return _json(body)

    def _cancel(self, operation_id: str, origin: str) -> Response:
        """The page gave up (its pop-up was closed): free the agent for the next request."""
        with self._lock:
            self._expire()
            operation = self._operations.get(operation_id)
            if operation is None or operation.origin != origin:
                return _json({"error": "not_found"}, 404)
            if operation.status == "in_progress":
                return _json({"error": "busy", "message": "the card is working on it"}, 409)
            if operation.status == "awaiting_consent":
                operation.status, operation.error = "cancelled", "cancelled"
        return _json({"status": operation.status})

    # -- consent page -------------------------------------------------------------------

    def _consent(self, request: Request, operation_id: str) -> Response:
        language = request.accept_languages
        test_mode = self.config.test_pins is not None
        with self._lock:
            self._expire()
            operation = self._operations.get(operation_id)
            if operation is None or operation.status != "awaiting_consent":
                return _page(render_result("expired", language), 404)
            if request.method == "POST":
                if request.headers.get("Origin") not in self.own_origins or \
                        not secrets.compare_digest(request.form.get("form_token", ""), operation.form_token):
                    return _page(render_result("forbidden", language), 403)
                # One post per rendered form: a double click, a reload or a parallel post
                # finds the token spent and costs no PIN try.
                operation.form_token = secrets.token_urlsafe(24)
                operation.status = "in_progress"
        if request.method == "GET":
            return _page(render_consent(operation, self._tries(operation), language, test_mode=test_mode))
        if request.method != "POST":
            return _page(render_result("expired", language), 405)
        if request.form.get("action") != "approve":
            self._finish(operation, "cancelled", error="cancelled")
            return _page(render_result("cancelled", language))
        try:
            return self._approve(operation, request.form.get("pin", ""), language)
        except Exception:
            # Whatever broke (pcscd gone mid-operation, the virtual card's state file not
            # writable), the operation must not stay in progress: until it expired, the page
            # could not cancel it and every new request would be refused as busy.
            log.exception("the %s operation failed unexpectedly", operation.kind)
            self._finish(operation, "failed", error="card_error")
            return _page(render_result("failed", language), 500)

    def _approve(self, operation: Operation, pin: str, language: Any) -> Response:
        kind = Kind.AUTH if operation.kind == "authenticate" else Kind.SIGNATURE
        if not pin and self.config.test_pins is not None:
            pin = self.config.test_pins.get(kind, "")
        try:
            result = self._perform(operation, kind, pin)
        except WrongPin as error:
            return self._again(operation, error.tries_left, language, "wrong_pin")
        except InvalidPinFormat:
            return self._again(operation, self._tries(operation), language, "invalid_pin_format")
        except PinBlocked:
            self._finish(operation, "failed", error="pin_blocked")
            return _page(render_result("pin_blocked", language))
        except CardError as error:
            return self._again(operation, None, language, error.code)
        self._finish(operation, "done", result=result)
        return _page(render_result("done", language))

    def _again(self, operation: Operation, tries: int | None, language: Any, problem: str) -> Response:
        """Back to the form (with a fresh token) after a wrong PIN or a card problem."""
        with self._lock:
            operation.status = "awaiting_consent"
        return _page(render_consent(operation, tries, language, test_mode=self.config.test_pins is not None,
                                    problem=problem))

    def _tries(self, operation: Operation) -> int | None:
        kind = Kind.AUTH if operation.kind == "authenticate" else Kind.SIGNATURE
        try:
            with self._card() as card:
                return card.tries_left(kind)
        except CardError:
            return None

    def _perform(self, operation: Operation, kind: Kind, pin: str) -> dict[str, Any]:
        with self._card() as card:
            if kind is Kind.AUTH:
                certificate = card.read_certificate(Kind.AUTH)
                card.verify_pin(Kind.AUTH, pin)
                assert operation.challenge is not None
                signed = (hashlib.sha256(operation.origin.encode()).digest()
                          + hashlib.sha256(operation.challenge.encode()).digest())
                signature = card.sign(Kind.AUTH, hashlib.sha256(signed).digest())
                return {"format": "web-eid:1.0", "algorithm": "RS256",
                        "unverifiedCertificate": base64.b64encode(certificate).decode(),
                        "signature": base64.b64encode(signature).decode(),
                        "appVersion": APP_VERSION_URL, "origin": operation.origin}
            card.verify_pin(Kind.SIGNATURE, pin)
            assert operation.digest is not None
            signature = card.sign(Kind.SIGNATURE, operation.digest)
            return {"signature": base64.b64encode(signature).decode(),
                    "certificate": base64.b64encode(card.read_certificate(Kind.SIGNATURE)).decode(),
                    "algorithm": "RS256"}

    @contextmanager
    def _card(self) -> Iterator[JPKICard]:
        with self._card_lock, self.open_card() as card:
            yield card

    def _finish(self, operation: Operation, status: str, *, result: dict[str, Any] | None = None,
                error: str | None = None) -> None:
        with self._lock:
            if operation.status == "cancelled":
                return  # the page gave up first: its decision stands
            operation.status, operation.result, operation.error = status, result, error

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, op in self._operations.items() if now - op.created > OPERATION_LIFETIME]:
            del self._operations[key]


MAX_ORIGINS_DOCUMENT = 64 * 1024


def _displayable(text: str) -> bool:
    """No control or format characters (bidi overrides, zero-width) that could make the
    shown text differ from what is signed; line breaks are fine."""
    return all(ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf", "Co", "Cs") for ch in text)


def _fetch(url: str) -> bytes:
    """GET the service's origins list: https (or loopback http) only, no redirects, small."""
    if not (url.startswith("https://") or url.startswith(("http://127.0.0.1", "http://localhost"))):
        raise ValueError("the service URL must be https")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    opener = urllib.request.build_opener(_NoRedirect)
    with opener.open(request, timeout=10) as response:
        return response.read(MAX_ORIGINS_DOCUMENT + 1)[:MAX_ORIGINS_DOCUMENT]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _json(body: dict[str, Any], status: int = 200) -> Response:
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _page(html: str, status: int = 200) -> Response:
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
    response.headers["X-Frame-Options"] = "DENY"
    # same-origin, not no-referrer: with no-referrer Chrome sends "Origin: null" on the
    # form post, and the Origin check of the consent post would refuse the person.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def _static(name: str, mimetype: str) -> Response:
    data = (resources.files("kakehashi_bridge") / "static" / name).read_bytes()
    return Response(data, mimetype=mimetype)
