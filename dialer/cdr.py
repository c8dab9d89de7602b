"""FreeSWITCH's own call records: the ``mod_json_cdr`` files the switch writes per call leg.

FreeSWITCH writes ``<uuid>.cdr.json`` into its ``log-dir`` (``fs_conf``: ``cdr_dir``, env
``CDR_DIR``) at the end of every leg, whether or not the dialer is connected, so after a
dialer crash or an ESL disconnect these files say what happened to the calls it did not
see end. For our legs ``uuid`` is the ``origination_uuid`` the dialer chose (the attempt
id) and the variables carry our ``zc_call_id``.

What the files look like (FreeSWITCH 1.11.1, ``encode-values`` false, recorded in
``tests/fixtures/cdr``): one JSON object, keys ``core-uuid``, ``switchname``,
``channel_data``, ``callStats``, ``variables`` (every channel variable, all values strings),
``app_log`` (the applications run, absent when none ran), ``callflow``. Settlement needs
only ``variables``:

* ``uuid``, ``origination_uuid``, ``zc_call_id``;
* ``answer_uepoch`` / ``start_uepoch`` / ``end_uepoch`` (microseconds, ``"0"`` when the
  moment never came), ``billsec``, ``duration`` (whole seconds, from epoch seconds);
  ``endpoint_disposition`` is ``ANSWER`` on an answered leg;
* ``hangup_cause``, ``hangup_cause_q850``, ``sip_term_status`` (only when the far end
  answered the INVITE with a final failure, e.g. ``486``);
* the message: ``playback_last_offset_pos`` (samples of the file sent; exact),
  ``playback_samples`` / ``playback_ms`` (whole read buffers: they over-report a cut-short
  file) exist only once the file was opened (PLAYBACK_START). A missing or unreadable file
  leaves them out and sets ``current_application_response`` to ``FILE NOT FOUND``; the
  response is ``FILE PLAYED`` or ``PLAYBACK ERROR`` otherwise, also when the call was cut
  short, so only the offset tells how much was heard.

FreeSWITCH writes a file in place (open, write, close: no rename), so a reader can meet a
file that is still empty or half written: :meth:`CdrDirectory.oldest` lists only files older than
``min_age_s`` and :func:`parse_cdr` refuses anything that is not one complete record.

Standard library only; mypy --strict.
"""

from __future__ import annotations

import errno
import heapq
import json
import os
import re
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "CdrDirectory",
    "CdrEntry",
    "CdrError",
    "CdrIncomplete",
    "CdrRecord",
    "cdr_filename",
    "parse_cdr",
]

#: Stored audio is always 8 kHz mono (converted at upload): samples -> milliseconds.
AUDIO_SAMPLE_RATE = 8000
#: A record is a few KB; anything far larger is not one.
MAX_CDR_BYTES = 1024 * 1024

_SUFFIX = ".cdr.json"
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_FILE_RE = re.compile(_UUID_RE.pattern + re.escape(_SUFFIX))
_CAUSE_RE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CdrError(ValueError):
    """A file that is not one complete, well-formed FreeSWITCH call record."""


class CdrIncomplete(CdrError):
    """The file is empty or ends early and was written moments ago: FreeSWITCH may still be
    writing it. Read it again later."""


@dataclass(frozen=True, slots=True)
class CdrRecord:
    """One call leg as FreeSWITCH recorded it; names as in :class:`dialer.events.ChannelHangup`.

    ``answered`` comes from the answer time or ``endpoint_disposition`` (never from the
    cause); ``billsec`` can be 0 on an answered leg shorter than a second.
    ``playback_started``: the message file was opened (PLAYBACK_START happened);
    ``played_ms``: how much of it was sent, from the exact file offset (None when the
    record does not say). ``playback_response`` is FreeSWITCH's word for the playback
    (``FILE PLAYED``, ``FILE NOT FOUND``, ``PLAYBACK ERROR``), not proof that the whole
    file played. Every ``datetime`` is timezone-aware UTC.
    """

    uuid: str
    call_id: str | None
    answered: bool
    answered_at: datetime | None
    started_at: datetime | None
    ended_at: datetime
    billsec: int
    duration: int
    cause: str
    q850: int | None
    sip_status: int | None
    playback_started: bool
    played_ms: int | None
    playback_response: str | None


@dataclass(frozen=True, slots=True)
class CdrEntry:
    """A record file in the directory (not yet read)."""

    uuid: str
    path: str
    mtime: float
    size: int


def cdr_filename(uuid: str) -> str:
    """``<uuid>.cdr.json``, as mod_json_cdr names an A leg's file (``prefix-a-leg`` false)."""
    return _check_uuid(uuid) + _SUFFIX


# --------------------------------------------------------------------------- parsing


def _check_uuid(value: object) -> str:
    if not isinstance(value, str) or _UUID_RE.fullmatch(value) is None:
        raise CdrError(f"not a uuid: {value!r:.80}")
    return value.lower()


def _text(variables: Mapping[str, object], name: str) -> str | None:
    value = variables.get(name)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _int(variables: Mapping[str, object], name: str) -> int | None:
    text = _text(variables, name)
    if text is None or not text.isascii() or not text.lstrip("-").isdigit() or len(text) > 20:
        return None
    return int(text)


def _count(variables: Mapping[str, object], name: str) -> int:
    value = _int(variables, name)
    return value if value is not None and value >= 0 else 0


