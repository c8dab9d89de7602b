"""The switch's own record of each call leg, as the engine uses it after being blind.

FreeSWITCH's mod_json_cdr writes one JSON file per leg into ``CDR_DIR`` at the end of the leg,
whether or not any ESL client is listening (``fs_conf/autoload_configs/json_cdr.conf.xml``; the
simulator writes the same files). ``dialer.cdr`` reads them; this module turns a record into the
hangup facts settlement judges: a record turns an attempt the switch no longer has into exact
facts (answered or not, billsec, cause, whether the message started), and the records of attempts
already settled from their ESL events are deleted unread.
"""

from __future__ import annotations

import logging
import os

from core.call_states import HangupFacts
from dialer.cdr import CdrDirectory, CdrError, CdrIncomplete, CdrRecord

log = logging.getLogger("zenscall.dialer")


def facts_of(record: CdrRecord) -> HangupFacts:
    """The hangup facts of one record. The message started when the switch opened the file (the
    playback variables exist); a missing or unreadable file leaves them out."""
    return HangupFacts(cause=record.cause, q850=record.q850, sip_status=record.sip_status,
                       answered=record.answered, answered_at=record.answered_at, ended_at=record.ended_at,
                       billsec=record.billsec if record.answered else 0, duration=record.duration,
                       played_ms=record.played_ms,
                       message_started=record.playback_started if record.answered else None)


class RecordDirectory:
    """``SwitchRecords`` (see ``dialer.engine``) on the directory FreeSWITCH writes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.directory = CdrDirectory(path)

    def find(self, attempt_id: str) -> HangupFacts | None:
        try:
            record = self.directory.read(attempt_id)
        except CdrIncomplete:
            return None  # still being written: read again at the next pass
        except CdrError as exc:  # not a record: left for the operator, the attempt waits
            log.warning("unreadable switch record of %s: %s", attempt_id, exc, extra={"event": "cdr_unreadable"})
            return None
        return None if record is None else facts_of(record)

    def listed(self, limit: int) -> list[str]:
        return [entry.uuid for entry in self.directory.oldest(limit)]

    def remove(self, attempt_id: str) -> None:
        self.directory.remove(attempt_id)
