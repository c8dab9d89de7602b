"""Every error answers {"error": {"code", "message", "details"}} with the documented status."""

from __future__ import annotations

import io
import json

from tests.api.conftest import assert_error


def test_unknown_route_is_404(client, tenant):
    assert_error(client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    assert_error(client.get("/api/v1/nothing-here", headers=tenant.headers), 404, "NOT_FOUND")
    assert_error(client.get("/nothing-here"), 404, "NOT_FOUND")
    assert client.get("/").headers["Location"].startswith("/login")  # the web console's sign-in


def test_wrong_method_is_405(client, tenant):
    response = client.delete("/api/v1/balance", headers=tenant.headers)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["Allow"]
    assert_error(client.put("/api/v1/calls", headers=tenant.headers, json={}), 405)


def test_malformed_json_is_400(client, tenant):
    response = client.post("/api/v1/calls", headers={**tenant.headers, "Content-Type": "application/json"},
                           data='{"phone_number": "0300')
    error = assert_error(response, 400, "INVALID_JSON")
    assert "JSON" in error["message"]
    assert_error(client.post("/api/v1/api-keys", headers={**tenant.headers, "Content-Type": "application/json"},
                             data="not json"), 400, "INVALID_JSON")


def test_json_that_is_not_an_object_is_an_error(client, tenant):
    response = client.post("/api/v1/calls", headers=tenant.headers, json=["03001234567"])
    assert response.status_code in (400, 422)
    assert_error(response, response.status_code)


def test_body_too_large_is_413(make_app, tenant, address):
    small = make_app(max_request_bytes=2048).test_client()
    big = {"phone_number": "03001234567", "audio_id": "x" * 4096}
    error = assert_error(small.post("/api/v1/calls", headers=tenant.headers, json=big), 413, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {}
    upload = small.post("/api/v1/audio", headers=tenant.headers, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(b"\0" * 8192), "x.wav")})
    assert_error(upload, 413)
    assert_error(small.post("/api/v1/auth/login", data=json.dumps({"email": "a" * 4096}),
                            content_type="application/json", environ_base=address), 413)


def test_validation_is_422_with_per_field_details(client, tenant):
    error = assert_error(client.post("/api/v1/calls", headers=tenant.headers,
                                     json={"phone_number": 3001234567, "max_retries": "many"}), 422,
                         "VALIDATION_ERROR")
    assert set(error["details"]) == {"phone_number", "audio_id", "max_retries"}
    assert all(isinstance(v, list) and v for v in error["details"].values())
    assert "phone_number" in error["message"]


def test_unknown_fields_are_refused(client, tenant):
    error = assert_error(client.post("/api/v1/calls", headers=tenant.headers,
                                     json={"phone_number": "03001234567", "audio_id": "a", "priority": 1}), 422)
    assert "priority" in error["details"]


def test_unexpected_exception_is_500_without_internals(make_app, caplog):
    app = make_app()

    @app.get("/api/v1/_boom")
    def boom():
        raise RuntimeError("database password is hunter2")

    response = app.test_client().get("/api/v1/_boom")
    error = assert_error(response, 500, "INTERNAL_ERROR")
    text = response.get_data(as_text=True)
    assert "hunter2" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert error["details"] == {}
    # it is logged for operators
    assert any("hunter2" in str(r.exc_info) for r in caplog.records if r.exc_info)


def test_disabled_account_is_403(client, make_tenant, sessions):
    import sqlalchemy as sa

    from core.models import Account

    tenant = make_tenant()
    with sessions() as session:
        session.execute(sa.update(Account).where(Account.id == tenant.account_id).values(active=False))
        session.commit()
    assert_error(client.get("/api/v1/balance", headers=tenant.headers), 403, "ACCOUNT_DISABLED")
