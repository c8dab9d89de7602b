"""The OpenAPI document and the interactive page, with Swagger UI served from our own host."""

from __future__ import annotations

import json
import re

import pytest

PATHS = {
    "/api/v1/auth/login": {"post"},
    "/api/v1/auth/refresh": {"post"},
    "/api/v1/api-keys": {"get", "post"},
    "/api/v1/api-keys/{key_id}": {"get", "delete"},
    "/api/v1/audio": {"get", "post"},
    "/api/v1/audio/{audio_id}": {"get", "delete"},
    "/api/v1/audio/{audio_id}/download": {"get"},
    "/api/v1/calls": {"get", "post"},
    "/api/v1/calls/{call_id}": {"get"},
    "/api/v1/calls/{call_id}/cancel": {"post"},
    "/api/v1/balance": {"get"},
    "/api/v1/billing/transactions": {"get"},
}


@pytest.fixture(scope="module")
def spec(app):
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return json.loads(response.get_data(as_text=True))


def test_document_is_openapi_with_bearer_security(spec):
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "ZensCall API"
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        **spec["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["paths"]["/api/v1/auth/login"]["post"]["security"] == []


def test_every_endpoint_is_documented(spec):
    for path, methods in PATHS.items():
        assert path in spec["paths"], path
        assert methods <= set(spec["paths"][path]), (path, set(spec["paths"][path]))


def test_error_responses_are_documented(spec):
    error = spec["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"].endswith("/ErrorBody")
    assert set(spec["components"]["schemas"]["ErrorBody"]["required"]) == {"code", "message", "details"}
    for path, methods in PATHS.items():
        for method in methods:
            responses = spec["paths"][path][method]["responses"]
            default = responses["default"]
            ref = default.get("$ref") or default["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[-1] in ("DEFAULT_ERROR", "Error"), (path, method)
    assert "422" in spec["paths"]["/api/v1/calls"]["post"]["responses"]
    assert "Idempotency-Key" in {p["name"] for p in spec["paths"]["/api/v1/calls"]["post"]["parameters"]}


def test_docs_page_uses_local_assets(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/api/v1/docs/assets/swagger-ui-bundle.js" in assets
    assert not [a for a in assets if a.startswith(("http:", "https:", "//"))]
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    bundle = client.get("/api/v1/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.data) > 100_000
    assert "/api/v1/openapi.json" in html


def test_missing_asset_is_404_envelope(client):
    from tests.api.conftest import assert_error

    assert_error(client.get("/api/v1/docs/assets/nothing.js"), 404)
    assert_error(client.get("/api/v1/docs/assets/../../../etc/passwd"), 404)
