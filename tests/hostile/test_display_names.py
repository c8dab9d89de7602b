"""Display names refuse control, format, surrogate and line/paragraph separator characters
(``a\\u202egnp.wav`` reads as ``avw.png``): one rule (``core.names``), used by every name the API
and the operator commands take, and by the file names of CSV uploads."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from core.names import InvalidName, check_display_name, name_problem
from tests.api.conftest import assert_error
from tests.hostile.uploads import row_counts

BAD = {
    "right-to-left override": "a\u202egnp.wav",
    "left-to-right isolate": "promo\u2066x",
    "zero width space": "March\u200bPromotion",
    "zero width joiner": "a\u200db",
    "byte order mark": "\ufeffname",
    "soft hyphen": "pro\u00admo",
    "arabic letter mark": "\u061cname",
    "tag character": "flag\U000e0041",
    "NUL": "a\x00b",
    "escape": "a\x1b[31mred",
    "tab": "a\tb",
    "line feed": "a\nb",
    "DEL": "a\x7fb",
    "C1 control": "a\x85b",
    "line separator": "a\u2028b",
    "paragraph separator": "a\u2029b",
    "lone surrogate": "a\ud800b",
    "only spaces": "   ",
}
GOOD = ["March Promotion", "Eid offer 2026 (Lahore)", "مارچ پروموشن", "Ali’s list – v2", "crm-key_1",
        "نمبر ۱۲", "Café 🎉", "a b"]


@pytest.mark.parametrize("label", sorted(BAD))
def test_rule_refuses(label: str) -> None:
    assert name_problem(BAD[label]) is not None
    with pytest.raises(InvalidName):
        check_display_name(BAD[label])


@pytest.mark.parametrize("name", GOOD)
def test_rule_accepts_visible_text(name: str) -> None:
    assert name_problem(name) is None and check_display_name(name) == name


def test_the_message_names_the_character() -> None:
    assert name_problem("a\u202egnp.wav") == "must not contain invisible formatting characters (U+202E at position 2)"


@pytest.mark.parametrize("label", ["right-to-left override", "zero width space", "NUL", "line separator",
                                   "only spaces"])
def test_api_key_names(client: Any, tenant: Any, label: str) -> None:
    error = assert_error(client.post("/api/v1/api-keys", headers=tenant.headers, json={"name": BAD[label]}),
                         422, "VALIDATION_ERROR")
    assert list(error["details"]) == ["name"]
    assert client.post("/api/v1/api-keys", headers=tenant.headers, json={"name": "crm"}).status_code == 201


def test_lone_surrogate_in_json_is_refused(client: Any, tenant: Any) -> None:
    body = '{"name": "a\\ud800b"}'  # valid JSON, not valid text
    response = client.post("/api/v1/api-keys", headers={**tenant.headers, "Content-Type": "application/json"},
                           data=body)
    assert assert_error(response, 422, "VALIDATION_ERROR")["details"] == {
        "name": ["The name must not contain surrogate characters (U+D800 at position 2)."]}


def _campaign(client: Any, tenant: Any, audio_id: str, name: str, filename: str = "list.csv") -> Any:
    return client.post("/api/v1/campaigns", headers=tenant.headers, content_type="multipart/form-data",
                       data={"name": name, "audio_id": audio_id,
                             "csv_file": (io.BytesIO(b"phone\n03001234567\n"), filename)})


def test_campaign_names_and_file_names(hostile_app: Any, client: Any, tenant: Any, upload_audio: Any) -> None:
    audio_id = upload_audio(tenant)["id"]
    before = row_counts(hostile_app, tenant.account_id)
    for label in ("right-to-left override", "left-to-right isolate", "escape", "paragraph separator"):
        error = assert_error(_campaign(client, tenant, audio_id, BAD[label]), 422, "VALIDATION_ERROR")
        assert list(error["details"]) == ["name"], error
    for filename in ("list\u202evsc.txt", "a\u200bb.csv", "a\u2028b.csv"):
        error = assert_error(_campaign(client, tenant, audio_id, "March", filename), 422, "INVALID_FILENAME")
        assert list(error["details"]) == ["csv_file"]
    assert row_counts(hostile_app, tenant.account_id) == before  # nothing was created
    created = _campaign(client, tenant, audio_id, "مارچ پروموشن", "نمبر.csv")
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["name"] == "مارچ پروموشن"
    assert created.get_json()["import_summary"]["filename"] == "نمبر.csv"
    queue = hostile_app.extensions["zenscall"].work_queue
    queue.fetch_job(f"import-{created.get_json()['id']}").delete()  # no worker imports it later


def test_operator_commands_refuse_them(hostile_app: Any, tenant: Any) -> None:
    runner = hostile_app.test_cli_runner()
    result = runner.invoke(args=["accounts", "create", "--name", "Acme\u202e", "--email", "x-rlo@example.pk",
                                 "--password", "S3cret!pass"])
    assert result.exit_code == 1
    assert "invisible formatting" in json.loads(result.output.strip().splitlines()[-1])["error"]["message"]
    result = runner.invoke(args=["keys", "create", tenant.account_id, "--name", "crm\x1b[2J"])
    assert result.exit_code == 1 and "control characters" in result.output
    result = runner.invoke(args=["keys", "create", tenant.account_id, "--name", "crm"])
    assert result.exit_code == 0, result.output
