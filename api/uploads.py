"""What the upload endpoints (campaigns, do-not-call lists) share: the file's display name."""

from __future__ import annotations

from typing import Any

from api.errors import ApiError
from api.resources.audio import upload_filename
from core.names import name_problem


def display_filename(upload: Any, field: str, default: str) -> str:
    """The uploaded file's base name for display: ``upload_filename``'s checks (no ``..``, no
    control characters), then the display-name rule (no direction overrides or other invisible
    characters); 422 ``INVALID_FILENAME`` otherwise."""
    name = upload_filename(upload.filename, field) or default
    problem = name_problem(name)
    if problem is not None:
        message = f"The file name {problem}."
        raise ApiError(422, "INVALID_FILENAME", message, {field: [message]})
    return name
