"""Secure defaults on every response, and CORS only for the origins an operator names.

* ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: no-referrer`` everywhere;
* a Content-Security-Policy: ``default-src 'none'`` for the API, and for the Swagger UI
  page at ``/api/v1/docs`` one that allows its locally served assets and exactly its
  own inline bootstrap script (by hash, no ``'unsafe-inline'`` for scripts);
* ``Cache-Control: no-store`` on API JSON (balances, keys and calls are never cached);
* ``Strict-Transport-Security`` when ``ZC_ENV=production`` (TLS ends at the proxy);
* CORS is off unless ``CORS_ORIGINS`` lists origins; then only those get
  ``Access-Control-*`` headers (flask-cors), never ``*``.

Request size limits are ``MAX_CONTENT_LENGTH`` (``MAX_REQUEST_BYTES``), set in ``create_app``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

from flask import Flask, request
from flask.wrappers import Response

from core.settings import Settings

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = ("default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'self'; form-action 'none'")
HSTS = "max-age=31536000; includeSubDomains"
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)
EXPOSED_HEADERS = ["X-Request-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                   "Retry-After", "Location"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"]


def docs_csp(html: bytes) -> str:
    """The docs page's policy: its inline scripts allowed by their SHA-256, nothing else inline."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return DOCS_CSP.format(hashes=hashes).replace("'self' ;", "'self';")


def _secure_headers(production: bool, docs_path: str) -> Callable[[Response], Response]:
    def add(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.rstrip("/") == docs_path and response.mimetype == "text/html":
            headers["Content-Security-Policy"] = docs_csp(response.get_data())
        else:
            headers.setdefault("Content-Security-Policy", API_CSP)
        if response.mimetype == "application/json" or response.status_code >= 400:
            headers["Cache-Control"] = "no-store"
        if production:
            headers.setdefault("Strict-Transport-Security", HSTS)
        return response

    return add


def init_security(app: Flask, settings: Settings, api_prefix: str = "/api/v1") -> None:
    app.after_request(_secure_headers(settings.is_production, f"{api_prefix}/docs"))
    if settings.cors_origins:
        from flask_cors import CORS

        CORS(app, resources={"/api/*": {"origins": list(settings.cors_origins)}},
             allow_headers=ALLOWED_HEADERS, expose_headers=EXPOSED_HEADERS, max_age=600,
             supports_credentials=False, vary_header=True)
