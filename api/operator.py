"""Who is the operator: the bearer of ``METRICS_TOKEN``.

``/metrics`` (counts across every tenant) answers only the operator, and ``/api/v1/ready`` shows
its per-check details (hosts, errors, dialer nodes) only to the operator; a load balancer without
the token still gets the status. Production refuses to start without the token; in development,
with no token set, everyone is the operator (keep such a port local).
"""

from __future__ import annotations

import hmac

from flask import request

from core.settings import Settings


def is_operator(settings: Settings) -> bool:
    """Does this request carry ``Authorization: Bearer <METRICS_TOKEN>``? (Constant-time compare.)"""
    token = settings.metrics_token
    if not token:
        return not settings.is_production
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode())
