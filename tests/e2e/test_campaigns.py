"""Campaigns end to end: the API creates them, an RQ worker (or the job in-process) imports
them, a real ``python -m dialer`` dials them through the FreeSWITCH simulator, and the
statistics, the report, the switch's own per-call log and the books must all agree."""

from __future__ import annotations

import csv
import io
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing import ledger
from campaigns.importer import import_campaign
from core.call_states import CallStatus
from core.db import utcnow
from core.models import Call, Campaign, WebhookEvent
from tests.e2e.conftest import ROOT, SimProcess, Stack, wait_for

KARACHI = ZoneInfo("Asia/Karachi")
# the simulator's outcome (its per-call log) -> the call's final status
FINAL_OF = {"answered": "COMPLETED", "rejected_486": "BUSY", "ringing_180": "NO_ANSWER", "ringing_183": "NO_ANSWER",
            "rejected_480": "NO_ANSWER", "rejected_403": "FAILED", "rejected_404": "FAILED",
            "rejected_503": "FAILED"}
RETRIED_DIGITS = set("23789")  # busy, no answer, temporary failure: retried once with max_retries 1


def window_around_now(opens_in_hours: float, closes_in_hours: float) -> tuple[str, str]:
    """A daily window relative to the current Asia/Karachi time."""
    now = datetime.now(KARACHI)
    start, end = now + timedelta(hours=opens_in_hours), now + timedelta(hours=closes_in_hours)
    return start.strftime("%H:%M"), end.strftime("%H:%M")


def national(e164: str) -> str:
    return "0" + e164[3:]


def numbers(count: int, digits: str = "1234567890") -> list[str]:
    """Distinct numbers whose last digits cycle through ``digits`` (the simulator's outcomes)."""
    prefix = f"0345{secrets.randbelow(1000):03d}"
    return [f"{prefix}{i // len(digits):03d}{digits[i % len(digits)]}" for i in range(count)]


