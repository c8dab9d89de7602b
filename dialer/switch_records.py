"""The switch's own record of each call leg, as the dialer reads it after being blind.

FreeSWITCH's mod_json_cdr writes one JSON file per leg into its ``log-dir`` at the end of the
leg, whether or not any ESL client is listening (``fs_conf/autoload_configs/json_cdr.conf.xml``;
the simulator writes the same files). The dialer reads that directory (``CDR_DIR``): a record
turns an attempt the switch no longer has into exact facts (answered or not, billsec, cause),
and the records of attempts already settled from their ESL events are deleted unread.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.call_states import HangupFacts

log = logging.getLogger("zenscall.dialer")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_RECORD_BYTES = 1 << 20
_SUFFIX = ".cdr.json"


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _when(variables: dict[str, Any], name: str) -> datetime | None:
    usec = _int(variables.get(f"{name}_uepoch"))
    if usec:
        return _EPOCH + timedelta(microseconds=usec)
    sec = _int(variables.get(f"{name}_epoch"))
    return _EPOCH + timedelta(seconds=sec) if sec else None


def facts_of(record: dict[str, Any]) -> HangupFacts | None:
    """The hangup facts of one mod_json_cdr record (None when it is not a leg record)."""
    variables = record.get("variables")
    if not isinstance(variables, dict):
        return None
    answered_at = _when(variables, "answer")
    billsec = _int(variables.get("billsec")) or 0
    answered = answered_at is not None or billsec > 0
    played = _int(variables.get("playback_last_offset_pos"))
    played_ms = played * 1000 // 8000 if played is not None and played >= 0 else _int(variables.get("playback_ms"))
    started: bool | None = None
    if answered:
        if played_ms is not None:
            started = played_ms > 0
        elif "playback_seconds" in variables or "current_application" in variables:
            started = variables.get("current_application") == "playback" or bool(_int(variables.get("playback_ms")))
    return HangupFacts(cause=str(variables.get("hangup_cause") or "UNKNOWN"),
                       q850=_int(variables.get("hangup_cause_q850")), sip_status=_int(variables.get("sip_term_status")),
                       answered=answered, answered_at=answered_at, ended_at=_when(variables, "end"),
                       billsec=billsec if answered else 0, duration=_int(variables.get("duration")) or 0,
                       played_ms=played_ms, message_started=started)


class RecordDirectory:
    """``SwitchRecords`` on a directory of mod_json_cdr files (``<uuid>.cdr.json`` or
    ``a_<uuid>.cdr.json``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _file(self, uuid: str) -> Path | None:
        for name in (f"{uuid}{_SUFFIX}", f"a_{uuid}{_SUFFIX}"):
            candidate = self.path / name
            if candidate.exists():
                return candidate
        return None

    def find(self, attempt_id: str) -> HangupFacts | None:
        path = self._file(attempt_id)
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_RECORD_BYTES + 1)
            if len(data) > MAX_RECORD_BYTES:
                raise ValueError("record too large")
            record = json.loads(data)
            return facts_of(record) if isinstance(record, dict) else None
        except (OSError, ValueError) as exc:  # half written, or not a record: read again later
            log.warning("unreadable switch record %s: %s", path.name, exc, extra={"event": "cdr_unreadable"})
            return None

    def listed(self, limit: int) -> list[str]:
        out: list[str] = []
        try:
            with os.scandir(self.path) as entries:
                for entry in entries:
                    name = entry.name
                    if not name.endswith(_SUFFIX):
                        continue
                    uuid = name[: -len(_SUFFIX)].removeprefix("a_")
                    out.append(uuid)
                    if len(out) >= limit:
                        break
        except FileNotFoundError:
            return []
        return out

    def remove(self, attempt_id: str) -> None:
        for name in (f"{attempt_id}{_SUFFIX}", f"a_{attempt_id}{_SUFFIX}"):
            try:
                os.unlink(self.path / name)
            except FileNotFoundError:
                pass
