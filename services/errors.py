"""A refusal a service answers with: the status, code, message and details every surface shows
(the API in its error envelope, the console on the page), so a rule refuses alike everywhere."""

from __future__ import annotations

from typing import Any


class Refused(Exception):
    """Refused input or state: ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def not_found(what: str) -> Refused:
    return Refused(404, "NOT_FOUND", f"{what} not found.")


def invalid(field: str, message: str, *, code: str = "VALIDATION_ERROR") -> Refused:
    return Refused(422, code, message, {field: [message]})
