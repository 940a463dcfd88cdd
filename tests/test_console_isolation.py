"""Every console and API route of an organisation, called with another organisation's
object ids, or by a member of another organisation, or with another organisation's API
key, answers 404 / 401 and shows nothing of the other organisation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from saas import db
from saas.db import all_tenants
from saas.events.models import Delivery, WebhookEndpoint
from saas.oidc.models import OIDCClient
from saas.tenants.models import ApiKey
from tests.test_console import make_key, post, verified_owner

PARAMS = ("endpoint_id", "delivery_id", "client_id", "key_id")


@pytest.fixture
def two_organisations(app: Flask, client: Any) -> dict[str, Any]:
    other = app.test_client()
    other.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    world: dict[str, Any] = {"a": client, "b": other}
    for name, browser in (("a", client), ("b", other)):
        slug = verified_owner(browser, organisation=f"Org {name.upper()}", slug=f"org-{name}",
                              email=f"owner@{name}.example")
        post(browser, f"/t/{slug}/console/webhooks/new", {"url": f"https://{name}.example/hook",
                                                          "event_types": ["*"]})
        post(browser, f"/t/{slug}/console/clients/new", {"name": f"App {name.upper()}",
                                                         "redirect_uris": f"https://{name}.example/cb",
                                                         "auth_method": "client_secret_basic"})
        world[f"key_{name}"] = make_key(browser, slug, ["webhooks:read", "webhooks:write"])
        with all_tenants(db.session):
            endpoint_id, endpoint_pk = db.session.execute(select(WebhookEndpoint.public_id, WebhookEndpoint.id).where(
                WebhookEndpoint.url == f"https://{name}.example/hook")).one()
        post(browser, f"/t/{slug}/console/webhooks/{endpoint_id}/ping", {},
             form_page=f"/t/{slug}/console/webhooks/{endpoint_id}")
        with all_tenants(db.session):
            world[name] = {
                "slug": slug, "endpoint_id": endpoint_id,
                "delivery_id": str(db.session.scalar(select(Delivery.id).where(Delivery.endpoint_id == endpoint_pk))),
                "client_id": db.session.scalar(select(OIDCClient.public_id).where(
                    OIDCClient.name == f"App {name.upper()}")),
                "key_id": db.session.scalar(select(ApiKey.public_id).where(ApiKey.name == "CRM", ApiKey.tenant_id == (
                    select(WebhookEndpoint.tenant_id).where(WebhookEndpoint.id == endpoint_pk).scalar_subquery()))),
            }
    world["a_client"], world["b_client"] = client, other
    return world


def routes(app: Flask, blueprint: str) -> list[tuple[str, str, set[str]]]:
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(blueprint + ".") and "tenant_slug" in rule.arguments:
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append((method, rule.rule, set(rule.arguments)))
    return found


def fill(rule: str, values: dict[str, str]) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", lambda m: values.get(m.group(1), "RS256" if m.group(1) == "alg" else "x"),
                  rule)


def leaks(body: str, other: dict[str, str], asked: str = "") -> list[str]:
    """The other organisation's ids in a response, except those the caller sent itself
    (a page echoes its own URL, in the language switch)."""
    return [value for key, value in other.items()
            if key in ("endpoint_id", "client_id", "key_id") and value in body and value not in asked]


def sweep_console(app: Flask, world: Any, slug: str, *, only_with_ids: bool) -> int:
    """Every console route as A's owner with B's ids under ``slug``: each must be a 404
    that names none of B's ids; how many were called."""
    a, b, browser = world["a"], world["b"], world["a_client"]
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(f"/t/{a['slug']}/console/")
                      .get_data(as_text=True)).group(1)
    checked = 0
    for method, rule, arguments in routes(app, "tenant_console"):
        if only_with_ids and not arguments & set(PARAMS):
            continue
        path = fill(rule, {**{k: b[k] for k in PARAMS}, "tenant_slug": slug})
        response = browser.open(path, method=method, data={"csrf_token": token} if method == "POST" else None)
        assert response.status_code == 404, f"{method} {path} answered {response.status_code}"
        assert not leaks(response.get_data(as_text=True), b, path)
        checked += 1
    return checked


def test_console_routes_with_another_organisations_ids_are_not_found(app: Flask, two_organisations: Any) -> None:
    assert sweep_console(app, two_organisations, two_organisations["a"]["slug"], only_with_ids=True) >= 8


def test_an_organisations_console_is_not_found_for_a_member_of_another(app: Flask, two_organisations: Any) -> None:
    assert sweep_console(app, two_organisations, two_organisations["b"]["slug"], only_with_ids=False) >= 15


def test_api_routes_refuse_another_organisations_key_and_ids(app: Flask, two_organisations: Any) -> None:
    a, b, browser = two_organisations["a"], two_organisations["b"], two_organisations["a_client"]
    own = {"Authorization": f"Bearer {two_organisations['key_a']}"}
    theirs = {"Authorization": f"Bearer {two_organisations['key_b']}"}
    checked = 0
    for method, rule, arguments in routes(app, "events_api"):
        with_their_key = fill(rule, {**{k: a[k] for k in PARAMS}, "tenant_slug": a["slug"]})
        response = browser.open(with_their_key, method=method, headers=theirs, json={} if method != "GET" else None)
        assert response.status_code == 401, f"{method} {with_their_key} with B's key: {response.status_code}"
        if arguments & set(PARAMS):
            with_their_ids = fill(rule, {**{k: b[k] for k in PARAMS}, "tenant_slug": a["slug"]})
            response = browser.open(with_their_ids, method=method, headers=own, json={} if method != "GET" else None)
            assert response.status_code == 404, f"{method} {with_their_ids}: {response.status_code}"
            assert not leaks(response.get_data(as_text=True), b, with_their_ids)
        checked += 1
    assert checked >= 7
    listed = browser.get(f"/t/{a['slug']}/api/webhooks", headers=own).get_data(as_text=True)
    assert a["endpoint_id"] in listed and not leaks(listed, b)
