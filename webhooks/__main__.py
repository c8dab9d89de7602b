"""``python -m webhooks``: the webhook sweeper (fan-out, dispatch, retention; see ``webhooks.sweeper``).

One is enough (several are safe). The deliveries themselves run on RQ workers of the
``webhooks`` queue: ``rq worker --worker-class rq.SimpleWorker webhooks``.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from rq import Queue

from core.db import make_engine
from core.logs import setup_logging
from core.redis_conn import connect
from core.settings import load_settings
from webhooks.sweeper import Sweeper

log = logging.getLogger("zenscall.webhooks")


def main() -> None:
    setup_logging()
    settings = load_settings()
    engine = make_engine(settings.database_url, pool_size=2)
    queue = Queue(settings.webhook_queue, connection=connect(settings, timeout=5.0))
    stop = threading.Event()

    def stopping(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    log.info("webhook sweeper started (queue %s)", settings.webhook_queue, extra={"event": "webhooks_started"})
    Sweeper(engine, settings, queue).run(stop.is_set)


if __name__ == "__main__":
    main()
