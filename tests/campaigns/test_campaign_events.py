"""Campaign steps and the calls a cancel ends are written to the webhook outbox with the step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from core.campaigns import start_due
from core.models import WebhookEvent
from tests.campaigns.test_api_campaigns import campaign_api, post  # noqa: F401 - fixture and helper


def events(sessions: Any, subject_type: str, subject_ids: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    with sessions() as session:
        rows = session.execute(sa.select(WebhookEvent).where(
            WebhookEvent.subject_type == subject_type, WebhookEvent.subject_id.in_(subject_ids))
            .order_by(WebhookEvent.sequence, WebhookEvent.created_at)).scalars()
        return [(e.type, e.subject_id, e.data or {}) for e in rows]


def raw_events(sessions: Any, cid: str) -> list[Any]:
    with sessions() as session:
        return list(session.execute(sa.select(WebhookEvent.sequence).where(WebhookEvent.subject_id == cid)).all())


def test_campaign_steps_are_events_in_order(campaign_api: Any, client: Any, tenant: Any,  # noqa: F811
                                            sessions: Any) -> None:
    data = b"phone\n03001110001\n03001110002\n"
    cid = campaign_api.imported(tenant, data)["id"]
    base = f"/api/v1/campaigns/{cid}"
    assert post(client, tenant, f"{base}/pause").status_code == 200
    assert post(client, tenant, f"{base}/resume").status_code == 200
    assert post(client, tenant, f"{base}/cancel").status_code == 200
    got = events(sessions, "campaign", [cid])
    assert [t for t, _, _ in got] == ["campaign.import_completed", "campaign.started", "campaign.paused",
                                      "campaign.resumed", "campaign.cancelled"]
    assert len({e.sequence for e in raw_events(sessions, cid)}) == 5  # a receiver can order them
    assert got[2][2] == {"status": "PAUSED", "pause_reason": "PAUSED_BY_USER"}
    # the pending calls the cancel ended: one call.cancelled each, in the same transaction
    calls = client.get(f"{base}/calls", headers=tenant.headers).get_json()["data"]
    cancelled = events(sessions, "call", [c["id"] for c in calls])
    assert sorted(s for _, s, _ in cancelled) == sorted(c["id"] for c in calls)
    assert {t for t, _, _ in cancelled} == {"call.cancelled"}
    with sessions() as session:
        ids = session.execute(sa.select(WebhookEvent.id, WebhookEvent.sequence).where(
            WebhookEvent.subject_id.in_([c["id"] for c in calls]))).all()
    assert all(i.startswith("evt_") and len(i) == 36 for i, _ in ids) and {s for _, s in ids} == {5}


def test_a_failed_import_is_an_event(campaign_api: Any, tenant: Any, sessions: Any) -> None:  # noqa: F811
    response = campaign_api.create(tenant, b"phone\nnot-a-number\n")
    cid = response.get_json()["id"]
    campaign_api.run_import(cid)
    got = events(sessions, "campaign", [cid])
    assert [t for t, _, _ in got] == ["campaign.import_failed"]
    assert got[0][2]["status"] == "FAILED" and "NO_VALID_NUMBERS" in got[0][2]["import_error"]


def test_a_scheduled_start_is_an_event(campaign_api: Any, tenant: Any, sessions: Any) -> None:  # noqa: F811
    later = datetime.now(UTC) + timedelta(hours=3)
    cid = campaign_api.imported(tenant, start_at=later.isoformat())["id"]
    assert [t for t, _, _ in events(sessions, "campaign", [cid])] == ["campaign.import_completed"]
    with sessions() as session:  # what the dialer's sweep runs (other tests' campaigns may start too)
        start_due(session, later - timedelta(seconds=1))
    assert [t for t, _, _ in events(sessions, "campaign", [cid])] == ["campaign.import_completed"]  # not yet
    with sessions() as session:
        assert start_due(session, later + timedelta(seconds=1)) >= 1
    got = events(sessions, "campaign", [cid])
    assert [(t, d.get("status")) for t, _, d in got] == [("campaign.import_completed", "SCHEDULED"),
                                                         ("campaign.started", "RUNNING")]
