"""WSGI entry point: ``gunicorn wsgi:app`` / ``flask --app wsgi ...``.

Logs are JSON lines on stderr (``LOG_LEVEL``, default INFO): one ``request`` line per
request with its id, and the request's id, account and call on every other line.
"""

import os

from api import create_app
from core.logs import setup_logging

setup_logging(os.environ.get("LOG_LEVEL", "INFO").upper())
app = create_app()
