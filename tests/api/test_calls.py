"""/calls: place (numbers to E.164, audio ownership, balance), list with filters, get, cancel, idempotency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from billing.ledger import balance_of
from core.call_states import CallStatus
from core.models import Account, AudioFile, Call
from core.states import AudioStatus
from tests.api.conftest import assert_error, statements_sent
from tests.waiting import wait_for

CALL_FIELDS = {"id", "phone_number", "status", "audio_id", "campaign_id", "caller_id", "max_retries",
               "retry_delay_seconds", "attempt_count", "next_attempt_at", "hangup_cause", "sip_status", "billsec",
               "cost", "currency", "answered_at", "ended_at", "cancel_requested_at", "created_at", "updated_at",
               "status_callback"}


@pytest.fixture()
def audio(tenant, upload_audio):
    return upload_audio(tenant, seconds=2)


def test_place_call_exactly_as_the_seed(client, tenant, audio, settings, app):
    response = client.post("/api/v1/calls", headers={**tenant.headers, "Content-Type": "application/json"},
                           data='{"phone_number": "03001234567", "audio_id": "' + audio["id"] + '"}')
    assert response.status_code == 201, response.get_json()
    call = response.get_json()
    assert set(call) == CALL_FIELDS | {"attempts"}
    assert call["status"] == "QUEUED"
    assert call["phone_number"] == "+923001234567"
    assert call["audio_id"] == audio["id"]
    assert call["attempts"] == [] and call["attempt_count"] == 0
    assert call["max_retries"] == settings.default_max_retries
    assert call["cost"] == "0.00" and call["currency"] == "PKR"
    # the dialer's job follows on its queue (sent off the request), named by the call id
    queue = app.extensions["zenscall"].dial_queue
    # (job_ids, not fetch_job: that drops the id of a job it cannot find yet from the queue)
    wait_for("the call's dial job", lambda: f"dial-{call['id']}" in queue.job_ids, timeout=10)
    assert queue.fetch_job(f"dial-{call['id']}").args == (call["id"],)


def test_place_call_with_extras(place_call, tenant, audio):
    call = place_call(tenant, audio["id"], caller_id="+924235761234", max_retries=3,
                      retry_delay_seconds=60).get_json()
    assert (call["caller_id"], call["max_retries"], call["retry_delay_seconds"]) == ("924235761234", 3, 60)


@pytest.mark.parametrize("number, e164", [
    ("03001234567", "+923001234567"),
    ("0300-1234567", "+923001234567"),
    ("0300 123 4567", "+923001234567"),
    ("+923001234567", "+923001234567"),
    ("923001234567", "+923001234567"),
    ("00923001234567", "+923001234567"),
    ("021-34567890", "+922134567890"),
    ("042 35761234", "+924235761234"),
    ("+92 51 2345678", "+92512345678"),
])
def test_pakistani_number_forms_become_e164(place_call, tenant, audio, number, e164):
    response = place_call(tenant, audio["id"], phone=number)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["phone_number"] == e164


@pytest.mark.parametrize("number", ["12345", "+14155552671", "0300123456", "030012345678", "abc", "0000000000"])
def test_invalid_number_is_422_naming_the_field(place_call, tenant, audio, number):
    error = assert_error(place_call(tenant, audio["id"], phone=number), 422, "VALIDATION_ERROR")
    assert list(error["details"]) == ["phone_number"]


def test_missing_fields_are_422_per_field(client, tenant):
    error = assert_error(client.post("/api/v1/calls", headers=tenant.headers, json={}), 422, "VALIDATION_ERROR")
    assert set(error["details"]) == {"phone_number", "audio_id"}
    error = assert_error(client.post("/api/v1/calls", headers=tenant.headers,
                                     json={"phone_number": "03001234567", "audio_id": "x", "max_retries": 99}), 422)
    assert set(error["details"]) == {"max_retries"}


def test_unknown_audio_is_404(place_call, tenant):
    assert_error(place_call(tenant, "550e8400-e29b-41d4-a716-446655440000"), 404, "NOT_FOUND")


def test_insufficient_balance_is_402_with_the_seed_message(place_call, make_tenant, upload_audio, books):
    broke = make_tenant(balance="0")
    audio = upload_audio(broke)
    error = assert_error(place_call(broke, audio["id"]), 402, "INSUFFICIENT_BALANCE")
    assert error["message"] == "Your balance is too low to make this call. Current balance: PKR 0.00"
    assert error["details"]["currency"] == "PKR"
    assert books(broke.account_id) == ((Decimal("0"), Decimal("0")),) * 2


def test_insufficient_balance_message_shows_available(place_call, make_tenant, upload_audio):
    # 2 s message: one 30 s pulse at 2.50/min = 1.25 reserved per attempt
    tenant = make_tenant(balance="1.30")
    audio = upload_audio(tenant)
    assert place_call(tenant, audio["id"]).status_code == 201
    error = assert_error(place_call(tenant, audio["id"]), 402, "INSUFFICIENT_BALANCE")
    assert error["message"] == "Your balance is too low to make this call. Current balance: PKR 0.05"


@pytest.fixture()
def terms_selects(app):
    """The terms SELECTs (the message joined with its account) the app sends meanwhile."""
    with statements_sent(app.extensions["zenscall"].engine, "FROM audio_files INNER JOIN accounts") as seen:
        yield seen


def test_a_later_call_takes_the_terms_read_for_the_first(place_call, tenant, audio, terms_selects, sessions):
    assert place_call(tenant, audio["id"]).status_code == 201
    assert len(terms_selects) == 1
    second = place_call(tenant, audio["id"])
    assert second.status_code == 201, second.get_json()
    assert len(terms_selects) == 1  # checked by the reservation's UPDATE instead
    # a replay-able request or one with a status_callback reads them, as before
    assert place_call(tenant, audio["id"], headers={"Idempotency-Key": "k-terms"}).status_code == 201
    assert len(terms_selects) == 2
    with sessions() as session:
        assert session.get(Call, second.get_json()["id"]).rate_per_minute == Decimal("2.50")


def test_remembered_terms_that_changed_are_read_again(place_call, tenant, audio, sessions, books):
    assert place_call(tenant, audio["id"]).status_code == 201
    with sessions() as session:
        session.execute(sa.update(Account).where(Account.id == tenant.account_id)
                        .values(rate_per_minute=Decimal("5.00"), pulse_seconds=60))
        session.commit()
    call = place_call(tenant, audio["id"]).get_json()
    with sessions() as session:
        row = session.get(Call, call["id"])
        assert (row.rate_per_minute, row.pulse_seconds) == (Decimal("5.00"), 60)
        # 2 s message: worst case one 60 s pulse at 5.00/min, on top of the first call's 1.25
        assert balance_of(session, tenant.account_id).reserved == Decimal("6.25")
    (balance, reserved), sums = books(tenant.account_id)
    assert sums == (balance, reserved)


@pytest.mark.parametrize("status, code", [(AudioStatus.PROCESSING, "AUDIO_NOT_READY"),
                                          (AudioStatus.FAILED, "AUDIO_NOT_READY"), (AudioStatus.DELETED, "NOT_FOUND")])
def test_remembered_terms_of_a_message_no_longer_ready(place_call, tenant, audio, sessions, books, status, code):
    assert place_call(tenant, audio["id"]).status_code == 201
    before = books(tenant.account_id)
    with sessions() as session:
        session.execute(sa.update(AudioFile).where(AudioFile.id == audio["id"]).values(status=status))
        session.commit()
    assert_error(place_call(tenant, audio["id"]), 404 if code == "NOT_FOUND" else 409, code)
    assert books(tenant.account_id) == before


def test_remembered_terms_of_a_disabled_account(place_call, tenant, audio, sessions, books):
    assert place_call(tenant, audio["id"]).status_code == 201
    before = books(tenant.account_id)
    with sessions() as session:  # the API key stays verified in this process for a few seconds
        session.execute(sa.update(Account).where(Account.id == tenant.account_id).values(active=False))
        session.commit()
    assert_error(place_call(tenant, audio["id"]), 403, "ACCOUNT_DISABLED")
    assert books(tenant.account_id) == before


def test_get_call_with_attempts(client, tenant, audio, place_call):
    call = place_call(tenant, audio["id"]).get_json()
    got = client.get(f"/api/v1/calls/{call['id']}", headers=tenant.headers)
    assert got.status_code == 200
    assert got.get_json() == call
    assert_error(client.get("/api/v1/calls/nope", headers=tenant.headers), 404, "NOT_FOUND")


def test_list_calls_filters_and_envelope(client, make_tenant, upload_audio, place_call, set_call):
    tenant = make_tenant()
    audio = upload_audio(tenant)
    numbers = ["03001111111", "03002222222", "03003333333", "03001111111"]
    ids = [place_call(tenant, audio["id"], phone=n).get_json()["id"] for n in numbers]
    set_call(ids[0], status=CallStatus.COMPLETED, billsec=12)
    set_call(ids[1], status=CallStatus.BUSY)
    set_call(ids[2], created_at=datetime(2026, 1, 10, 12, 0, tzinfo=UTC))
    set_call(ids[3], created_at=datetime(2026, 1, 12, 12, 0, tzinfo=UTC))

    def listing(query=""):
        response = client.get(f"/api/v1/calls{query}", headers=tenant.headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    everything = listing()
    assert set(everything) == {"data", "pagination"}
    assert everything["pagination"] == {"page": 1, "per_page": 20, "total": 4, "total_pages": 1,
                                        "has_next": False, "has_prev": False}
    assert set(everything["data"][0]) == CALL_FIELDS
    # newest first
    assert [c["id"] for c in everything["data"]] == [ids[1], ids[0], ids[3], ids[2]]

    completed = listing("?page=1&per_page=20&status=COMPLETED")
    assert [c["id"] for c in completed["data"]] == [ids[0]]
    assert completed["data"][0]["billsec"] == 12
    assert {c["id"] for c in listing("?status=busy,completed")["data"]} == {ids[0], ids[1]}
    assert {c["id"] for c in listing("?phone_number=0300-1111111")["data"]} == {ids[0], ids[3]}
    assert {c["id"] for c in listing("?date_from=2026-01-10&date_to=2026-01-11")["data"]} == {ids[2]}
    assert {c["id"] for c in listing("?date_from=2026-01-11T00:00:00Z&date_to=2026-01-31")["data"]} == {ids[3]}
    page2 = listing("?page=2&per_page=3")
    assert page2["pagination"] == {"page": 2, "per_page": 3, "total": 4, "total_pages": 2,
                                   "has_next": False, "has_prev": True}
    assert [c["id"] for c in page2["data"]] == [ids[2]]
    assert listing("?page=9")["data"] == []


@pytest.mark.parametrize("query, field", [
    ("?status=DONE", "status"),
    ("?phone_number=12", "phone_number"),
    ("?date_from=yesterday", "date_from"),
    ("?date_to=2026-13-01", "date_to"),
    ("?page=0", "page"),
    ("?per_page=1000", "per_page"),
])
def test_list_calls_bad_filters_are_422(client, tenant, query, field):
    error = assert_error(client.get(f"/api/v1/calls{query}", headers=tenant.headers), 422)
    assert field in error["details"]


def test_cancel_queued_call_releases_reservation(client, tenant, audio, place_call, books):
    before = books(tenant.account_id)
    call = place_call(tenant, audio["id"]).get_json()
    reserved = books(tenant.account_id)
    assert reserved[0] == reserved[1] and reserved[0][1] == before[0][1] + Decimal("1.25")
    response = client.post(f"/api/v1/calls/{call['id']}/cancel", headers=tenant.headers)
    assert response.status_code == 200
    cancelled = response.get_json()
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["ended_at"] is not None and cancelled["cancel_requested_at"] is not None
    after = books(tenant.account_id)
    assert after == (before[0], before[0])  # the hold is gone; the ledger sums equal the account row
    kinds = [e["kind"] for e in client.get(f"/api/v1/billing/transactions?call_id={call['id']}",
                                           headers=tenant.headers).get_json()["data"]]
    assert kinds == ["RELEASE", "RESERVE"]


def test_cancel_final_call_is_409(client, tenant, audio, place_call, set_call):
    call = place_call(tenant, audio["id"]).get_json()
    assert client.post(f"/api/v1/calls/{call['id']}/cancel", headers=tenant.headers).status_code == 200
    error = assert_error(client.post(f"/api/v1/calls/{call['id']}/cancel", headers=tenant.headers), 409,
                         "CALL_ALREADY_FINAL")
    assert error["details"] == {"status": "CANCELLED"}
    other = place_call(tenant, audio["id"]).get_json()
    set_call(other["id"], status=CallStatus.COMPLETED)
    assert_error(client.post(f"/api/v1/calls/{other['id']}/cancel", headers=tenant.headers), 409)


def test_cancel_live_call_asks_the_dialer(client, tenant, audio, place_call, set_call, app):
    call = place_call(tenant, audio["id"]).get_json()
    set_call(call["id"], status=CallStatus.RINGING)
    response = client.post(f"/api/v1/calls/{call['id']}/cancel", headers=tenant.headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "RINGING" and body["cancel_requested_at"] is not None
    assert app.extensions["zenscall"].dial_queue.fetch_job(f"cancel-{call['id']}") is not None


# --- Idempotency-Key -----------------------------------------------------------------------------

def test_idempotency_key_replays_the_same_call(client, tenant, audio, place_call):
    first = place_call(tenant, audio["id"], headers={"Idempotency-Key": "order-42"})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = place_call(tenant, audio["id"], headers={"Idempotency-Key": "order-42"})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    # the same number written differently is the same request
    same = place_call(tenant, audio["id"], phone="+923001234567", headers={"Idempotency-Key": "order-42"})
    assert same.status_code == 200 and same.get_json()["id"] == first.get_json()["id"]
    reserves = client.get("/api/v1/billing/transactions?kind=RESERVE", headers=tenant.headers).get_json()
    assert reserves["pagination"]["total"] == 1
    calls = client.get("/api/v1/calls", headers=tenant.headers).get_json()
    assert calls["pagination"]["total"] == 1


def test_idempotency_key_with_another_body_is_422(tenant, audio, place_call):
    place_call(tenant, audio["id"], headers={"Idempotency-Key": "k-1"})
    error = assert_error(place_call(tenant, audio["id"], phone="03009999999", headers={"Idempotency-Key": "k-1"}),
                         422, "IDEMPOTENCY_KEY_REUSED")
    assert error["details"]


def test_idempotency_keys_are_per_account(make_tenant, upload_audio, place_call):
    one, two = make_tenant(), make_tenant()
    a1, a2 = upload_audio(one), upload_audio(two)
    c1 = place_call(one, a1["id"], headers={"Idempotency-Key": "shared"})
    c2 = place_call(two, a2["id"], headers={"Idempotency-Key": "shared"})
    assert c1.status_code == c2.status_code == 201
    assert c1.get_json()["id"] != c2.get_json()["id"]


def test_idempotency_key_too_long_is_400(tenant, audio, place_call):
    assert_error(place_call(tenant, audio["id"], headers={"Idempotency-Key": "x" * 256}), 400,
                 "INVALID_IDEMPOTENCY_KEY")


def test_concurrent_requests_with_one_key_make_one_call(make_app, make_tenant, upload_audio, books):
    app = make_app(ratelimit_create="1000 per minute", ratelimit_default="1000 per minute")
    tenant = make_tenant()
    audio = upload_audio(tenant)
    results: list[tuple[int, str]] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post("/api/v1/calls", headers={**tenant.headers, "Idempotency-Key": "same-click"},
                               json={"phone_number": "03001234567", "audio_id": audio["id"]})
        results.append((response.status_code, response.get_json().get("id") or str(response.get_json())))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 8
    assert sorted(code for code, _ in results) == [200] * 7 + [201]
    assert len({call_id for _, call_id in results}) == 1
    (balance, reserved), sums = books(tenant.account_id)
    assert (balance, reserved) == sums == (Decimal("1000"), Decimal("1.25"))


def test_timestamps_are_utc_iso(place_call, tenant, audio):
    call = place_call(tenant, audio["id"]).get_json()
    created = datetime.fromisoformat(call["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)
