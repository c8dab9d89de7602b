"""Every error leaves the API as ``{"error": {"code", "message", "details"}}``.

Views raise ``ApiError`` (or its helpers); Flask/werkzeug HTTP errors, webargs
validation errors, rate-limit breaches and unexpected exceptions are all converted
here, so no stack trace or internal message ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from flask.wrappers import Response
from werkzeug.exceptions import HTTPException

from services.errors import Refused

log = logging.getLogger("zenscall.api")

# Default codes per HTTP status, for errors raised by the framework itself (and by gunicorn,
# for requests it refuses before the application sees them: api/gunicorn_worker.py).
STATUS_CODES: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "The request could not be understood."),
    401: ("UNAUTHORIZED", "Authentication is required."),
    403: ("FORBIDDEN", "You are not allowed to do this."),
    404: ("NOT_FOUND", "The requested resource was not found."),
    405: ("METHOD_NOT_ALLOWED", "This method is not allowed on this resource."),
    406: ("NOT_ACCEPTABLE", "The requested representation is not available."),
    409: ("CONFLICT", "The request conflicts with the current state of the resource."),
    413: ("PAYLOAD_TOO_LARGE", "The request body is too large."),
    414: ("URI_TOO_LONG", "The request line (method, URL and version) is too long."),
    415: ("UNSUPPORTED_MEDIA_TYPE", "The request's content type is not supported."),
    417: ("EXPECTATION_FAILED", "The request's Expect header cannot be met."),
    422: ("VALIDATION_ERROR", "The request failed validation."),
    429: ("RATE_LIMITED", "Too many requests. Slow down and retry later."),
    431: ("HEADERS_TOO_LARGE", "The request has too many headers, or a header is too large."),
    500: ("INTERNAL_ERROR", "An unexpected error occurred. It has been logged."),
    501: ("NOT_IMPLEMENTED", "The server does not support what the request needs (e.g. its transfer coding)."),
    503: ("SERVICE_UNAVAILABLE", "The service is temporarily unavailable."),
}


class ApiError(Refused):
    """An error a view wants to answer with; carries the documented fields. The services'
    refusals (``services.errors.Refused``) answer the same way."""


def not_found(what: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} not found.")


def validation_error(field: str, message: str, *, code: str = "VALIDATION_ERROR") -> ApiError:
    return ApiError(422, code, message, {field: [message]})


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _webargs_details(data: dict[str, Any]) -> dict[str, Any]:
    """Flatten webargs' ``{"json": {"field": [...]}}`` into ``{"field": [...]}``."""
    messages = data.get("messages") or data.get("errors") or {}
    details: dict[str, Any] = {}
    if isinstance(messages, dict):
        for location, fields in messages.items():
            if isinstance(fields, dict):
                details.update(fields)
            else:
                details[location] = fields
    return details


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    code, message = STATUS_CODES.get(status, ("HTTP_ERROR", error.description or "HTTP error"))
    details: dict[str, Any] = {}
    data = getattr(error, "data", None)
    if isinstance(data, dict):
        details = _webargs_details(data)
        if status == 400 and "json" in (data.get("messages") or {}):
            message = "The request body is not valid JSON."
            code = "INVALID_JSON"
        if data.get("message"):
            message = str(data["message"])
    elif status == 400 and error.description and "JSON" in error.description:
        code, message = "INVALID_JSON", "The request body is not valid JSON."
    if status == 422 and details:
        message = "The request failed validation: " + ", ".join(sorted(details)) + "."
    headers = {}
    if status == 405 and hasattr(error, "valid_methods") and error.valid_methods:
        headers["Allow"] = ", ".join(sorted(error.valid_methods))
    return error_response(status, code, message, details, headers)


def handle_api_error(error: Refused) -> Response:
    return error_response(error.status, error.code, error.message, error.details, error.headers)


def handle_unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    log.exception("unhandled error", exc_info=error)
    code, message = STATUS_CODES[500]
    return error_response(500, code, message)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(Refused, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
