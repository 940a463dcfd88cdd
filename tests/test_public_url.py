"""With PUBLIC_URL set, nothing the service builds follows the request's Host header: a
request naming another host is refused, and issuers and links in mail use the public
address (a forged Host would otherwise put an attacker's address into a password-reset
mail or a provider's metadata)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from saas import db
from saas.mail.models import OutgoingMail
from saas.tenants import accounts
from saas.tenants import services as tenants
from tests.conftest import make_app

PUBLIC = "https://id.example.jp"


@pytest.fixture
def app(committed_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(committed_url, tmp_path, PUBLIC_URL=PUBLIC,
                           KAKEHASHI_TRUSTED_HOSTS="health.internal")
    with application.app_context():
        tenants.create_tenant(slug="bank", display_name="かけはし銀行", kind="bank")
        db.session.commit()
    yield application
    db.get_database(application).engine.dispose()


def test_a_request_for_another_host_is_refused(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/healthz", base_url=PUBLIC).status_code == 200
    assert client.get("/healthz", base_url="http://health.internal").status_code == 200
    assert client.get("/healthz", base_url="https://evil.example").status_code == 400
    forged = client.get("/t/bank/.well-known/openid-configuration", base_url="https://evil.example")
    assert forged.status_code == 400 and b"evil.example" not in forged.data


def test_the_issuer_and_ssf_metadata_use_the_public_address(app: Flask) -> None:
    client = app.test_client()
    discovery = client.get("/t/bank/.well-known/openid-configuration", base_url=f"{PUBLIC}:8443").get_json()
    assert discovery["issuer"] == f"{PUBLIC}/t/bank"
    assert discovery["token_endpoint"].startswith(f"{PUBLIC}/t/bank/")
    ssf = client.get("/.well-known/ssf-configuration/t/bank", base_url="http://health.internal").get_json()
    assert ssf["issuer"] == f"{PUBLIC}/t/bank"
    assert all(ssf[name].startswith(f"{PUBLIC}/") for name in
               ("configuration_endpoint", "status_endpoint", "verification_endpoint", "jwks_uri"))


def test_links_in_mail_use_the_public_address(app: Flask) -> None:
    client: Any = app.test_client()
    page = client.get("/console/password/forgot", base_url="http://health.internal").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    with app.app_context():  # outside a request, as a job or a command would
        accounts.sign_up(organisation="かけはし信用金庫", slug="kk-shinkin", kind="bank", corporate_number="",
                         name="山田 花子", email="hanako@shinkin.example",
                         password="kakehashi bridges rivers at dawn")
        db.session.commit()
    client.post("/console/password/forgot", base_url="http://health.internal",
                data={"email": "hanako@shinkin.example", "csrf_token": token})
    with app.app_context():
        bodies = db.session.scalars(select(OutgoingMail.body)
                                    .where(OutgoingMail.recipient == "hanako@shinkin.example")).all()
    links = [link for body in bodies for link in re.findall(r"https?://\S+", body)]
    assert len(links) == 2  # the address confirmation and the reset
    assert all(link.startswith(f"{PUBLIC}/console/") for link in links), links
