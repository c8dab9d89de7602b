"""Structured JSON logs: one object per line, with the call id on every line about a call."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime

# attributes every LogRecord has; anything else passed in ``extra`` is logged as a field
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


# callables returning fields of the current context (e.g. the web request's id, account and call);
# a field passed explicitly in ``extra`` wins over the context's
_context_providers: list[Callable[[], dict[str, object]]] = []


def add_context_provider(provider: Callable[[], dict[str, object]]) -> None:
    if provider not in _context_providers:
        _context_providers.append(provider)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        for provider in _context_providers:
            try:
                fields = provider()
            except Exception:  # a log line is never lost to its context
                fields = {}
            for key, value in fields.items():
                if value is not None:
                    payload.setdefault(key, value)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