def create(stack: Stack, tenant: Any, audio_id: str, phones: list[str], *, window: tuple[str, str],
           **fields: Any) -> str:
    data = ("phone\n" + "\n".join(phones) + "\n").encode()
    form = {"name": "Eid broadcast", "audio_id": audio_id, "csv_file": (io.BytesIO(data), "numbers.csv"),
            "max_retries": "1", "concurrent_limit": "20", "window_start": window[0], "window_end": window[1],
            **{k: str(v) for k, v in fields.items()}}
    response = stack.client.post("/api/v1/campaigns", headers=tenant.headers, data=form,
                                 content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def import_now(stack: Stack, campaign_id: str) -> None:
    """Run the import job in-process and take its queued copy off the worker queue."""
    result = import_campaign(campaign_id, settings=stack.settings, engine=stack.sql)
    assert result["status"] == "RUNNING", result
    job = stack.client.application.extensions["zenscall"].work_queue.fetch_job(f"import-{campaign_id}")
    if job is not None:
        job.delete()


def get(stack: Stack, tenant: Any, campaign_id: str) -> dict[str, Any]:
    response = stack.client.get(f"/api/v1/campaigns/{campaign_id}", headers=tenant.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def wait_campaign(stack: Stack, tenant: Any, campaign_id: str, status: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_for(f"campaign {campaign_id} to become {status}",
                    lambda: (lambda body: body if body["status"] == status else None)(get(stack, tenant, campaign_id)),
                    timeout, interval=0.3)


def calls(stack: Stack, campaign_id: str) -> dict[str, Any]:
    with stack.sql.connect() as conn:
        return {row.phone_number: row for row in conn.execute(
            sa.select(Call.__table__).where(Call.campaign_id == campaign_id))}


def set_calls(stack: Stack, campaign_id: str, *where: Any, **values: Any) -> None:
    with stack.sql.begin() as conn:
        conn.execute(sa.update(Call).where(Call.campaign_id == campaign_id, *where).values(**values))


def max_overlap(rows: list[dict[str, Any]]) -> int:
    """The most channels of ``rows`` the switch had up at one moment."""
    edges = sorted([(r["start"], 1) for r in rows] + [(r["end"] or r["start"], -1) for r in rows],
                   key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    depth = peak = 0
    for _, step in edges:
        depth += step
        peak = max(peak, depth)
    return peak


def sim_rows(sim: SimProcess, phones: list[str]) -> list[dict[str, Any]]:
    wanted = set(phones)
    return [row for row in sim.stats()["calls"] if row["number"] in wanted]


def test_campaign_of_300_numbers_matches_the_switch(stack: Stack, make_tenant: Any, upload: Any) -> None:
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant, balance="1000")
    audio = upload(tenant, seconds=2)
    phones = numbers(300)
    cid = create(stack, tenant, audio, phones, window=window_around_now(-1, 3))

    # the import goes through the queue: a real RQ worker takes the job the API enqueued
    env = {**os.environ, "DATABASE_URL": stack.settings.database_url, "REDIS_URL": stack.settings.redis_url or "",
           "VAR_DIR": str(stack.settings.var_dir)}
    worker = subprocess.run(
        [sys.executable, "-m", "rq.cli", "worker", "--burst", "--worker-class", "rq.worker.SimpleWorker",
         "--url", stack.settings.redis_url or "", "default"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert worker.returncode == 0, worker.stderr[-3000:]
    imported = get(stack, tenant, cid)
    assert imported["status"] == "RUNNING", imported
    assert imported["import_summary"]["accepted"] == 300

    set_calls(stack, cid, retry_delay_seconds=1)  # retries come back within the test
    stack.dialer(sim)
    done = wait_campaign(stack, tenant, cid, "COMPLETED", timeout=90)

    # the switch's per-call log, per number: attempts and the last outcome
    rows = sorted(sim_rows(sim, phones), key=lambda r: r["start"])
    attempts = Counter(r["number"] for r in rows)
    last = {r["number"]: r["outcome"] for r in rows}
    assert set(attempts) == set(phones)  # every number was dialed
    for phone in phones:
        assert attempts[phone] == (2 if phone[-1] in RETRIED_DIGITS else 1), phone
    finals = Counter(FINAL_OF[outcome] for outcome in last.values())

    stats = done["statistics"]
    assert (stats["total"], stats["pending"], stats["in_progress"], stats["cancelled"]) == (300, 0, 0, 0)
    assert {k: stats[k.lower()] for k in ("COMPLETED", "BUSY", "NO_ANSWER", "FAILED")} == {
        k: finals[k] for k in ("COMPLETED", "BUSY", "NO_ANSWER", "FAILED")}
    assert (stats["completed"], stats["busy"], stats["no_answer"], stats["failed"]) == (90, 30, 90, 90)
    assert stats["attempts"] == len(rows) == 450
    assert stats["answer_rate"] == 0.3 and stats["progress_percent"] == 100.0
    assert stats["estimated_seconds_left"] == 0.0

    # SQL per number agrees with the switch
    sql = calls(stack, cid)
    for e164, call in sql.items():
        phone = national(e164)
        assert (CallStatus(call.status).value, call.attempts_count) == (FINAL_OF[last[phone]], attempts[phone])
    cost = sum((Decimal(c.cost) for c in sql.values()), Decimal(0))
    assert Decimal(stats["cost"]) == cost > 0
    billsec = sum(c.billsec for c in sql.values() if CallStatus(c.status) is CallStatus.COMPLETED)
    assert stats["average_billsec"] == round(billsec / 90, 1)

    # the report: one line per number, as SQL has it
    report = stack.client.get(f"/api/v1/campaigns/{cid}/report.csv", headers=tenant.headers)
    assert report.status_code == 200
    lines = list(csv.DictReader(io.StringIO(report.get_data(as_text=True))))
    assert len(lines) == 300
    for line in lines:
        call = sql[line["phone_number"].removeprefix("'")]  # "+92...": quoted for spreadsheets
        assert (line["status"], int(line["attempts"]), line["last_cause"], int(line["billsec"]),
                Decimal(line["cost_pkr"]), line["call_id"]) == (
            CallStatus(call.status).value, call.attempts_count, call.last_cause or "", call.billsec,
            Decimal(call.cost), call.id)

    # the campaign's concurrency limit held on the switch: its channels never overlapped more than
    # 20 deep (counted from the switch's own log; calls left queued by earlier tests may share it)
    assert 1 < max_overlap(rows) <= 20
    stack.assert_books_balance(tenant.account_id)
    assert Decimal(stack.account(tenant.account_id).balance) == Decimal("1000") - cost


def test_balance_pause_then_topup_and_resume(stack: Stack, make_tenant: Any, upload: Any) -> None:
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant, balance="5.00")  # four answered 2 s messages at 1.25 each
    audio = upload(tenant, seconds=2)
    phones = numbers(8, digits="6")
    cid = create(stack, tenant, audio, phones, window=window_around_now(-1, 3), concurrent_limit=1)
    import_now(stack, cid)
    stack.dialer(sim)

    paused = wait_campaign(stack, tenant, cid, "PAUSED", timeout=30)
    assert paused["pause_reason"] == "INSUFFICIENT_BALANCE"
    dialed = len(sim_rows(sim, phones))
    time.sleep(1.5)  # several dispatcher sweeps
    assert len(sim_rows(sim, phones)) == dialed == 4
    stats = get(stack, tenant, cid)["statistics"]
    assert (stats["completed"], stats["pending"], stats["in_progress"]) == (4, 4, 0)
    stack.assert_books_balance(tenant.account_id)

    with Session(stack.sql) as session:
        ledger.credit(session, tenant.account_id, Decimal("20"), description="top-up")
        session.commit()
    resumed = stack.client.post(f"/api/v1/campaigns/{cid}/resume", headers=tenant.headers)
    assert resumed.status_code == 200 and resumed.get_json()["status"] == "RUNNING"
    done = wait_campaign(stack, tenant, cid, "COMPLETED", timeout=30)
    assert done["statistics"]["completed"] == 8 and done["pause_reason"] is None
    assert Counter(r["number"] for r in sim_rows(sim, phones)) == Counter(phones)  # each number once
    stack.assert_books_balance(tenant.account_id)
    # the dialer's pause is an event, with its reason, written with the pause
    e = WebhookEvent.__table__.c
    with stack.sql.connect() as conn:
        steps = conn.execute(sa.select(e.type, e.data).where(e.subject_type == "campaign", e.subject_id == cid)
                             .order_by(e.sequence)).all()
    assert [t for t, _ in steps] == ["campaign.import_completed", "campaign.started", "campaign.paused",
                                     "campaign.resumed", "campaign.completed"]
    assert steps[2][1] == {"status": "PAUSED", "pause_reason": "INSUFFICIENT_BALANCE"}


def test_number_put_on_dnc_while_running_is_never_dialed(stack: Stack, make_tenant: Any, upload: Any) -> None:
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=2)
    phones = numbers(4, digits="6")
    target = phones[-1]
    cid = create(stack, tenant, audio, phones, window=window_around_now(-1, 3), concurrent_limit=1)
    import_now(stack, cid)
    target_e164 = "+92" + target[1:]
    # its turn comes last: not due until the others have been called
    set_calls(stack, cid, Call.phone_number == target_e164, next_attempt_at=utcnow() + timedelta(hours=1))
    stack.dialer(sim)
    wait_for("the other three numbers to be called",
             lambda: sum(1 for c in calls(stack, cid).values() if c.status == "COMPLETED") == 3, 30)

    added = stack.client.post("/api/v1/dnc", headers=tenant.headers, json={"phone_number": target})
    assert added.status_code == 201
    set_calls(stack, cid, Call.phone_number == target_e164, next_attempt_at=utcnow())  # its turn now

    done = wait_campaign(stack, tenant, cid, "COMPLETED", timeout=30)
    call = calls(stack, cid)[target_e164]
    assert (call.status, call.last_cause, call.attempts_count) == ("CANCELLED", "DO_NOT_CALL", 0)
    assert stack.attempts(call.id) == []
    assert target not in {r["number"] for r in sim.stats()["calls"]}  # never reached the switch
    assert (done["statistics"]["completed"], done["statistics"]["cancelled"]) == (3, 1)
    stack.assert_books_balance(tenant.account_id)


def test_closed_window_dials_nothing_also_after_a_dialer_restart(stack: Stack, make_tenant: Any,
                                                                 upload: Any) -> None:
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=2)
    phones = numbers(5, digits="6")
    cid = create(stack, tenant, audio, phones, window=window_around_now(2, 4))  # opens in two hours
    import_now(stack, cid)

    dialer = stack.dialer(sim)
    time.sleep(2.0)  # several sweeps (0.3 s each) and housekeeping passes
    dialer.stop()
    stack.dialer(sim)  # a fresh process: nothing in memory says the window is closed
    time.sleep(2.0)

    assert sim.stats()["originates"] == 0
    assert {(c.status, c.attempts_count) for c in calls(stack, cid).values()} == {("QUEUED", 0)}
    assert get(stack, tenant, cid)["status"] == "RUNNING"

    # the same campaign dials as soon as its window includes the present
    start, end = window_around_now(-1, 3)
    with stack.sql.begin() as conn:
        conn.execute(sa.update(Campaign).where(Campaign.id == cid).values(window_start=start, window_end=end))
    wait_campaign(stack, tenant, cid, "COMPLETED", timeout=30)
    assert len(sim_rows(sim, phones)) == 5
