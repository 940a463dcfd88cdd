"""The OpenAPI document is valid, covers every JSON route, and matches what they answer."""

from __future__ import annotations

from typing import Any

from flask import Flask
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from saas import openapi


def api_rules(app: Flask) -> list[Any]:
    api_blueprints = app.extensions.get("kakehashi.api_blueprints", set())
    return [r for r in app.url_map.iter_rules()
            if r.endpoint.split(".")[0] in api_blueprints
            or hasattr(app.view_functions[r.endpoint], "__openapi__")]


def test_the_document_is_valid_openapi_3_1(client: Any) -> None:
    document = client.get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_api_route_is_in_the_document(app: Flask) -> None:
    document = openapi.build_document(app)
    for rule in api_rules(app):
        path = document["paths"].get(openapi.openapi_path(rule.rule))
        assert path is not None, f"{rule.rule} is not described"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert method.lower() in path, f"{method} {rule.rule} is not described"


def test_every_described_path_is_routed(app: Flask) -> None:
    routed = {openapi.openapi_path(r.rule) for r in app.url_map.iter_rules()}
    assert set(openapi.build_document(app)["paths"]) <= routed


def test_described_responses_match_what_the_routes_answer(client: Any) -> None:
    document = client.get("/openapi.json").get_json()
    components = document["components"]
    checked = 0
    for path, operations in document["paths"].items():
        op = operations.get("get")
        if op is None or "{" in path:
            continue
        response = client.get(path)
        described = op["responses"].get(str(response.status_code))
        assert described is not None, f"GET {path} answered an undescribed {response.status_code}"
        schema = described["content"]["application/json"]["schema"]
        Draft202012Validator({**schema, "components": components}).validate(response.get_json())
        checked += 1
    assert checked >= 3


def test_the_reference_page_lists_every_operation(client: Any) -> None:
    document = client.get("/openapi.json").get_json()
    html = client.get("/docs/api", headers={"Accept-Language": "en"}).get_data(as_text=True)
    for path, operations in document["paths"].items():
        for op in operations.values():
            assert f'id="{op["operationId"]}"' in html
            assert path in html


def test_an_undescribed_route_of_an_api_blueprint_is_caught(database_url: str, tmp_path: Any) -> None:
    from flask import Blueprint, jsonify

    from tests.conftest import make_app

    app = make_app(database_url, tmp_path)
    api = Blueprint("probe_api", __name__, url_prefix="/api/probe")

    @api.post("/things")
    def create_thing() -> Any:
        return jsonify(ok=True), 201

    openapi.register_api_blueprint(app, api)
    document = openapi.build_document(app)
    missing = [r.rule for r in api_rules(app) if openapi.openapi_path(r.rule) not in document["paths"]]
    assert missing == ["/api/probe/things"]
    # API blueprints take no CSRF token (they authenticate by key) and answer errors in JSON.
    client = app.test_client()
    assert client.post("/api/probe/things").status_code == 201
    assert client.get("/api/probe/things").get_json()["error"] == "method_not_allowed"
