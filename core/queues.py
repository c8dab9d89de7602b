"""RQ queues and the jobs the API hands to the dialer and the worker.

Jobs only name ids; SQL says what to do. A job lost with a flushed Redis delays a
call by one dispatcher sweep, and a duplicated job dials nothing twice because the
dialer claims each attempt in SQL first.

A dial job only wakes the dialer's dispatcher, which then reads every due call from SQL,
so one job enqueued after several calls were written covers them all: ``DialNudges``
sends one job per batch of calls placed while its previous job was being enqueued.
"""

from __future__ import annotations

import logging
import threading
import time

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


def enqueue_dial(queue: Queue, call_id: str, *, more: int = 0) -> bool:
    """Tell the dialer a call (and ``more`` calls written before it) is due; False (logged)
    when Redis is unreachable."""
    return _enqueue(queue, DIAL_JOB, call_id, f"dial-{call_id}",
                    f"dial_call({call_id})" + (f" and {more} earlier calls" if more else ""))


def enqueue_cancel(queue: Queue, call_id: str) -> bool:
    """Ask the dialer to hang up a live call."""
    return _enqueue(queue, CANCEL_JOB, call_id, f"cancel-{call_id}", f"cancel_call({call_id})")


def _enqueue(queue: Queue, func: str, call_id: str, job_id: str, description: str) -> bool:
    try:
        # one round trip: RQ's own enqueue sends the queue registration and the job separately
        pipe = queue.connection.pipeline()
        queue.enqueue(func, call_id, job_id=job_id, result_ttl=3600, failure_ttl=86400,
                      description=description, pipeline=pipe)
        pipe.execute()
        return True
    except (redis.RedisError, OSError) as exc:
        # SQL holds the call; the dialer's sweep finds it without the job
        log.warning("enqueue %s for call %s failed: %s", func, call_id, exc, extra={"call_id": call_id})
        return False


class DialNudges:
    """Dial jobs for the calls a web process writes, one job per batch, off the request.

    ``call_written`` (after the call's transaction committed) notes the call and wakes a
    background thread (a greenlet under gunicorn's gevent worker), which enqueues one dial
    job named by the newest call noted, at most one every ``min_interval`` seconds (50 ms):
    calls written meanwhile are covered by the next job. Each job is enqueued after every call
    it covers was committed, so the dispatch it triggers reads them all from SQL. A call placed
    after a quiet moment gets its own job at once, as before; under load the jobs thin out to
    20 a second per web process, and with them the Redis writes and the CPU they cost (an RQ
    job is pickled, hashed and pushed). Calls noted when the process stops, or whose job Redis
    refused, are found by the dialer's sweep of SQL (``DIALER_SWEEP_SECONDS``).
    """

    def __init__(self, queue: Queue, *, background: bool = True, min_interval: float = 0.05) -> None:
        self.queue = queue
        self.background = background  # False: nothing is sent until ``flush`` is called
        self.min_interval = min_interval
        self._last_flush = float("-inf")
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._newest: str | None = None
        self._count = 0
        self._thread: threading.Thread | None = None

    def call_written(self, call_id: str) -> None:
        """Note a call whose transaction committed; its job follows shortly."""
        with self._lock:
            self._newest = call_id
            self._count += 1
            if self.background and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name="zc-dial-nudges", daemon=True)
                self._thread.start()
        self._wake.set()

    def flush(self) -> int:
        """Enqueue one dial job for the calls noted so far; how many calls it covers."""
        with self._lock:
            newest, count = self._newest, self._count
            self._newest, self._count = None, 0
        if newest is None:
            return 0
        enqueue_dial(self.queue, newest, more=count - 1)
        return count

    def _run(self) -> None:
        while True:
            self._wake.wait()
            pause = self._last_flush + self.min_interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # calls written meanwhile join this job
            self._wake.clear()
            self._last_flush = time.monotonic()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the thread must live on; the sweep finds the calls
                log.exception("dial job failed")
