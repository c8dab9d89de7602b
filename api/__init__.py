"""The ZensCall REST API (Flask + flask-smorest). ``create_app`` wires it.

``create_app`` is imported on first use: the gunicorn master imports ``api.gunicorn_worker``
(and with it this package) before its workers fork and monkey-patch, and must not load the
application and its libraries then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from api.app import create_app

        return create_app
    raise AttributeError(f"module 'api' has no attribute {name!r}")
