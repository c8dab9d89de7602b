"""``python -m dialer``: the dialer process for one FreeSWITCH node."""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import signal  # noqa: E402

import gevent  # noqa: E402

from core.logs import setup_logging  # noqa: E402
from core.settings import load_settings  # noqa: E402
from dialer.bootstrap import build  # noqa: E402

log = logging.getLogger("zenscall.dialer")


def main() -> None:
    setup_logging()
    settings = load_settings()
    dialer = build(settings)
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    dialer.start()
    log.info("dialer %s started (FreeSWITCH %s:%s, queue %s)", settings.dialer_node, settings.fs_host,
             settings.fs_port, settings.dialer_queue, extra={"event": "dialer_started"})
    stop.wait()
    log.info("dialer stopping", extra={"event": "dialer_stopping"})
    dialer.stop()


if __name__ == "__main__":
    main()
