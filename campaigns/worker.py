"""The RQ worker of the ``default`` queue, which also looks after work whose job was lost.

A campaign import whose worker was killed leaves the campaign IMPORTING for ever; an audio
conversion lost with its worker (or with a flushed Redis) leaves the audio PROCESSING. Each worker,
between jobs and every ``IMPORT_STALL_SECONDS / 4`` seconds (its RQ maintenance tick, when RQ
also cleans its registries), enqueues again every import that has been IMPORTING for longer than
``IMPORT_STALL_SECONDS`` with no live import (``campaigns.importer.recover_stalled_imports``), and
every conversion PROCESSING for longer than a job may run (``core.audio.job.recover_stalled_conversions``).

Run with ``rq worker --worker-class campaigns.worker.Worker default`` (the Procfiles do);
``campaigns.worker.SimpleWorker`` is the same without forking per job.
"""

from __future__ import annotations

import logging
from typing import Any

import rq
from rq import Queue

from campaigns.importer import engine_for, recover_stalled_imports
from core.audio.job import recover_stalled_conversions
from core.queues import WORK_QUEUE
from core.settings import load_settings

log = logging.getLogger("zenscall.worker")


class _RecoversImports:
    """Mixin for RQ's workers: stalled-import recovery on every maintenance tick."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.zc_settings = load_settings()
        # (rq's command line always passes its own interval, 10 minutes by default)
        kwargs["maintenance_interval"] = min(int(kwargs.get("maintenance_interval") or 600),
                                             max(1, self.zc_settings.import_stall_seconds // 4))
        super().__init__(*args, **kwargs)

    @property
    def dequeue_timeout(self) -> int:
        # wake up for the maintenance tick even when no job comes
        return max(1, min(super().dequeue_timeout, int(self.maintenance_interval)))  # type: ignore[misc]

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[misc]
        try:
            with engine_for(self.zc_settings).connect() as conn:
                recover_stalled_imports(conn, Queue(WORK_QUEUE, connection=self.connection),  # type: ignore[attr-defined]
                                        self.zc_settings.import_stall_seconds)
        except Exception:  # SQL or Redis away: the next tick tries again
            log.exception("import recovery failed", extra={"event": "import_recovery_failed"})
        try:
            recover_stalled_conversions(engine_for(self.zc_settings), Queue(WORK_QUEUE, connection=self.connection),  # type: ignore[attr-defined]
                                        self.zc_settings)
        except Exception:  # SQL or Redis away: the next tick tries again
            log.exception("conversion recovery failed", extra={"event": "conversion_recovery_failed"})


class Worker(_RecoversImports, rq.Worker):
    pass


class SimpleWorker(_RecoversImports, rq.SimpleWorker):
    pass
