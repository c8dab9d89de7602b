"""RQ queues and the jobs the API hands to the dialer and the worker.

Jobs only name ids; SQL says what to do. A job lost with a flushed Redis delays a
call by one dispatcher sweep, and a duplicated job dials nothing twice because the
dialer claims each attempt in SQL first.
"""

from __future__ import annotations

import logging

import redis
from rq import Queue

log = logging.getLogger("zenscall.queues")

DIAL_JOB = "dialer.jobs.dial_call"
CANCEL_JOB = "dialer.jobs.cancel_call"
WORK_QUEUE = "default"


def dial_queue(connection: redis.Redis, name: str) -> Queue:
    return Queue(name, connection=connection)


def work_queue(connection: redis.Redis) -> Queue:
    return Queue(WORK_QUEUE, connection=connection)


def enqueue_dial(queue: Queue, call_id: str) -> bool:
    """Tell the dialer a call is due; False (logged) when Redis is unreachable."""
    return _enqueue(queue, DIAL_JOB, call_id, f"dial-{call_id}")


def enqueue_cancel(queue: Queue, call_id: str) -> bool:
    """Ask the dialer to hang up a live call."""
    return _enqueue(queue, CANCEL_JOB, call_id, f"cancel-{call_id}")


def _enqueue(queue: Queue, func: str, call_id: str, job_id: str) -> bool:
    try:
        queue.enqueue(func, call_id, job_id=job_id, result_ttl=3600, failure_ttl=86400,
                      description=f"{func.rsplit('.', 1)[-1]}({call_id})")
        return True
    except (redis.RedisError, OSError) as exc:
        # SQL holds the call; the dialer's sweep finds it without the job
        log.warning("enqueue %s for call %s failed: %s", func, call_id, exc, extra={"call_id": call_id})
        return False
