"""``python -m dashboard``: check the dashboard's settings, then serve it with gunicorn.

Reads ``DASHBOARD_USER``, ``DASHBOARD_PASSWORD`` / ``DASHBOARD_PASSWORD_FILE``,
``DASHBOARD_BIND``, ``DASHBOARD_PORT`` and ``REDIS_URL`` from the environment; takes no
arguments, so no secret ever appears on a command line. Exits with status 2 and the reason on
stderr when the settings are unsafe.
"""

from __future__ import annotations

import sys
from typing import Any

from gunicorn.app.base import BaseApplication

from core.settings import ConfigError, load_dashboard_settings
from dashboard import create_dashboard, server_options


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        return self._app


def main() -> None:
    if len(sys.argv) > 1:
        sys.exit("usage: python -m dashboard (settings come from the environment, never the command line)")
    try:
        config = load_dashboard_settings()
    except ConfigError as exc:
        print(f"dashboard: refusing to start: {exc}", file=sys.stderr)
        sys.exit(2)
    _Server(create_dashboard(config), server_options(config)).run()


if __name__ == "__main__":
    main()
