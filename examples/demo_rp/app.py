"""A demo relying party: "log in with your My Number Card" through a Kakehashi tenant.

A small Flask app on Authlib's OpenID Connect client, speaking the same dialect as the
Digital Agency's デジタル認証アプリ: authorization code + PKCE S256, ``private_key_jwt``,
``state`` and ``nonce``. ``make demo`` starts it on http://127.0.0.1:5001/ beside the
service; its registration (client id and private key) is written by
``kakehashi seed-demo`` to ``instance/demo-rp.json``, with the secret of the webhook
endpoint the service posts events to (``/webhooks/kakehashi``).

    python -m examples.demo_rp.app --config instance/demo-rp.json --port 5001
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from flask import Flask, redirect, render_template, request, send_from_directory, session, url_for
from joserfc.jwk import RSAKey

ATTRIBUTES = "name address birthdate gender"
# RFC 9396: ask for the powers of attorney the person holds as an agent.
POWERS = json.dumps([{"type": "kakehashi_power_of_attorney"}])


def signature_ok(body: bytes, header: str, secret: str, tolerance: int = 300) -> bool:
    """The documented check of ``Kakehashi-Signature: t=…,v1=…``."""
    parts = [part.strip().partition("=") for part in header.split(",")]
    stamps = [int(value) for name, _, value in parts if name == "t" and value.isdigit()]
    if not stamps or abs(time.time() - stamps[0]) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{stamps[0]}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for name, _, value in parts if name == "v1")


def create_app(config: dict[str, Any]) -> Flask:
    app = Flask(__name__)
    app.secret_key = config.get("session_secret") or secrets.token_hex(32)
    app.config["SESSION_COOKIE_NAME"] = "demo_rp"
    oauth = OAuth(app)
    oauth.register(
        "kakehashi",
        client_id=config["client_id"],
        client_secret=RSAKey.import_key(config["private_jwk"]),
        server_metadata_url=f"{config['issuer']}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid", "code_challenge_method": "S256",
                       "token_endpoint_auth_method": "private_key_jwt"},
        client_auth_methods=[PrivateKeyJWT()],
    )
    client = oauth.kakehashi
    received: list[dict[str, Any]] = []  # events posted to this RP (newest first), this process only
    lock = threading.Lock()

    @app.get("/")
    def home() -> str:
        user = session.get("user")
        shown = json.dumps(user, ensure_ascii=False, indent=2) if user else None
        with lock:
            events = list(received[:20])
        return render_template("home.html", user=shown, claims=session.get("claims"),
                               powers=session.get("powers"), events=events,
                               issuer=config["issuer"], error=request.args.get("error"),
                               error_description=request.args.get("error_description"))

    @app.post("/webhooks/kakehashi")
    def webhook() -> Any:
        secret = config.get("webhook_secret")
        body = request.get_data()
        if not secret or not signature_ok(body, request.headers.get("Kakehashi-Signature", ""), secret):
            return {"error": "bad_signature"}, 400
        event = json.loads(body)
        with lock:
            if all(seen["id"] != event["id"] for seen in received):  # the Idempotency-Key: once
                received.insert(0, event)
        return "", 204

    # -- a reception kiosk: the card at the desk, the patient number from Kakehashi ------------------
    # The device key stays on this server; the page only talks to the bridge agent and to us.
    tenant_api = config["issuer"] + "/api"

    def kiosk_call(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        import requests

        answer = requests.post(f"{tenant_api}{path}", json=body or {}, timeout=10,
                               headers={"Authorization": f"Bearer {config.get('device_key', '')}"})
        return answer.json()

    @app.get("/kiosk")
    def kiosk() -> str:
        return render_template("kiosk.html", result=session.pop("kiosk_result", None),
                               configured=bool(config.get("device_key")),
                               ports=config.get("agent_ports") or [24817, 24818, 24819])

    @app.get("/kiosk/agent.js")
    def kiosk_script() -> Any:
        # The service's own card-login script speaks the same four steps (challenge, card,
        # cancel); the service serves it same-origin only, so the demo serves its copy.
        return send_from_directory(Path(__file__).resolve().parents[2] / "saas" / "static", "login.js",
                                   mimetype="text/javascript")

    @app.post("/kiosk/challenge")
    def kiosk_challenge() -> Any:
        session["kiosk_challenge"] = kiosk_call("/checkin/challenge").get("challenge")
        return {"challenge": session["kiosk_challenge"]}

    @app.post("/kiosk/card")
    def kiosk_card() -> Any:
        body = request.get_json(silent=True) or {}
        answer = kiosk_call("/checkin", {"token": body.get("token"), "challenge": session.pop("kiosk_challenge", "")})
        session["kiosk_result"] = answer
        return {"redirect": url_for("kiosk")}

    @app.post("/kiosk/link")
    def kiosk_link() -> Any:
        answer = kiosk_call("/checkin/link", {"checkin": request.form.get("checkin"),
                                              "local_id": request.form.get("local_id")})
        session["kiosk_result"] = {"result": "linked", "local_ids": [answer.get("local_id")]} if "id" in answer \
            else answer
        return redirect(url_for("kiosk"))

    @app.post("/kiosk/cancel")
    def kiosk_cancel() -> Any:
        return {"redirect": url_for("kiosk")}

    @app.get("/login")
    def login() -> Any:
        scope = "openid " + ATTRIBUTES if request.args.get("attributes") else "openid"
        extra: dict[str, str] = {}
        if request.args.get("fresh"):
            extra["max_age"] = "0"
        if request.args.get("powers"):
            extra["authorization_details"] = POWERS
        return client.authorize_redirect(url_for("callback", _external=True), scope=scope,
                                         acr_values="aal3", **extra)

    @app.get("/callback")
    def callback() -> Any:
        if "error" in request.args:
            return redirect(url_for("home", error=request.args["error"],
                                    error_description=request.args.get("error_description", "")))
        try:
            token = client.authorize_access_token()  # checks state, PKCE, the ID token and nonce
        except OAuthError as error:
            return redirect(url_for("home", error=error.error, error_description=error.description or ""))
        claims = dict(token["userinfo"])
        session["claims"] = claims
        session["powers"] = token.get("authorization_details")
        session["user"] = client.userinfo(token=token)
        return redirect(url_for("home"))

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect(url_for("home"))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="instance/demo-rp.json")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text())
    create_app(config).run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
