"""Pattern validators match the whole value: ``$`` also matches before a trailing newline, so
``re.match(r"^[0-9]+$", "0300\\n")`` succeeds and "0300\\n" used to pass as a caller id (and then
every attempt failed to originate). Each validator of the API and the core refuses such values."""

from __future__ import annotations

import importlib
import io
import pkgutil

import marshmallow as ma
import pytest

import api.resources
from tests.api.conftest import assert_error

TRAILING = ["\n", "\r\n", " ", "\t", "\x00"]
BAD_CALLER_IDS = [*("0300" + t for t in TRAILING), "\n0300", "+", "++0300", "03 00", "03-00", "0300x",
                  "٠٣٠٠١٢", "０３００", "12", "1" * 16, ""]
GOOD_CALLER_IDS = ["0300", "+923001234567", "123", "1" * 15]


def test_caller_id_of_a_call_is_digits_only(client, tenant, upload_audio):
    audio = upload_audio(tenant)
    for caller_id in BAD_CALLER_IDS:
        response = client.post("/api/v1/calls", headers=tenant.headers,
                               json={"phone_number": "03001234567", "audio_id": audio["id"], "caller_id": caller_id})
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert set(error["details"]) == {"caller_id"}, (caller_id, error)
    for caller_id in GOOD_CALLER_IDS:
        response = client.post("/api/v1/calls", headers=tenant.headers,
                               json={"phone_number": "03001234567", "audio_id": audio["id"], "caller_id": caller_id})
        assert response.status_code == 201, (caller_id, response.get_json())
        assert response.get_json()["caller_id"] == caller_id.removeprefix("+")  # digits reach the dial string


def _campaign(client, tenant, audio_id, **fields):
    form = {"name": "promo", "audio_id": audio_id, "csv_file": (io.BytesIO(b"phone_number\n03001234567\n"), "n.csv"),
            **fields}
    return client.post("/api/v1/campaigns", headers=tenant.headers, data=form, content_type="multipart/form-data")


@pytest.mark.parametrize("field,good", [("caller_id", "0300"), ("window_start", "09:00"), ("window_end", "21:00")])
def test_campaign_fields_with_a_trailing_newline_are_refused(client, tenant, upload_audio, field, good):
    audio = upload_audio(tenant)
    for trailing in TRAILING:
        response = _campaign(client, tenant, audio["id"], **{field: good + trailing})
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert set(error["details"]) == {field}, error


def test_campaign_form_accepts_the_honest_values():
    from api.resources.campaigns import NewCampaignForm

    for caller_id in GOOD_CALLER_IDS:
        assert NewCampaignForm().validate({"name": "n", "audio_id": "a", "caller_id": caller_id}) == {}
    for value in ("00:00", "09:30", "23:59"):
        assert NewCampaignForm().validate({"name": "n", "audio_id": "a", "window_start": value}) == {}
    for value in ("24:00", "9:30", "09:60", "09:00\n"):
        assert set(NewCampaignForm().validate({"name": "n", "audio_id": "a", "window_end": value})) == {"window_end"}


def test_every_pattern_validator_of_the_api_is_a_full_match():
    """A guard for validators added later: each one with a pattern is a ``FullMatch``."""
    from api.schemas import FullMatch

    found = []
    for module_info in pkgutil.iter_modules(api.resources.__path__):
        module = importlib.import_module(f"api.resources.{module_info.name}")
        for schema in vars(module).values():
            if not (isinstance(schema, type) and issubclass(schema, ma.Schema)):
                continue
            for name, field in schema().fields.items():
                for validator in field.validators:
                    if hasattr(validator, "regex"):
                        found.append((schema.__name__, name))
                        assert isinstance(validator, FullMatch), (schema.__name__, name, validator)
    assert ("NewCallArgs", "caller_id") in found and ("NewCampaignForm", "window_start") in found


def test_calling_window_parser_refuses_a_trailing_newline():
    from core.window import parse_hhmm

    assert parse_hhmm("09:30").hour == 9
    for trailing in TRAILING:
        with pytest.raises(ValueError):
            parse_hhmm("09:30" + trailing)


def test_request_id_with_a_trailing_newline_is_replaced(client):
    echoed = client.get("/api/v1/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    # a raw WSGI header value, as a lenient server could pass it on
    response = client.get("/api/v1/health", environ_overrides={"HTTP_X_REQUEST_ID": "abc-123\n"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] != "abc-123\n" and "\n" not in response.headers["X-Request-ID"]
    assert len(response.headers["X-Request-ID"]) == 32  # a fresh one
