"""Console sign-in with the My Number Card through the platform's own provider: a user
links the card (after confirming the password), then signs in with the card alone; an
unlinked card, a replayed callback and a forged state are refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

from saas import db
from saas.tenants import cardlogin
from tests.conftest import make_app
from tests.oidc_helpers import card_steps, issue_card
from tests.test_console import ORG, PASSWORD, csrf, log_in, verified_owner


@pytest.fixture
def app(committed_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(committed_url, tmp_path)
    with application.test_request_context():
        cardlogin.setup("http://localhost")
        db.session.commit()
    yield application
    db.get_database(application).engine.dispose()


@pytest.fixture
def card(app: Flask) -> Any:
    return issue_card(app, seed=11)


@pytest.fixture
def client(app: Flask) -> Any:
    browser = app.test_client()
    browser.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return browser


def through_the_card(client: Any, start: str, card: Any) -> Any:
    """From the console's start URL through the provider's login page back to the console."""
    authorize = client.get(start).headers["Location"]
    login_page = client.get(authorize).headers["Location"]
    body = card_steps(client, login_page, card)
    target = urlsplit(body["redirect"])
    assert target.path == "/console/card/callback", body
    return client.get(f"{target.path}?{target.query}")


def test_a_linked_card_signs_the_user_in(app: Flask, client: Any, card: Any) -> None:
    with app.app_context():
        slug = verified_owner(client)
        page = client.get("/console/account/security").get_data(as_text=True)
        assert "Link my My Number Card" in page
        linked = through_the_card(client, "/console/card/start?purpose=link", card)
        assert linked.status_code == 302 and linked.headers["Location"].endswith("/console/account/security")
        assert "Linked: you can sign in with your card" in client.get("/console/account/security").get_data(as_text=True)
        client.post("/console/logout", data={"csrf_token": csrf(client, "/console/login")})
        assert "Sign in with My Number Card" in client.get("/console/login").get_data(as_text=True)
        signed_in = through_the_card(client, "/console/card/start", card)
        assert signed_in.status_code == 302
        assert client.get("/console/", follow_redirects=True).request.path == f"/t/{slug}/console/"


def test_an_unlinked_card_and_a_forged_or_replayed_callback_are_refused(app: Flask, client: Any, card: Any) -> None:
    with app.app_context():
        verified_owner(client)
        client.post("/console/logout", data={"csrf_token": csrf(client, "/console/login")})
        refused = through_the_card(client, "/console/card/start", card)
        assert refused.status_code == 403 and "not linked to a console account" in refused.get_data(as_text=True)
        assert client.get("/console/").status_code == 302  # not signed in
        forged = client.get("/console/card/callback?code=x&state=forged")
        assert forged.status_code == 400
        assert log_in(client, ORG["email"], PASSWORD).status_code == 302
        authorize = client.get("/console/card/start?purpose=link").headers["Location"]
        body = card_steps(client, client.get(authorize).headers["Location"], card)
        callback = urlsplit(body["redirect"])
        assert client.get(f"{callback.path}?{callback.query}").status_code == 302
        replay = client.get(f"{callback.path}?{callback.query}")
        assert replay.status_code == 400 and re.search("did not start here|Start again", replay.get_data(as_text=True))
