"""Takes the dialer's RQ jobs inside the gevent process, without forking.

An RQ ``SimpleWorker`` runs in a greenlet: operators see the dialer as a worker in
rq-dashboard and each job finishes as soon as it is handed to the engine. RQ's job
timeouts use SIGALRM, which has no place in a gevent process: they are disabled here
(the jobs return at once). Signals stay with the dialer's own shutdown handling.
"""

from __future__ import annotations

import logging

import gevent
import redis
from rq import Queue, SimpleWorker
from rq.timeouts import BaseDeathPenalty

log = logging.getLogger("zenscall.dialer.rq")


class _NoDeathPenalty(BaseDeathPenalty):
    def setup_death_penalty(self) -> None:
        pass

    def cancel_death_penalty(self) -> None:
        pass


class DialerWorker(SimpleWorker):
    death_penalty_class = _NoDeathPenalty

    def _install_signal_handlers(self) -> None:  # the dialer handles SIGTERM/SIGINT itself
        pass

    @property
    def dequeue_timeout(self) -> int:
        # short blocking pops, so a stop request is seen within seconds
        return 5


class RqConsumer:
    def __init__(self, connection: redis.Redis, queue_name: str, name: str) -> None:
        self.connection = connection
        self.queue_name = queue_name
        self.name = name
        self._worker: DialerWorker | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._running = False

    def start(self) -> None:
        self._running = True
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        backoff = 0.5
        while self._running:
            try:
                self._worker = DialerWorker([Queue(self.queue_name, connection=self.connection)],
                                            connection=self.connection, name=f"{self.name}-{id(self):x}")
                self._worker.work(logging_level="WARNING")
                backoff = 0.5
            except (redis.RedisError, OSError) as exc:
                log.warning("RQ consumer lost Redis: %s", exc)
            if self._running:
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 10)

    def stop(self) -> None:
        self._running = False
        if self._worker is not None:
            self._worker._stop_requested = True
        if self._greenlet is not None:
            self._greenlet.join(timeout=1)
            if not self._greenlet.dead:
                self._greenlet.kill(timeout=1)
                try:
                    if self._worker is not None:
                        self._worker.register_death()
                except redis.RedisError:
                    pass