def _moment(variables: Mapping[str, object], prefix: str) -> datetime | None:
    """``<prefix>_uepoch`` (microseconds), else ``<prefix>_epoch``; None for 0 / absent."""
    usec = _int(variables, prefix + "_uepoch")
    if usec is not None and usec > 0:
        return _EPOCH + timedelta(microseconds=usec)
    sec = _int(variables, prefix + "_epoch")
    if sec is not None and sec > 0:
        return _EPOCH + timedelta(seconds=sec)
    return None


def parse_cdr(data: bytes | str) -> CdrRecord:
    """One mod_json_cdr file's content -> :class:`CdrRecord`; raises :class:`CdrError`
    (with the reason, never the content) for anything that is not one complete record."""
    if len(data) > MAX_CDR_BYTES:
        raise CdrError(f"record of {len(data)} bytes is larger than {MAX_CDR_BYTES}")
    if not data.strip():
        raise CdrError("empty record")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise CdrError(f"not JSON: {type(exc).__name__} {str(exc)[:80]}") from None
    if not isinstance(doc, dict):
        raise CdrError(f"not a JSON object but {type(doc).__name__}")
    variables = doc.get("variables")
    if not isinstance(variables, dict):
        raise CdrError("no 'variables' object")
    uuid = _check_uuid(_text(variables, "uuid") or _text(variables, "origination_uuid"))
    cause = _text(variables, "hangup_cause")
    if cause is None or _CAUSE_RE.fullmatch(cause) is None:
        raise CdrError(f"no hangup cause: {cause!r:.80}")
    ended_at = _moment(variables, "end")
    if ended_at is None:
        raise CdrError("no end time")
    answered_at = _moment(variables, "answer")
    billsec = _count(variables, "billsec")
    offset = _int(variables, "playback_last_offset_pos")
    samples = _int(variables, "playback_samples")
    if offset is not None and offset >= 0:
        played_ms: int | None = offset * 1000 // AUDIO_SAMPLE_RATE
    else:
        played_ms = _int(variables, "playback_ms")
    response = None
    if _text(variables, "current_application") == "playback":
        response = _text(variables, "current_application_response")
    call_id = _text(variables, "zc_call_id")
    return CdrRecord(
        uuid=uuid,
        call_id=call_id if call_id else None,
        answered=answered_at is not None
        or billsec > 0
        or _text(variables, "endpoint_disposition") == "ANSWER",
        answered_at=answered_at,
        started_at=_moment(variables, "start"),
        ended_at=ended_at,
        billsec=billsec,
        duration=_count(variables, "duration"),
        cause=cause,
        q850=_int(variables, "hangup_cause_q850"),
        sip_status=_int(variables, "sip_term_status"),
        playback_started=offset is not None or samples is not None,
        played_ms=played_ms,
        playback_response=response,
    )


# --------------------------------------------------------------------------- the directory


class CdrDirectory:
    """The directory FreeSWITCH writes records into: the oldest files, one by uuid, removal.

    Only names ``<uuid>.cdr.json`` that are regular files count (no links, no FIFOs, no
    ``a_`` prefixed or temporary names). ``min_age_s``: files modified more recently are
    left for later (FreeSWITCH may still be writing them).
    """

    def __init__(self, path: str | os.PathLike[str], *, min_age_s: float = 1.0) -> None:
        self.path = os.fspath(path)
        self.min_age_s = min_age_s

    def oldest(self, limit: int = 500) -> list[CdrEntry]:
        """Up to ``limit`` record files, oldest first (by modification time)."""
        if limit <= 0:
            return []
        newest = time.time() - self.min_age_s
        entries: list[CdrEntry] = []
        try:
            scan = os.scandir(self.path)
        except FileNotFoundError:
            return []
        with scan:
            for item in scan:
                if _FILE_RE.fullmatch(item.name) is None:
                    continue
                try:
                    if not item.is_file(follow_symlinks=False):
                        continue
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed meanwhile
                if st.st_mtime > newest:
                    continue
                entries.append(CdrEntry(item.name[: -len(_SUFFIX)].lower(), item.path,
                                        st.st_mtime, st.st_size))
        return heapq.nsmallest(limit, entries, key=lambda e: (e.mtime, e.uuid))

    def read(self, uuid: str) -> CdrRecord | None:
        """The record of ``uuid``, or None when there is no file. Raises :class:`CdrError`
        for a file that is not a record (:class:`CdrIncomplete` if it may still be in
        the writing) or whose uuid is another leg's."""
        path = os.path.join(self.path, cdr_filename(uuid))
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CdrError(f"{os.path.basename(path)} is a symbolic link") from None
            raise CdrError(f"cannot open {os.path.basename(path)}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CdrError(f"{os.path.basename(path)} is not a regular file")
            data = f.read(MAX_CDR_BYTES + 1)
        try:
            record = parse_cdr(data)
        except CdrError as exc:
            if time.time() - st.st_mtime < max(self.min_age_s, 1.0) and not data.rstrip().endswith(b"}"):
                raise CdrIncomplete(f"{os.path.basename(path)}: {exc} (still being written?)") from None
            raise CdrError(f"{os.path.basename(path)}: {exc}") from None
        if record.uuid != uuid.lower():
            raise CdrError(f"{os.path.basename(path)} holds the record of {record.uuid}")
        return record

    def remove(self, uuid: str) -> bool:
        """Delete the record file of ``uuid`` (once it is settled); False if it was not there."""
        try:
            os.unlink(os.path.join(self.path, cdr_filename(uuid)))
        except FileNotFoundError:
            return False
        return True
