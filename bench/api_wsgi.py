"""The production WSGI app plus one bare endpoint, for ``bench/api.py`` only.

``POST /bench/bare`` does what any write endpoint of this stack cannot avoid: Flask's
request handling with every hook of the app (request id, JSON request log, metrics,
secure headers), a session from the same engine and session factory, one INSERT and
its COMMIT. It is outside the rate limits (it has no account). The figures of
``POST /api/v1/calls`` are read against it. Served with
``gunicorn --workers 2 bench.api_wsgi:app`` (gunicorn.conf.py's gevent worker); never by the product.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from flask import jsonify
from flask.wrappers import Response

from api.context import db
from api.limits import exempt_endpoints
from wsgi import app

BARE_TABLE = "bench_bare"
_bare = sa.table(BARE_TABLE, sa.column("id"), sa.column("note"))


def bare_insert() -> Response:
    session = db()
    row_id = str(uuid.uuid4())
    session.execute(sa.insert(_bare).values(id=row_id, note="bare"))
    session.commit()
    response = jsonify({"id": row_id})
    response.status_code = 201
    return response


app.add_url_rule("/bench/bare", "bench_bare", bare_insert, methods=["POST"])
exempt_endpoints(app, "bench_bare")
