"""gunicorn settings read by every ``gunicorn wsgi:app`` started from this directory.

Prometheus multiprocess mode: each worker writes its request metrics to files under
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums them, whichever worker answers the
scrape. The directory is emptied when the master starts (stale files of a previous
run would count twice) and a dead worker's live gauges are dropped.
"""

import os
import shutil
import tempfile

_multiproc = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"zenscall-prometheus-{os.getuid()}"))


def on_starting(server):  # noqa: ARG001 - gunicorn's hook signature
    shutil.rmtree(_multiproc, ignore_errors=True)
    os.makedirs(_multiproc, exist_ok=True)


def child_exit(server, worker):  # noqa: ARG001
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
