"""/api/v1/campaigns through the in-process app on the session's database: creation as the
public document shows it, the import summary, CSV refusals, lifecycle transitions, the
campaign's calls, the report and rejected-row downloads, and tenant isolation."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from rq.job import Job

from api import create_app
from campaigns.importer import import_campaign
from core.call_states import CallStatus
from core.models import Call, Campaign
from tests.api.conftest import assert_error

NUMBERS = b"phone_number\n03001234567\n03007654321\n"


# -- helpers (also used by test_api_dnc) ------------------------------------------------------


@pytest.fixture()
def campaign_api(app: Any, client: Any, settings: Any, upload_audio: Any) -> Any:
    """Create campaigns the way the public document does and run their import job in-process.

    The import job the API enqueues on the worker queue is taken off it again, so no worker ever
    imports these campaigns a second time."""

    class Api:
        def __init__(self) -> None:
            self.created: list[str] = []
            self.audio: dict[str, str] = {}

        def audio_of(self, tenant: Any) -> str:
            if tenant.account_id not in self.audio:
                self.audio[tenant.account_id] = upload_audio(tenant)["id"]
            return self.audio[tenant.account_id]

        def create(self, tenant: Any, data: bytes = NUMBERS, filename: str = "phone_numbers.csv",
                   audio_id: str | None = None, client_: Any = None, **fields: Any) -> Any:
            form: dict[str, Any] = {"name": "March Promotion", "audio_id": audio_id or self.audio_of(tenant),
                                    "csv_file": (io.BytesIO(data), filename), "max_retries": "3",
                                    "concurrent_limit": "10"}
            form.update({k: str(v) for k, v in fields.items()})
            response = (client_ or client).post("/api/v1/campaigns", headers=tenant.headers, data=form,
                                                content_type="multipart/form-data")
            if response.status_code == 201:
                self.created.append(response.get_json()["id"])
            return response

        def run_import(self, campaign_id: str) -> dict[str, Any]:
            result = import_campaign(campaign_id, settings=settings, engine=app.extensions["zenscall"].engine)
            self._dequeue(campaign_id)
            return result

        def imported(self, tenant: Any, data: bytes = NUMBERS, **fields: Any) -> dict[str, Any]:
            response = self.create(tenant, data, **fields)
            assert response.status_code == 201, response.get_json()
            self.run_import(response.get_json()["id"])
            return self.get(tenant, response.get_json()["id"])

        def get(self, tenant: Any, campaign_id: str) -> dict[str, Any]:
            response = client.get(f"/api/v1/campaigns/{campaign_id}", headers=tenant.headers)
            assert response.status_code == 200, response.get_json()
            return response.get_json()  # type: ignore[no-any-return]

        def _dequeue(self, campaign_id: str) -> None:
            connection = app.extensions["zenscall"].work_queue.connection
            job = Job.fetch(f"import-{campaign_id}", connection=connection) \
                if connection.exists(f"rq:job:import-{campaign_id}") else None
            if job is not None:
                job.delete()

    api = Api()
    yield api
    for campaign_id in api.created:
        api._dequeue(campaign_id)


def uploads(settings: Any) -> set[str]:
    folder = Path(settings.var_dir) / "uploads"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def campaign_count(sessions: Any, account_id: str) -> int:
    with sessions() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Campaign)
                                  .where(Campaign.account_id == account_id)) or 0)


def calls_of(sessions: Any, campaign_id: str) -> list[Call]:
    with sessions() as session:
        return list(session.scalars(sa.select(Call).where(Call.campaign_id == campaign_id)
                                    .order_by(Call.phone_number)))


def set_calls(sessions: Any, campaign_id: str, phone: str | None = None, **values: Any) -> None:
    with sessions() as session:
        query = sa.update(Call).where(Call.campaign_id == campaign_id)
        if phone is not None:
            query = query.where(Call.phone_number == phone)
        session.execute(query.values(**values))
        session.commit()


def read_csv(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


# -- creation -----------------------------------------------------------------------------------


def test_create_as_documented_then_import_runs(campaign_api: Any, client: Any, tenant: Any, settings: Any) -> None:
    response = campaign_api.create(tenant)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "IMPORTING" and body["name"] == "March Promotion"
    assert (body["max_retries"], body["concurrent_limit"], body["retry_delay_seconds"]) == (3, 10, 300)
    assert body["calling_window"] == {"start": "09:00", "end": "21:00", "timezone": "Asia/Karachi"}
    assert body["import_summary"]["filename"] == "phone_numbers.csv"
    assert body["import_summary"]["size_bytes"] == len(NUMBERS)
    assert body["statistics"]["total"] == 0
    # the import is queued for the worker under a stable job id
    queue = client.application.extensions["zenscall"].work_queue
    assert f"import-{body['id']}" in queue.job_ids

    result = campaign_api.run_import(body["id"])
    assert result["status"] == "RUNNING"
    got = campaign_api.get(tenant, body["id"])
    assert got["status"] == "RUNNING" and got["started_at"] is not None
    summary = got["import_summary"]
    assert (summary["rows"], summary["accepted"], summary["duplicates"], summary["do_not_call"],
            summary["invalid"], summary["error"]) == (2, 2, 0, 0, 0, None)
    assert summary["imported_at"] is not None
    stats = got["statistics"]
    assert (stats["total"], stats["pending"], stats["attempts"], stats["progress_percent"]) == (2, 2, 0, 0.0)
    assert stats["cost"] == "0.00" and stats["answer_rate"] is None
    calls = campaign_api_calls(client, tenant, body["id"])
    assert sorted(c["phone_number"] for c in calls) == ["+923001234567", "+923007654321"]
    assert {(c["status"], c["max_retries"], c["campaign_id"]) for c in calls} == {("QUEUED", 3, body["id"])}


def campaign_api_calls(client: Any, tenant: Any, campaign_id: str, query: str = "") -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/campaigns/{campaign_id}/calls{query}", headers=tenant.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]  # type: ignore[no-any-return]


def test_optional_fields(campaign_api: Any, client: Any, tenant: Any, sessions: Any) -> None:
    start_at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    response = campaign_api.create(tenant, retry_delay_seconds=90, caller_id="+924235761234",
                                   start_at=start_at.isoformat(), window_start="10:30", window_end="02:00")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["retry_delay_seconds"] == 90 and body["caller_id"] == "924235761234"
    assert body["calling_window"] == {"start": "10:30", "end": "02:00", "timezone": "Asia/Karachi"}
    assert datetime.fromisoformat(body["start_at"]) == start_at

    campaign_api.run_import(body["id"])
    got = campaign_api.get(tenant, body["id"])
    assert got["status"] == "SCHEDULED" and got["started_at"] is None
    for call in calls_of(sessions, body["id"]):
        assert (call.retry_delay_seconds, call.caller_id) == (90, "924235761234")
        assert call.next_attempt_at == start_at  # nothing is due before the campaign starts


@pytest.mark.parametrize(("fields", "field"), [
    ({"window_start": "9:00"}, "window_start"),
    ({"window_end": "24:00"}, "window_end"),
    ({"window_start": "10:00", "window_end": "10:00"}, "window_end"),  # an empty window
    ({"max_retries": "11"}, "max_retries"),
    ({"concurrent_limit": "0"}, "concurrent_limit"),
    ({"retry_delay_seconds": "5"}, "retry_delay_seconds"),
    ({"caller_id": "abc"}, "caller_id"),
    ({"start_at": "2030-01-01T10:00:00"}, "start_at"),  # no zone
])
def test_invalid_fields_are_422(campaign_api: Any, tenant: Any, sessions: Any, settings: Any,
                                fields: dict[str, str], field: str) -> None:
    before = uploads(settings)
    error = assert_error(campaign_api.create(tenant, **fields), 422)
    assert field in str(error["details"]), error
    assert campaign_count(sessions, tenant.account_id) == 0
    assert uploads(settings) == before


@pytest.mark.parametrize(("data", "code"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "BINARY_FILE"),
    (b"phone\n0300\x001234567\n", "BINARY_FILE"),
    (b"phone\n03001234567\n\xff\xfe\xfa03007654321\n", "INVALID_ENCODING"),
    (b"", "EMPTY_FILE"),
    (b"\n\n  \n", "EMPTY_FILE"),
    (b"phone_number\n", "EMPTY_FILE"),
    (b"name,city\nAli,Lahore\nSara,Karachi\n", "NO_PHONE_COLUMN"),
])
def test_bad_csv_is_422_and_creates_nothing(campaign_api: Any, tenant: Any, sessions: Any, settings: Any,
                                            data: bytes, code: str) -> None:
    before = uploads(settings)
    error = assert_error(campaign_api.create(tenant, data), 422, code)
    assert error["details"] == {"csv_file": [error["message"]]}
    assert campaign_count(sessions, tenant.account_id) == 0
    assert uploads(settings) == before


def test_missing_csv_file_is_422(client: Any, campaign_api: Any, tenant: Any, sessions: Any) -> None:
    response = client.post("/api/v1/campaigns", headers=tenant.headers, content_type="multipart/form-data",
                           data={"name": "x", "audio_id": campaign_api.audio_of(tenant)})
    assert "csv_file" in str(assert_error(response, 422)["details"])
    assert campaign_count(sessions, tenant.account_id) == 0


def test_csv_over_the_size_limit_is_413(settings: Any, campaign_api: Any, tenant: Any, sessions: Any) -> None:
    small = create_app(replace(settings, max_csv_bytes=70 * 1024))
    small_client = small.test_client()
    before = uploads(settings)
    row = b"03001234567\n"
    big = b"phone\n" + row * (80 * 1024 // len(row))  # larger than the limit, past the sniffed head
    error = assert_error(campaign_api.create(tenant, big, client_=small_client), 413, "CSV_TOO_LARGE")
    assert "csv_file" in error["details"]
    assert campaign_count(sessions, tenant.account_id) == 0
    assert uploads(settings) == before
    assert not any(name.endswith(".part") for name in uploads(settings))
    # just under the limit is accepted
    fits = b"phone\n" + row * (60 * 1024 // len(row))
    assert campaign_api.create(tenant, fits, client_=small_client).status_code == 201
    small.extensions["zenscall"].engine.dispose()


def test_audio_of_another_tenant_is_404(campaign_api: Any, make_tenant: Any, sessions: Any) -> None:
    owner, other = make_tenant(), make_tenant()
    response = campaign_api.create(other, audio_id=campaign_api.audio_of(owner))
    assert_error(response, 404, "NOT_FOUND")
    assert campaign_count(sessions, other.account_id) == 0


# -- listing --------------------------------------------------------------------------------------


def test_list_filters_by_status_and_pages(campaign_api: Any, client: Any, tenant: Any) -> None:
    first = campaign_api.imported(tenant)
    second = campaign_api.imported(tenant)
    importing = campaign_api.create(tenant).get_json()
    assert client.post(f"/api/v1/campaigns/{second['id']}/pause", headers=tenant.headers).status_code == 200

    body = client.get("/api/v1/campaigns?per_page=2", headers=tenant.headers).get_json()
    assert [c["id"] for c in body["data"]] == [importing["id"], second["id"]]  # newest first
    assert body["pagination"] == {"page": 1, "per_page": 2, "total": 3, "total_pages": 2,
                                  "has_next": True, "has_prev": False}
    assert "statistics" not in body["data"][0]
    page2 = client.get("/api/v1/campaigns?per_page=2&page=2", headers=tenant.headers).get_json()
    assert [c["id"] for c in page2["data"]] == [first["id"]]

    for status, expected in (("RUNNING", [first["id"]]), ("PAUSED", [second["id"]]),
                             ("IMPORTING", [importing["id"]]), ("COMPLETED", [])):
        data = client.get(f"/api/v1/campaigns?status={status}", headers=tenant.headers).get_json()["data"]
        assert [c["id"] for c in data] == expected, status
    assert_error(client.get("/api/v1/campaigns?status=DONE", headers=tenant.headers), 422)


# -- lifecycle -----------------------------------------------------------------------------------


def post(client: Any, tenant: Any, path: str, **kwargs: Any) -> Any:
    return client.post(path, headers=tenant.headers, **kwargs)


def test_pause_resume_cancel_transitions(campaign_api: Any, client: Any, tenant: Any) -> None:
    cid = campaign_api.imported(tenant)["id"]
    base = f"/api/v1/campaigns/{cid}"
    assert_error(post(client, tenant, f"{base}/resume"), 409, "INVALID_CAMPAIGN_STATE")

    paused = post(client, tenant, f"{base}/pause")
    assert paused.status_code == 200
    assert (paused.get_json()["status"], paused.get_json()["pause_reason"]) == ("PAUSED", "PAUSED_BY_USER")
    error = assert_error(post(client, tenant, f"{base}/pause"), 409, "INVALID_CAMPAIGN_STATE")
    assert error["details"] == {"status": "PAUSED"}

    resumed = post(client, tenant, f"{base}/resume").get_json()
    assert (resumed["status"], resumed["pause_reason"]) == ("RUNNING", None)

    cancelled = post(client, tenant, f"{base}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "CANCELLED" and cancelled.get_json()["completed_at"]
    for action in ("pause", "resume", "cancel"):
        assert_error(post(client, tenant, f"{base}/{action}"), 409, "INVALID_CAMPAIGN_STATE")


def test_importing_and_scheduled_campaigns(campaign_api: Any, client: Any, tenant: Any) -> None:
    importing = campaign_api.create(tenant).get_json()["id"]
    assert_error(post(client, tenant, f"/api/v1/campaigns/{importing}/pause"), 409)
    # cancelled while importing: the import job then leaves nothing to dial
    assert post(client, tenant, f"/api/v1/campaigns/{importing}/cancel").get_json()["status"] == "CANCELLED"
    assert campaign_api.run_import(importing)["skipped"] == "campaign is CANCELLED"
    assert campaign_api.get(tenant, importing)["statistics"]["total"] == 0

    later = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    scheduled = campaign_api.imported(tenant, start_at=later)["id"]
    assert post(client, tenant, f"/api/v1/campaigns/{scheduled}/pause").get_json()["status"] == "PAUSED"
    # resuming before start_at goes back to waiting for it
    assert post(client, tenant, f"/api/v1/campaigns/{scheduled}/resume").get_json()["status"] == "SCHEDULED"


def test_cancel_marks_pending_calls_and_hangs_up_live_ones_when_asked(
        campaign_api: Any, client: Any, tenant: Any, sessions: Any) -> None:
    data = b"phone\n03001110001\n03001110002\n03001110003\n03001110004\n"
    first = campaign_api.imported(tenant, data)["id"]
    set_calls(sessions, first, "+923001110001", status=CallStatus.ANSWERED)
    set_calls(sessions, first, "+923001110002", status=CallStatus.COMPLETED)
    body = post(client, tenant, f"/api/v1/campaigns/{first}/cancel").get_json()
    assert body["statistics"]["cancelled"] == 2 and body["statistics"]["in_progress"] == 1
    by_number = {c.phone_number: c for c in calls_of(sessions, first)}
    live, done = by_number["+923001110001"], by_number["+923001110002"]
    assert live.status == CallStatus.ANSWERED and live.cancel_requested_at is None  # plays to its end
    assert done.status == CallStatus.COMPLETED
    for number in ("+923001110003", "+923001110004"):
        call = by_number[number]
        assert (call.status, call.last_cause, call.next_attempt_at) == (CallStatus.CANCELLED,
                                                                       "CAMPAIGN_CANCELLED", None)
        assert call.ended_at is not None

    second = campaign_api.imported(tenant, data)["id"]
    set_calls(sessions, second, "+923001110001", status=CallStatus.RINGING)
    set_calls(sessions, second, "+923001110002", status=CallStatus.DIALING)
    response = post(client, tenant, f"/api/v1/campaigns/{second}/cancel", json={"hang_up_live": True})
    assert response.status_code == 200, response.get_json()
    by_number = {c.phone_number: c for c in calls_of(sessions, second)}
    assert by_number["+923001110001"].cancel_requested_at is not None
    assert by_number["+923001110002"].cancel_requested_at is not None
    assert by_number["+923001110001"].status == CallStatus.RINGING  # the dialer hangs it up
    assert by_number["+923001110003"].status == CallStatus.CANCELLED


# -- the campaign's calls, report and rejected rows -------------------------------------------


REPORT_CSV = (
    b"Name;Mobile;City\r\n"        # 1
    b"Ali;0300-1110001;Lahore\r\n"  # 2
    b"Sara;03001110002;Karachi\r\n"  # 3
    b"Bad;=1+2;Quetta\r\n"          # 4 refused: a formula must not run in a spreadsheet
    b"Dup;+92 300 1110001;Pindi\r\n"  # 5 duplicate of line 2
    b"Sci;9.23001E+11;Sukkur\r\n"   # 6 refused
    b"Umar;03001110003;Multan\r\n"  # 7
)


def test_calls_filters_report_and_rejected(campaign_api: Any, client: Any, tenant: Any, sessions: Any) -> None:
    got = campaign_api.imported(tenant, REPORT_CSV, filename="list.csv")
    cid = got["id"]
    assert got["import_summary"]["accepted"] == 3 and got["import_summary"]["duplicates"] == 1
    assert got["import_summary"]["invalid"] == 2
    set_calls(sessions, cid, "+923001110001", status=CallStatus.COMPLETED, attempts_count=1, billsec=31,
              cost=Decimal("2.5000"), last_cause="NORMAL_CLEARING", last_sip_status=200, next_attempt_at=None)
    set_calls(sessions, cid, "+923001110002", status=CallStatus.BUSY, attempts_count=2, last_cause="USER_BUSY",
              last_sip_status=486, next_attempt_at=None)

    assert len(campaign_api_calls(client, tenant, cid)) == 3
    busy = campaign_api_calls(client, tenant, cid, "?status=BUSY")
    assert [(c["phone_number"], c["attempt_count"], c["hangup_cause"]) for c in busy] == [
        ("+923001110002", 2, "USER_BUSY")]
    by_number = campaign_api_calls(client, tenant, cid, "?phone_number=0300-1110001")
    assert [c["status"] for c in by_number] == ["COMPLETED"]
    page = client.get(f"/api/v1/campaigns/{cid}/calls?per_page=2&page=2", headers=tenant.headers).get_json()
    assert len(page["data"]) == 1 and page["pagination"]["total"] == 3
    assert_error(client.get(f"/api/v1/campaigns/{cid}/calls?phone_number=12", headers=tenant.headers), 422)
    assert_error(client.get(f"/api/v1/campaigns/{cid}/calls?status=DONE", headers=tenant.headers), 422)

    report = client.get(f"/api/v1/campaigns/{cid}/report.csv", headers=tenant.headers)
    assert f'filename="campaign-{cid}-report.csv"' in report.headers["Content-Disposition"]
    rows = read_csv(report)
    assert rows[0] == ["phone_number", "status", "attempts", "last_cause", "sip_status", "billsec", "cost_pkr",
                       "answered_at", "ended_at", "call_id"]
    ids = {c.phone_number: c.id for c in calls_of(sessions, cid)}
    # "+92..." would be a formula to a spreadsheet: the number is written as text ('+92...)
    assert sorted(r[:7] + [r[9]] for r in rows[1:]) == [
        ["'+923001110001", "COMPLETED", "1", "NORMAL_CLEARING", "200", "31", "2.50", ids["+923001110001"]],
        ["'+923001110002", "BUSY", "2", "USER_BUSY", "486", "0", "0.00", ids["+923001110002"]],
        ["'+923001110003", "QUEUED", "0", "", "", "0", "0.00", ids["+923001110003"]],
    ]

    rejected = read_csv(client.get(f"/api/v1/campaigns/{cid}/rejected.csv", headers=tenant.headers))
    assert rejected == [["line", "value", "reason"],
                        ["4", "'=1+2", "contains invalid characters"],
                        ["6", "9.23001E+11", "scientific notation (Excel damage)"]]
    assert rejected[1][1].startswith("'")  # never "=...": a spreadsheet would run it


def test_statistics_follow_the_calls(campaign_api: Any, client: Any, tenant: Any, sessions: Any) -> None:
    data = b"phone\n" + b"".join(b"0300111000%d\n" % i for i in range(1, 6))
    cid = campaign_api.imported(tenant, data)["id"]
    set_calls(sessions, cid, "+923001110001", status=CallStatus.COMPLETED, attempts_count=1, billsec=40,
              cost=Decimal("2.50"))
    set_calls(sessions, cid, "+923001110002", status=CallStatus.COMPLETED, attempts_count=2, billsec=20,
              cost=Decimal("1.25"))
    set_calls(sessions, cid, "+923001110003", status=CallStatus.NO_ANSWER, attempts_count=2)
    set_calls(sessions, cid, "+923001110004", status=CallStatus.RINGING, attempts_count=1)
    stats = campaign_api.get(tenant, cid)["statistics"]
    assert stats == {**stats, "total": 5, "pending": 1, "in_progress": 1, "completed": 2, "no_answer": 1,
                     "busy": 0, "failed": 0, "cancelled": 0, "attempts": 6, "answer_rate": round(2 / 3, 4),
                     "average_billsec": 30.0, "cost": "3.75", "progress_percent": 60.0}
    assert stats["estimated_seconds_left"] is not None and stats["estimated_seconds_left"] >= 0


# -- isolation -------------------------------------------------------------------------------------


def test_another_tenants_campaign_is_404_everywhere(campaign_api: Any, client: Any, make_tenant: Any) -> None:
    owner, other = make_tenant(), make_tenant()
    cid = campaign_api.imported(owner)["id"]
    base = f"/api/v1/campaigns/{cid}"
    for method, path in (("GET", base), ("GET", f"{base}/calls"), ("GET", f"{base}/report.csv"),
                         ("GET", f"{base}/rejected.csv"), ("POST", f"{base}/pause"), ("POST", f"{base}/resume"),
                         ("POST", f"{base}/cancel")):
        assert_error(client.open(path, method=method, headers=other.headers), 404, "NOT_FOUND")
    assert client.get("/api/v1/campaigns", headers=other.headers).get_json()["data"] == []
    assert_error(client.get("/api/v1/campaigns/not-a-campaign", headers=owner.headers), 404, "NOT_FOUND")
    assert campaign_api.get(owner, cid)["status"] == "RUNNING"  # untouched by the other tenant


def test_campaign_routes_need_authentication(client: Any) -> None:
    assert_error(client.get("/api/v1/campaigns"), 401)
    assert_error(client.post("/api/v1/campaigns"), 401)

