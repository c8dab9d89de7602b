"""/balance, /billing/transactions, and concurrent spending that can never overspend."""

from __future__ import annotations

import threading
from decimal import Decimal

import sqlalchemy as sa

from core.models import Call, LedgerEntry
from core.states import LedgerKind
from tests.api.conftest import assert_error

LEDGER_FIELDS = {"id", "kind", "amount", "hold", "balance_after", "reserved_after", "call_id", "attempt_id",
                 "description", "created_at"}


def test_balance_shape(client, make_tenant):
    tenant = make_tenant(balance="1000", rate_per_minute=Decimal("3.2500"), pulse_seconds=60)
    response = client.get("/api/v1/balance", headers=tenant.headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body == {
        "account_id": tenant.account_id,
        "balance": "1000.00",
        "reserved": "0.00",
        "available": "1000.00",
        "currency": "PKR",
        "rate": {"per_minute": "3.25", "pulse_seconds": 60,
                 "description": "PKR 3.25 per minute, billed per 60-second pulse of answered time"},
        "max_concurrent_calls": body["max_concurrent_calls"],
    }
    assert isinstance(body["max_concurrent_calls"], int)


def test_balance_after_a_call_reserves_worst_case(client, tenant, upload_audio, place_call):
    audio = upload_audio(tenant, seconds=3)
    assert place_call(tenant, audio["id"]).status_code == 201
    body = client.get("/api/v1/balance", headers=tenant.headers).get_json()
    # 3 s message + 2 s slack = 5 s -> one 30 s pulse at 2.50/min = 1.25
    assert (body["balance"], body["reserved"], body["available"]) == ("1000.00", "1.25", "998.75")


def test_transactions_list_the_ledger(client, tenant, upload_audio, place_call):
    audio = upload_audio(tenant)
    call = place_call(tenant, audio["id"]).get_json()
    response = client.get("/api/v1/billing/transactions", headers=tenant.headers)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"data", "pagination"}
    assert body["pagination"]["total"] == 2
    reserve, topup = body["data"]  # newest first
    assert set(reserve) == LEDGER_FIELDS
    assert (topup["kind"], topup["amount"], topup["hold"], topup["balance_after"]) == \
        ("TOPUP", "1000.00", "0.00", "1000.00")
    assert (reserve["kind"], reserve["amount"], reserve["hold"], reserve["reserved_after"], reserve["call_id"]) == \
        ("RESERVE", "0.00", "1.25", "1.25", call["id"])
    assert reserve["attempt_id"]
    only = client.get("/api/v1/billing/transactions?kind=TOPUP&per_page=1", headers=tenant.headers).get_json()
    assert [e["kind"] for e in only["data"]] == ["TOPUP"]
    assert only["pagination"] == {"page": 1, "per_page": 1, "total": 1, "total_pages": 1,
                                  "has_next": False, "has_prev": False}
    error = assert_error(client.get("/api/v1/billing/transactions?kind=GIFT", headers=tenant.headers), 422)
    assert "kind" in error["details"]


def test_concurrent_calls_never_overspend(make_app, make_tenant, upload_audio, books):
    """Balance for exactly 4 reservations of 1.25; 12 simultaneous calls: 4 succeed, 8 answer 402."""
    app = make_app(ratelimit_create="1000 per minute", ratelimit_default="1000 per minute")
    tenant = make_tenant(balance="5.00")
    audio = upload_audio(tenant)
    codes: list[int] = []
    barrier = threading.Barrier(12)

    def post(n: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post("/api/v1/calls", headers=tenant.headers,
                               json={"phone_number": f"030012345{n:02d}", "audio_id": audio["id"]})
        if response.status_code == 402:
            assert response.get_json()["error"]["code"] == "INSUFFICIENT_BALANCE"
        codes.append(response.status_code)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(codes) == [201] * 4 + [402] * 8
    row, sums = books(tenant.account_id)
    assert row == sums == (Decimal("5.00"), Decimal("5.00"))
    # a refused call leaves no row; each placed one holds exactly its own reservation
    with app.extensions["zenscall"].sessions() as session:
        calls = session.execute(sa.select(Call.id, Call.next_attempt_id).where(
            Call.account_id == tenant.account_id)).all()
        holds = session.execute(sa.select(LedgerEntry.call_id, LedgerEntry.attempt_id, LedgerEntry.hold).where(
            LedgerEntry.account_id == tenant.account_id, LedgerEntry.kind == LedgerKind.RESERVE)).all()
    assert len(calls) == 4
    assert sorted((c, a) for c, a, _ in holds) == sorted(calls)
    assert {h for _, _, h in holds} == {Decimal("1.25")}
    balance = app.test_client().get("/api/v1/balance", headers=tenant.headers).get_json()
    assert balance["available"] == "0.00"


def test_concurrent_cancels_release_once(make_app, tenant, upload_audio, place_call, books):
    app = make_app(ratelimit_default="1000 per minute")
    audio = upload_audio(tenant)
    call = place_call(tenant, audio["id"]).get_json()
    codes: list[int] = []
    barrier = threading.Barrier(6)

    def cancel() -> None:
        client = app.test_client()
        barrier.wait()
        codes.append(client.post(f"/api/v1/calls/{call['id']}/cancel", headers=tenant.headers).status_code)

    threads = [threading.Thread(target=cancel) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert codes.count(200) >= 1 and set(codes) <= {200, 409}
    row, sums = books(tenant.account_id)
    assert row == sums == (Decimal("1000"), Decimal("0"))
