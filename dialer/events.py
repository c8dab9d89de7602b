"""Domain events produced by the ESL adapter (``dialer.esl``).

These are the only things the rest of the dialer learns from FreeSWITCH: the
adapter translates raw ESL header blocks into these frozen values and hands
them to a callback.  Raw header dicts never leave the adapter.

Conventions:

* ``uuid`` is the channel's ``Unique-ID``.  The dialer originates with
  ``origination_uuid=<attempt uuid>``, so for our legs it is the attempt uuid.
* ``call_id`` is the channel variable ``zc_call_id`` set at originate time
  (``None`` only when the adapter was told to keep legs without it).
* every ``datetime`` is timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

__all__ = [
    "ChannelAnswered",
    "ChannelHangup",
    "ChannelProgress",
    "ConnectionLost",
    "DomainEvent",
    "OriginateResult",
    "PlaybackStarted",
    "PlaybackStopped",
]


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """Result of a ``bgapi originate`` (the BACKGROUND_JOB event).

    ``job_uuid`` is the ``Job-UUID`` we sent with the command (the attempt
    uuid).  On success the body is ``+OK <channel uuid>``; on failure it is
    ``-ERR <HANGUP_CAUSE>`` (e.g. ``INVALID_GATEWAY``, for which no channel
    event exists at all).
    """

    job_uuid: str
    ok: bool
    channel_uuid: str | None
    cause: str | None


@dataclass(frozen=True, slots=True)
class ChannelProgress:
    """CHANNEL_PROGRESS (180, ``early_media=False``) or
    CHANNEL_PROGRESS_MEDIA (183 with SDP, ``early_media=True``)."""

    uuid: str
    call_id: str | None
    at: datetime
    early_media: bool


@dataclass(frozen=True, slots=True)
class ChannelAnswered:
    """CHANNEL_ANSWER: the callee picked up."""

    uuid: str
    call_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class PlaybackStarted:
    """PLAYBACK_START of the message on the channel."""

    uuid: str
    call_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class PlaybackStopped:
    """PLAYBACK_STOP.  FreeSWITCH reports ``Playback-Status: done`` even when
    the far end hung up mid-file, so ``played_ms`` is what tells how much of
    the message was heard (``None`` when the switch did not report it)."""

    uuid: str
    call_id: str | None
    at: datetime
    played_ms: int | None


@dataclass(frozen=True, slots=True)
class ChannelHangup:
    """CHANNEL_HANGUP_COMPLETE: the final record of a channel.

    ``answered`` comes from ``variable_endpoint_disposition == ANSWER`` or a
    non-zero answer time, never from the hangup cause (an answered call ends
    with NORMAL_CLEARING exactly like a ``uuid_kill`` on a ringing one).
    ``billsec`` can be 0 on an answered call shorter than one second.
    """

    uuid: str
    call_id: str | None
    at: datetime
    cause: str
    q850: int | None
    sip_status: int | None
    answered: bool
    answered_at: datetime | None
    ended_at: datetime
    billsec: int
    duration: int
    started_at: datetime | None = None
    #: answered legs: whether the switch opened the message (its playback variables exist: a file it
    #: could not open leaves them out), and how much of it was sent; None when not answered
    message_started: bool | None = None
    played_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The ESL connection to FreeSWITCH ended without being asked to.

    Pending commands have already failed; the dialer reconnects and
    reconciles its non-final calls (``uuid_exists`` / ``show channels``).
    """

    reason: str


DomainEvent: TypeAlias = (
    OriginateResult
    | ChannelProgress
    | ChannelAnswered
    | PlaybackStarted
    | PlaybackStopped
    | ChannelHangup
    | ConnectionLost
)
