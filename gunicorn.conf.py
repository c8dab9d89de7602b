"""gunicorn settings read by every ``gunicorn wsgi:app`` started from this directory.

Worker: gevent, through ``api.gunicorn_worker.JsonErrorGeventWorker``, which answers the
requests gunicorn refuses itself (an over-long request line, too many or too large headers,
a malformed request line) in the API's JSON error envelope instead of an HTML page. Command
lines must not name a worker class (``--worker-class`` / ``-k`` would win over this file);
``on_starting`` warns when one does.

gunicorn's runtime control socket is off: it is one fixed path per user, shared (and
replaced) by every gunicorn of that user, and nothing here uses it.

Prometheus multiprocess mode: each worker writes its request metrics to files under
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums them, whichever worker answers the
scrape. The directory is emptied when the master starts (stale files of a previous
run would count twice) and a dead worker's live gauges are dropped.
"""

import os
import shutil
import tempfile

worker_class = "api.gunicorn_worker.JsonErrorGeventWorker"
control_socket_disable = True

_multiproc = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"zenscall-prometheus-{os.getuid()}"))


def on_starting(server):
    shutil.rmtree(_multiproc, ignore_errors=True)
    os.makedirs(_multiproc, exist_ok=True)
    from api.gunicorn_worker import JsonErrorGeventWorker

    if not issubclass(server.worker_class, JsonErrorGeventWorker):
        server.log.warning("worker class %s answers malformed requests with gunicorn's HTML page, not the "
                           "API's JSON errors: leave --worker-class/-k out so gunicorn.conf.py's applies",
                           server.worker_class.__name__)


def child_exit(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
