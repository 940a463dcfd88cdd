"""A demo relying party: "log in with your My Number Card" through a Kakehashi tenant.

A small Flask app on Authlib's OpenID Connect client, speaking the same dialect as the
Digital Agency's デジタル認証アプリ: authorization code + PKCE S256, ``private_key_jwt``,
``state`` and ``nonce``. ``make demo`` starts it on http://127.0.0.1:5001/ beside the
service; its registration (client id and private key) is written by
``kakehashi seed-demo`` to ``instance/demo-rp.json``.

    python -m examples.demo_rp.app --config instance/demo-rp.json --port 5001
"""

from __future__ import annotations

import argparse
import json
import secrets
from pathlib import Path
from typing import Any

from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from flask import Flask, redirect, render_template, request, session, url_for
from joserfc.jwk import RSAKey

ATTRIBUTES = "name address birthdate gender"


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

    @app.get("/")
    def home() -> str:
        user = session.get("user")
        shown = json.dumps(user, ensure_ascii=False, indent=2) if user else None
        return render_template("home.html", user=shown, claims=session.get("claims"),
                               issuer=config["issuer"], error=request.args.get("error"),
                               error_description=request.args.get("error_description"))

    @app.get("/login")
    def login() -> Any:
        scope = "openid " + ATTRIBUTES if request.args.get("attributes") else "openid"
        extra: dict[str, str] = {}
        if request.args.get("fresh"):
            extra["max_age"] = "0"
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
