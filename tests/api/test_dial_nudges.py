"""Dial jobs sent off the request: every call placed is followed by a dial job enqueued after it
was committed; calls placed while a job was on its way share the next one."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import redis
from rq import Queue

from core.queues import DialNudges
from tests.waiting import wait_for


def queued(queue: Queue, job_id: str) -> bool:
    """The job is on the queue. (Polled instead of ``fetch_job``, which removes the id of a job it
    cannot find yet from the queue and so races with the enqueue.)"""
    return job_id in queue.job_ids


@pytest.fixture()
def queue(redis_url: str) -> Any:
    connection = redis.Redis.from_url(redis_url)
    dial_queue = Queue(f"nudges-test-{secrets.token_hex(3)}", connection=connection)
    yield dial_queue
    dial_queue.empty()
    connection.close()


def test_calls_noted_together_share_one_job_named_by_the_newest(queue):
    nudges = DialNudges(queue, background=False)
    calls = [f"call-{secrets.token_hex(4)}" for _ in range(3)]  # job ids are global in Redis
    for call_id in calls:
        nudges.call_written(call_id)
    assert queue.count == 0  # nothing sent in the request
    assert nudges.flush() == 3
    assert queue.job_ids == [f"dial-{calls[2]}"]
    job = queue.fetch_job(f"dial-{calls[2]}")
    assert job.func_name == "dialer.jobs.dial_call" and job.args == (calls[2],)
    assert job.description == f"dial_call({calls[2]}) and 2 earlier calls"
    assert nudges.flush() == 0 and queue.count == 1  # nothing new: no job


def test_a_call_placed_alone_gets_its_own_job(queue):
    nudges = DialNudges(queue, min_interval=0)
    first, second = (f"call-{secrets.token_hex(4)}" for _ in range(2))  # job ids are global in Redis
    nudges.call_written(first)
    wait_for("the first call's dial job", lambda: queued(queue, f"dial-{first}"), timeout=10)
    nudges.call_written(second)
    wait_for("the second call's dial job", lambda: queued(queue, f"dial-{second}"), timeout=10)
    job = queue.fetch_job(f"dial-{second}")
    assert job.description == f"dial_call({second})"


def test_jobs_are_spaced_by_min_interval_and_calls_meanwhile_share_the_next(queue):
    one, two, three = (f"call-{secrets.token_hex(4)}" for _ in range(3))  # job ids are global in Redis
    nudges = DialNudges(queue, min_interval=2.0)
    nudges.call_written(one)  # after a quiet moment: a job at once
    wait_for("the first call's dial job", lambda: queued(queue, f"dial-{one}"), timeout=10)
    nudges.call_written(two)  # within 2 s of that job: they wait for the next one, together
    nudges.call_written(three)
    wait_for("the third call's dial job", lambda: queued(queue, f"dial-{three}"), timeout=10)
    job = queue.fetch_job(f"dial-{three}")
    assert job.description == f"dial_call({three}) and 1 earlier calls"
    assert queue.fetch_job(f"dial-{two}") is None and queue.job_ids == [f"dial-{one}", f"dial-{three}"]


def test_calls_placed_through_the_api_are_each_covered_by_a_later_job(client, tenant, upload_audio, app):
    audio = upload_audio(tenant)
    placed = []
    for _ in range(5):
        response = client.post("/api/v1/calls", headers=tenant.headers,
                               json={"phone_number": "03001234567", "audio_id": audio["id"]})
        assert response.status_code == 201
        placed.append(response.get_json()["id"])
    queue = app.extensions["zenscall"].dial_queue
    # the newest call always gets a job; every older one is covered by its own or a later job
    wait_for("the newest call's dial job", lambda: queued(queue, f"dial-{placed[-1]}"), timeout=10)


def test_an_unreachable_redis_loses_no_call(make_app, tenant, upload_audio, sessions):
    """The job is a wake-up only: with Redis away the call is still taken (the dialer's sweep
    finds it in SQL) and the background sender lives on."""
    from core.call_states import CallStatus
    from core.models import Call

    audio = upload_audio(tenant)
    dead = make_app(redis_url="redis://127.0.0.1:1/0")
    client = dead.test_client()
    for _ in range(2):
        response = client.post("/api/v1/calls", headers=tenant.headers,
                               json={"phone_number": "03001234567", "audio_id": audio["id"]})
        assert response.status_code == 201, response.get_json()
        with sessions() as session:
            assert session.get(Call, response.get_json()["id"]).status == CallStatus.QUEUED
    nudges = dead.extensions["zenscall"].dial_nudges
    wait_for("the sender to give up on the dead Redis", lambda: nudges.flush() == 0 and not nudges._wake.is_set(),
             timeout=10)
    assert nudges._thread is not None and nudges._thread.is_alive()
