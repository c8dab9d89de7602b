"""Why an upload cannot become a message. Each error carries its API code and HTTP status."""

from __future__ import annotations

from typing import Any


class AudioError(Exception):
    """An upload that cannot become a message. ``code`` is the API error code."""

    code: str = "AUDIO_ERROR"
    http_status: int = 422

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def api_details(self) -> dict[str, Any]:
        """``details`` of the API's error envelope: the message under ``file``, then the figures."""
        return {"file": [self.message], **self.details}


class _FixedCodeError(AudioError):
    """Subclasses carry their own API code: raise ``NotAudio("message", key=detail)``."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(type(self).code, message, details)


class AudioTooLarge(_FixedCodeError):
    code = "AUDIO_TOO_LARGE"
    http_status = 413


class NotAudio(_FixedCodeError):
    code = "NOT_AUDIO"


class UnsupportedAudio(_FixedCodeError):
    code = "UNSUPPORTED_AUDIO"


class AudioTooLong(_FixedCodeError):
    code = "AUDIO_TOO_LONG"


class AudioTooShort(_FixedCodeError):
    code = "AUDIO_TOO_SHORT"


class AudioTooComplex(_FixedCodeError):
    """More decoded samples (rate x channels x seconds) than ``max_samples`` allows."""

    code = "AUDIO_TOO_COMPLEX"


class InvalidAudioId(ValueError):
    """An audio id that is not a canonical UUID string (it would not be safe as a file name)."""


class ConversionDeferred(Exception):  # noqa: N818 (a signal, not an error)
    """The conversion needs more than the in-request budget: hand the upload to the worker.

    Raised only when ``convert_upload`` is given a ``budget``; everything checked before the
    budget ran out (container, codec, declared duration and work) already passed.
    """

    def __init__(self, source_format: str, reason: str) -> None:
        super().__init__(reason)
        self.source_format = source_format
        self.reason = reason
