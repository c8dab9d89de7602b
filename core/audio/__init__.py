"""Recorded messages: recognise, check, convert once to 8 kHz mono 16-bit PCM WAV, and store by id.

``formats`` (which containers and codecs, from magic bytes), ``convert`` (PyAV decoding under
limits, soxr resampling), ``store`` (files on disk), ``job`` (the worker's conversion of uploads
too heavy for a web request), ``errors``.
"""

from __future__ import annotations

from core.audio.convert import (
    DEFAULT_MAX_SAMPLES,
    TARGET_SAMPLE_RATE,
    Budget,
    ConvertedAudio,
    convert_upload,
)
from core.audio.errors import (
    AudioError,
    AudioTooComplex,
    AudioTooLarge,
    AudioTooLong,
    AudioTooShort,
    ConversionDeferred,
    InvalidAudioId,
    NotAudio,
    UnsupportedAudio,
)
from core.audio.store import AudioStore, PendingUploads

__all__ = [
    "DEFAULT_MAX_SAMPLES",
    "TARGET_SAMPLE_RATE",
    "AudioError",
    "AudioStore",
    "AudioTooComplex",
    "AudioTooLarge",
    "AudioTooLong",
    "AudioTooShort",
    "Budget",
    "ConversionDeferred",
    "ConvertedAudio",
    "InvalidAudioId",
    "NotAudio",
    "PendingUploads",
    "UnsupportedAudio",
    "convert_upload",
]
