"""Campaign dispatch and lifecycle on the real database with a frozen clock: nothing is due
outside the calling window (also for a brand-new Store or Engine: no state lives in memory),
retries land inside the window, SCHEDULED campaigns start, finished ones complete, and the
statistics add up.

The frozen moments are in January 2026, before any other test's calls were created, so only
the calls made here are ever due at them."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from core import campaigns as lifecycle
from core.call_states import CallStatus, HangupFacts
from core.campaign_states import CampaignStatus
from core.models import Call, Campaign
from dialer.caps import Caps
from dialer.engine import Engine
from dialer.store import Store


def utc(h: int, m: int = 0, day: int = 15) -> datetime:
    return datetime(2026, 1, day, h, m, tzinfo=UTC)


INSIDE = utc(6)          # 11:00 Asia/Karachi
BEFORE_OPEN = utc(3)     # 08:00
AFTER_CLOSE = utc(17)    # 22:00
NEAR_CLOSE = utc(15, 58)  # 20:58


@pytest.fixture()
def setup(sessions: Any, make_tenant: Any, upload_audio: Any) -> Any:
    """``setup(numbers, status=..., **campaign_fields) -> (campaign, [call ids])`` written in SQL."""
    tenant = make_tenant(balance="100")
    audio = upload_audio(tenant)

    def make(count: int = 3, status: CampaignStatus = CampaignStatus.RUNNING, due: datetime = INSIDE,
             **fields: Any) -> tuple[Campaign, list[str]]:
        with sessions() as session:
            campaign = Campaign(account_id=tenant.account_id, name="window", audio_id=audio["id"], status=status,
                                **{"max_retries": 2, "retry_delay_seconds": 300, "concurrent_limit": 5, **fields})
            session.add(campaign)
            session.flush()
            calls = [Call(account_id=tenant.account_id, campaign_id=campaign.id, audio_id=audio["id"],
                          phone_number=f"+92300{secrets.randbelow(10**7):07d}", status=CallStatus.QUEUED,
                          max_retries=campaign.max_retries, retry_delay_seconds=campaign.retry_delay_seconds,
                          next_attempt_at=due - timedelta(minutes=1)) for _ in range(count)]
            session.add_all(calls)
            session.commit()
            return campaign, [c.id for c in calls]

    yield make
    # nothing made here stays dialable for the tests that follow
    with sessions() as session:
        session.execute(sa.update(Call).where(Call.account_id == tenant.account_id, Call.status == CallStatus.QUEUED)
                        .values(status=CallStatus.CANCELLED, next_attempt_at=None))
        session.commit()


def due_ids(store: Store, campaign_id: str, now: datetime | None = None) -> set[str]:
    """What the dispatcher would be offered for this campaign (a claim whose caps grant nothing:
    the real read path, nothing written)."""
    offered: list[Any] = []
    for source in store.due_sources(now):
        if source.campaign_id == campaign_id:
            store.claim(source, 500, lambda cands: offered.extend(cands) or [], now=now)
    return {c.call_id for c in offered}


def frozen(moment: datetime) -> Any:
    return lambda: moment


def new_store(sessions: Any, node: str = "unit", moment: datetime | None = None) -> Store:
    """A Store as a freshly started dialer process has it (its own owner id)."""
    kwargs = {"clock": frozen(moment)} if moment is not None else {}
    return Store(sessions.kw["bind"], node, f"{node}:{secrets.token_hex(4)}", **kwargs)


# -- due_calls -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "inside"), [
    (BEFORE_OPEN, False), (utc(4), True), (INSIDE, True), (utc(15, 59), True), (utc(16), False),
    (AFTER_CLOSE, False),
])
def test_due_calls_only_inside_the_window(sessions: Any, setup: Any, moment: datetime, inside: bool) -> None:
    campaign, ids = setup(due=BEFORE_OPEN)
    # a new Store each time (as after a dialer restart): the window is decided from SQL alone
    expected = set(ids) if inside else set()
    assert due_ids(new_store(sessions), campaign.id, now=moment) == expected
    assert due_ids(new_store(sessions, moment=moment), campaign.id) == expected


def test_window_past_midnight(sessions: Any, setup: Any) -> None:
    campaign, ids = setup(window_start="20:00", window_end="02:00", due=BEFORE_OPEN)
    store = new_store(sessions)
    assert due_ids(store, campaign.id, now=AFTER_CLOSE) == set(ids)     # 22:00
    assert due_ids(store, campaign.id, now=utc(20, 30)) == set(ids)     # 01:30 the next day
    assert due_ids(store, campaign.id, now=utc(21)) == set()            # 02:00 closes
    assert due_ids(store, campaign.id, now=INSIDE) == set()             # 11:00


@pytest.mark.parametrize("status", [CampaignStatus.SCHEDULED, CampaignStatus.PAUSED, CampaignStatus.IMPORTING,
                                    CampaignStatus.CANCELLED, CampaignStatus.COMPLETED])
def test_only_running_campaigns_are_due(sessions: Any, setup: Any, status: CampaignStatus) -> None:
    campaign, _ = setup(status=status)
    assert due_ids(new_store(sessions), campaign.id, now=INSIDE) == set()


def test_due_sources_carry_the_limits_and_next_attempt(sessions: Any, setup: Any) -> None:
    campaign, ids = setup(count=12, concurrent_limit=3)
    store = new_store(sessions)
    (source,) = [s for s in store.due_sources(INSIDE) if s.campaign_id == campaign.id]
    assert (source.campaign_limit, source.account_limit) == (3, 50)  # the dispatcher claims within them
    assert len(due_ids(store, campaign.id, now=INSIDE)) == 12
    with sessions() as session:
        session.execute(sa.update(Call).where(Call.id.in_(ids[:10])).values(next_attempt_at=INSIDE
                                                                            + timedelta(hours=1)))
        session.commit()
    assert due_ids(store, campaign.id, now=INSIDE) == set(ids[10:])


class FakeEsl:
    """Stands in for FreeSWITCH: connected, and records what would be originated."""

    connected = True

    def __init__(self, on_event: Any) -> None:
        self.originated: list[str] = []

    def originate(self, attempt_id: str, call_id: str, *args: Any, **kwargs: Any) -> None:
        self.originated.append(call_id)

    def close(self) -> None:
        pass


def test_a_new_engine_dials_nothing_outside_the_window(sessions: Any, setup: Any, settings: Any) -> None:
    campaign, ids = setup(count=2)
    node = f"unit-{secrets.token_hex(3)}"
    rds = redis.Redis.from_url(settings.redis_url)

    def engine_at(moment: datetime) -> Engine:
        store = new_store(sessions, node, moment)
        engine = Engine(replace(settings, dialer_node=node, gateway_cps=1000), store, Caps(rds, 20), rds,
                        esl_factory=FakeEsl)
        engine._running = True  # as after start(), without its greenlets: one sweep is driven by hand
        engine.caps.sync_epoch(engine.holder, lambda: [])
        return engine

    for _ in range(2):  # two "restarts"
        engine = engine_at(AFTER_CLOSE)
        engine.dispatch_once()
        engine._dial_pool.join()
        assert engine.esl.originated == []  # type: ignore[attr-defined]
    engine = engine_at(INSIDE)
    engine.dispatch_once()
    engine._dial_pool.join()
    assert sorted(engine.esl.originated) == sorted(ids)  # type: ignore[attr-defined]
    with sessions() as session:
        statuses = set(session.scalars(sa.select(Call.status).where(Call.id.in_(ids))))
    assert statuses == {CallStatus.DIALING}
    # end the attempts, so nothing of this test stays live
    engine.store.finish([(live.a, HangupFacts(cause="CALL_REJECTED")) for live in engine.live.values()])
    engine.caps.release([live.lease for live in engine.live.values()])
    rds.close()


# -- retries inside the window -------------------------------------------------------------------------


def _claim(store: Store, campaign: Campaign, call_id: str, now: datetime) -> Any:
    (source,) = [s for s in store.due_sources(now) if s.campaign_id == campaign.id]
    claim = store.claim(source, 500, lambda cands: [c for c in cands if c.call_id == call_id], now=now)
    (attempt,) = claim.claimed
    return attempt


def _claim_and_finish(sessions: Any, campaign: Campaign, call_id: str, at: datetime, cause: str) -> Any:
    store = new_store(sessions, moment=at)
    (done,) = store.finish([(_claim(store, campaign, call_id, INSIDE), HangupFacts(cause=cause))])
    return done


def test_retry_inside_the_window_keeps_its_delay(sessions: Any, setup: Any) -> None:
    campaign, (call_id,) = setup(count=1, retry_delay_seconds=600)
    done = _claim_and_finish(sessions, campaign, call_id, INSIDE, "USER_BUSY")
    assert done.status == CallStatus.QUEUED
    assert done.next_attempt_at == INSIDE + timedelta(minutes=10)


def test_retry_that_would_land_after_closing_waits_for_the_next_opening(sessions: Any, setup: Any) -> None:
    campaign, (call_id,) = setup(count=1, retry_delay_seconds=600)
    done = _claim_and_finish(sessions, campaign, call_id, NEAR_CLOSE, "USER_BUSY")  # 20:58 + 10 min
    assert done.status == CallStatus.QUEUED
    assert done.next_attempt_at == utc(4, day=16)  # 09:00 Asia/Karachi the next day
    with sessions() as session:
        call = session.get(Call, call_id)
        assert call is not None and call.next_attempt_at == utc(4, day=16) and call.ended_at is None
    store = new_store(sessions)
    assert due_ids(store, campaign.id, now=utc(3, 59, day=16)) == set()
    assert due_ids(store, campaign.id, now=utc(4, day=16)) == {call_id}


def test_retry_of_a_late_window_crosses_midnight_inside_it(sessions: Any, setup: Any) -> None:
    campaign, (call_id,) = setup(count=1, retry_delay_seconds=3600, window_start="20:00", window_end="02:00",
                                 due=AFTER_CLOSE)
    store = new_store(sessions, moment=utc(19, 30))  # 00:30 Asia/Karachi
    (done,) = store.finish([(_claim(store, campaign, call_id, utc(19, 30)), HangupFacts(cause="NO_ANSWER"))])
    assert done.next_attempt_at == utc(20, 30)  # 01:30, still inside


# -- start_due / complete_finished -------------------------------------------------------------------


def _status(sessions: Any, campaign_id: str) -> Campaign:
    with sessions() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        return campaign


def test_start_due(sessions: Any, setup: Any) -> None:
    ready, _ = setup(status=CampaignStatus.SCHEDULED, start_at=INSIDE - timedelta(minutes=5))
    later, _ = setup(status=CampaignStatus.SCHEDULED, start_at=INSIDE + timedelta(hours=1))
    with sessions() as session:
        assert lifecycle.start_due(session, INSIDE) >= 1
    started = _status(sessions, ready.id)
    assert (started.status, started.started_at) == (CampaignStatus.RUNNING, INSIDE)
    assert _status(sessions, later.id).status == CampaignStatus.SCHEDULED
    assert due_ids(new_store(sessions), ready.id, now=INSIDE)  # now dialable


def test_complete_finished(sessions: Any, setup: Any) -> None:
    done, done_ids = setup(count=2)
    waiting, _ = setup(count=1)
    live, live_ids = setup(count=1)
    paused, paused_ids = setup(count=1, status=CampaignStatus.PAUSED)
    with sessions() as session:
        session.execute(sa.update(Call).where(Call.id.in_(done_ids + paused_ids))
                        .values(status=CallStatus.COMPLETED, next_attempt_at=None))
        session.execute(sa.update(Call).where(Call.id.in_(live_ids)).values(status=CallStatus.RINGING))
        session.commit()
        completed = lifecycle.complete_finished(session, INSIDE)
    assert done.id in completed and not {waiting.id, live.id, paused.id} & set(completed)
    finished = _status(sessions, done.id)
    assert (finished.status, finished.completed_at) == (CampaignStatus.COMPLETED, INSIDE)
    assert _status(sessions, waiting.id).status == CampaignStatus.RUNNING
    assert _status(sessions, live.id).status == CampaignStatus.RUNNING
    assert _status(sessions, paused.id).status == CampaignStatus.PAUSED
    with sessions() as session:
        assert done.id not in lifecycle.complete_finished(session, INSIDE)  # once only


# -- statistics ---------------------------------------------------------------------------------------


def test_stats(sessions: Any, setup: Any) -> None:
    campaign, ids = setup(count=10, started_at=INSIDE - timedelta(seconds=100))
    rows = [
        (CallStatus.COMPLETED, 1, 30, "1.25"), (CallStatus.COMPLETED, 2, 50, "2.50"),
        (CallStatus.BUSY, 2, 0, "0"), (CallStatus.NO_ANSWER, 3, 0, "0"), (CallStatus.FAILED, 1, 0, "0"),
        (CallStatus.CANCELLED, 1, 12, "1.25"),  # hung up while playing: charged, not answered to the end
        (CallStatus.RINGING, 1, 0, "0"),
    ]
    with sessions() as session:
        for call_id, (status, attempts, billsec, cost) in zip(ids, rows, strict=False):
            session.execute(sa.update(Call).where(Call.id == call_id).values(
                status=status, attempts_count=attempts, billsec=billsec, cost=Decimal(cost)))
        session.commit()
        fresh = session.get(Campaign, campaign.id)
        assert fresh is not None
        stats = lifecycle.stats(session, fresh, now=INSIDE).as_dict()
    assert stats == {
        "total": 10, "pending": 3, "in_progress": 1, "completed": 2, "busy": 1, "no_answer": 1, "failed": 1,
        "cancelled": 1, "attempts": 11, "answer_rate": 0.4, "average_billsec": 40.0, "cost": Decimal("5.00"),
        "progress_percent": 60.0,
        "estimated_seconds_left": round(4 / (6 / 100), 1),  # 4 left at 6 per 100 s
    }


def test_stats_of_an_untouched_and_a_finished_campaign(sessions: Any, setup: Any) -> None:
    campaign, ids = setup(count=2)
    with sessions() as session:
        fresh = session.get(Campaign, campaign.id)
        assert fresh is not None
        before = lifecycle.stats(session, fresh, now=INSIDE).as_dict()
        assert (before["pending"], before["answer_rate"], before["average_billsec"], before["progress_percent"],
                before["estimated_seconds_left"], before["cost"]) == (2, None, None, 0.0, None, Decimal("0"))
        session.execute(sa.update(Call).where(Call.id.in_(ids)).values(status=CallStatus.FAILED, attempts_count=1))
        session.commit()
        after = lifecycle.stats(session, fresh, now=INSIDE).as_dict()
    assert (after["failed"], after["answer_rate"], after["progress_percent"], after["estimated_seconds_left"]) == (
        2, 0.0, 100.0, 0.0)


def test_ringing_and_answered_in_one_batch_are_two_events(sessions: Any, setup: Any) -> None:
    from core.models import WebhookEvent
    from dialer.store import Advance

    campaign, (call_id,) = setup(count=1)
    store = new_store(sessions, moment=INSIDE)
    attempt = _claim(store, campaign, call_id, INSIDE)
    assert store.advance([Advance(attempt, CallStatus.RINGING, INSIDE), Advance(attempt, CallStatus.ANSWERED, INSIDE)])
    store.finish([(attempt, HangupFacts(cause="NORMAL_CLEARING", answered=True, billsec=5))])
    with sessions() as session:
        got = session.execute(sa.select(WebhookEvent.type, WebhookEvent.sequence).where(
            WebhookEvent.subject_id == call_id).order_by(WebhookEvent.sequence)).all()
    assert [tuple(r) for r in got] == [("call.dialing", 11), ("call.ringing", 12), ("call.answered", 13),
                                       ("call.completed", 14)]
