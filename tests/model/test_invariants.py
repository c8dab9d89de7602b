"""The checks of ``tests/model/invariants.py`` find what they look for (pure data, no services):
a clean snapshot passes, and each kind of breakage is reported."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from tests.model import invariants
from tests.model.invariants import Snapshot

ACC, CAMP = "acc-1", "camp-1"


def clean() -> Snapshot:
    """One account (cap 2), a campaign (limit 1) with one answered call, and a busy single call."""
    calls = {
        "c1": {"id": "c1", "account_id": ACC, "campaign_id": CAMP, "status": "COMPLETED", "attempts_count": 1,
               "max_retries": 0, "live_attempt_id": None, "ended_at": "t", "cost": Decimal("0.5000"),
               "cancel_requested_at": None, "next_attempt_at": None},
        "c2": {"id": "c2", "account_id": ACC, "campaign_id": None, "status": "BUSY", "attempts_count": 1,
               "max_retries": 0, "live_attempt_id": None, "ended_at": "t", "cost": Decimal(0),
               "cancel_requested_at": None, "next_attempt_at": None},
    }
    attempts = {
        "c1": [{"id": "a1", "call_id": "c1", "attempt_no": 1, "status": "COMPLETED", "hangup_cause": "NORMAL_CLEARING",
                "billsec": 20, "cost": Decimal("0.5000"), "rate_per_minute": Decimal("1.00"), "pulse_seconds": 30,
                "ended_at": "t"}],
        "c2": [{"id": "a2", "call_id": "c2", "attempt_no": 1, "status": "BUSY", "hangup_cause": "USER_BUSY",
                "billsec": 0, "cost": Decimal(0), "rate_per_minute": Decimal("1.00"), "pulse_seconds": 30,
                "ended_at": "t"}],
    }

    def entry(i: int, kind: str, attempt: str | None, amount: str = "0", hold: str = "0") -> dict[str, Any]:
        return {"id": i, "account_id": ACC, "kind": kind, "attempt_id": attempt, "call_id": attempt and "c",
                "amount": Decimal(amount), "hold": Decimal(hold)}

    ledger = [entry(1, "TOPUP", None, amount="10"), entry(2, "RESERVE", "a1", hold="1"),
              entry(3, "RESERVE", "a2", hold="1"), entry(4, "RELEASE", "a2", hold="-1"),
              entry(5, "RELEASE", "a1", hold="-1"), entry(6, "CHARGE", "a1", amount="-0.5")]
    accounts = {ACC: {"balance": Decimal("9.5"), "reserved": Decimal(0), "max_concurrent_calls": 2}}
    campaigns = {CAMP: {"status": "COMPLETED", "concurrent_limit": 1, "account_id": ACC}}
    switch = [
        {"uuid": "a1", "number": "923000000000", "vars": {"zc_call_id": "c1"}, "outcome": "answered",
         "answered": True, "start": 100.0, "end": 121.0, "billsec": 20},
        {"uuid": "a2", "number": "923000000002", "vars": {"zc_call_id": "c2"}, "outcome": "rejected_486",
         "answered": False, "start": 100.5, "end": 101.0, "billsec": 0},
    ]
    return Snapshot(accounts, calls, attempts, campaigns, ledger, switch)


def problems(snap: Snapshot) -> list[str]:
    return invariants.quiet(snap, node_limit=2).problems


def test_a_clean_snapshot_passes() -> None:
    assert problems(clean()) == []


def test_two_channels_to_one_number_and_one_attempt_twice() -> None:
    snap = clean()
    snap.switch[1]["number"] = snap.switch[0]["number"]
    assert any("two live channels" in p for p in problems(snap))
    snap = clean()
    snap.switch.append({**copy.deepcopy(snap.switch[1]), "start": 200.0, "end": 201.0})
    assert any("originated 2 times" in p for p in problems(snap))


def test_caps_counted_on_the_switch() -> None:
    snap = clean()
    snap.accounts[ACC]["max_concurrent_calls"] = 1
    assert any("live channels at" in p and "cap 1" in p for p in problems(snap))
    snap = clean()
    snap.switch.append({"uuid": "x", "number": "1", "vars": {}, "outcome": "answered", "answered": True,
                        "start": 100.6, "end": 100.7, "billsec": 0})  # with a1 and a2
    assert any("NODE_MAX_CHANNELS 2" in p for p in problems(snap))


def test_money_against_the_switch() -> None:
    snap = clean()
    snap.switch[0]["billsec"] = 40  # two pulses on the switch, one charged
    assert any("the switch counted 40 s" in p for p in problems(snap))
    snap = clean()
    snap.attempts["c1"][0]["hangup_cause"] = "OUTCOME_UNKNOWN"  # unknown, yet settled and charged
    found = problems(snap)
    assert any("OUTCOME_UNKNOWN but its hold was settled" in p for p in found)
    assert any("OUTCOME_UNKNOWN but was charged" in p for p in found)


def test_books_and_holds() -> None:
    snap = clean()
    snap.accounts[ACC]["balance"] = Decimal("9.4")
    assert any("balance 9.4 / ledger 9.5" in p for p in problems(snap))
    snap = clean()
    del snap.ledger[3]  # a2 never released
    snap.accounts[ACC]["reserved"] = Decimal(1)
    found = problems(snap)
    assert any("attempt a2" in p and "still holds 1" in p for p in found)
    assert any("reserved 1 once quiet" in p for p in found)


def test_calls_end_once_in_order() -> None:
    snap = clean()
    snap.calls["c2"]["status"] = "QUEUED"
    assert any("call c2 is still QUEUED" in p for p in problems(snap))
    snap = clean()
    second = {**snap.attempts["c1"][0], "id": "a3", "attempt_no": 2, "status": "BUSY", "cost": Decimal(0)}
    snap.attempts["c1"].append(second)
    snap.calls["c1"]["attempts_count"] = 2
    found = problems(snap)
    assert any("dialed again after attempt 1" in p for p in found)
    assert any("2 attempts with max_retries 0" in p for p in found)
