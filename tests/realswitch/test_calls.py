"""Calls through fs_conf/ on a real FreeSWITCH 1.11.1: every call ends by itself, and the switch's
own record (mod_json_cdr) says what happened, whether or not the dialer was listening.

The carrier answers by the number's last digit: 6 answers with audio and stays up, 0 answers
and parks (sends no RTP at all), 2 is busy. Calls go through the dialer's own ESL adapter
(``EslClient.originate`` -> ``build_originate``), ``limit_s`` included.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from pathlib import Path

import gevent
import pytest

from dialer.cdr import CdrDirectory, CdrRecord, cdr_filename
from dialer.esl import EslClient, build_originate
from dialer.events import ChannelAnswered, ChannelHangup, OriginateResult
from tests.esl.conftest import Collector
from tests.realswitch.conftest import Rig

pytestmark = pytest.mark.timeout(120)
CALLER = "4212345678"


def _events(collector: Collector, attempt: str, timeout: float) -> list[object]:
    """Our leg's events up to and including its ChannelHangup."""
    out: list[object] = []
    with gevent.Timeout(timeout, AssertionError(f"no hangup of {attempt} within {timeout} s: {out!r}")):
        while True:
            event = collector.next(timeout)
            if getattr(event, "uuid", None) == attempt or getattr(event, "job_uuid", None) == attempt:
                out.append(event)
                if isinstance(event, ChannelHangup):
                    return out


def _record(rig: Rig, attempt: str, timeout: float = 10.0) -> CdrRecord:
    directory = CdrDirectory(rig.cdr_dir, min_age_s=0)
    deadline = time.monotonic() + timeout
    while True:
        record = None
        if (rig.cdr_dir / cdr_filename(attempt)).exists():
            try:
                record = directory.read(attempt)
            except Exception:  # noqa: BLE001 - FreeSWITCH writes in place: may be half written
                record = None
        if record is not None:
            return record
        assert time.monotonic() < deadline, f"no CDR for {attempt} in {timeout} s"
        gevent.sleep(0.1)


def _call(esl: tuple[EslClient, Collector], rig: Rig, number: str, audio: str, *, limit_s: int | None,
          timeout: float = 30.0, originate_timeout: int = 20) -> tuple[list[object], ChannelHangup, float]:
    client, collector = esl
    attempt = str(uuidlib.uuid4())
    started = time.monotonic()
    client.originate(attempt, f"c-{attempt[:8]}", number, "carrier", audio, CALLER, originate_timeout,
                     limit_s=limit_s)
    events = _events(collector, attempt, timeout)
    hangup = events[-1]
    assert isinstance(hangup, ChannelHangup)
    return events, hangup, time.monotonic() - started


def test_answered_call_plays_the_message_and_leaves_a_record(rig: Rig, esl: tuple[EslClient, Collector]) -> None:
    events, hangup, _ = _call(esl, rig, "923001234566", rig.message(4), limit_s=10)
    kinds = {type(e) for e in events}
    # the dialer's subscription: no playback events; the hangup itself says what was played
    assert kinds == {OriginateResult, ChannelAnswered, ChannelHangup}, kinds
    assert hangup.message_started and hangup.played_ms == 4000
    assert hangup.cause == "NORMAL_CLEARING" and hangup.answered and hangup.billsec in (4, 5)
    record = _record(rig, hangup.uuid)
    assert (record.uuid, record.call_id) == (hangup.uuid, hangup.call_id)
    assert (record.cause, record.answered, record.billsec, record.played_ms) == ("NORMAL_CLEARING", True,
                                                                                  hangup.billsec, 4000)
    assert record.playback_started and record.playback_response == "FILE PLAYED"
    assert record.answered_at == hangup.answered_at and record.ended_at == hangup.ended_at


def test_a_callee_that_sends_no_media_hears_the_message_and_the_call_ends(
        rig: Rig, esl: tuple[EslClient, Collector]) -> None:
    """Digit 0 answers and parks: no RTP ever comes back. The profile's RTP timer paces our
    playback, so the 4 s message plays out and the call ends by itself."""
    events, hangup, took = _call(esl, rig, "923001234560", rig.message(4), limit_s=7, timeout=10)
    assert took < 4 + 3
    assert hangup.message_started and hangup.played_ms == 4000
    assert hangup.cause == "NORMAL_CLEARING" and hangup.answered
    record = _record(rig, hangup.uuid)
    assert record.played_ms == 4000 and record.playback_response == "FILE PLAYED"


def test_the_hard_limit_ends_a_call_that_would_go_on(rig: Rig, esl: tuple[EslClient, Collector]) -> None:
    """A 30 s message to a callee that never hangs up, limit_s 5: the switch itself hangs up
    with ALLOTTED_TIMEOUT, 4 to 6 s after the answer."""
    events, hangup, took = _call(esl, rig, "923001234560", rig.message(30), limit_s=5, timeout=15)
    assert hangup.cause == "ALLOTTED_TIMEOUT" and hangup.answered
    assert hangup.answered_at is not None
    talk = (hangup.ended_at - hangup.answered_at).total_seconds()
    assert 4 < talk < 6, talk
    assert hangup.message_started and hangup.played_ms is not None and 3500 < hangup.played_ms < 6500
    record = _record(rig, hangup.uuid)
    assert (record.cause, record.q850, record.answered) == ("ALLOTTED_TIMEOUT", 16, True)
    assert record.played_ms == hangup.played_ms


def test_the_hard_limit_ends_a_stalled_playback(rig: Rig, esl: tuple[EslClient, Collector]) -> None:
    """Without an RTP timer (``rtp_timer_name=none`` on this call: what the profile had before) a
    callee that sends no media stalls playback for ever; the limit still ends the call."""
    client, collector = esl
    attempt = str(uuidlib.uuid4())
    arg = build_originate(attempt, "c-stall", "923001234560", "carrier", rig.message(4), CALLER, 20, limit_s=4)
    reply = client.api("originate {rtp_timer_name=none," + arg[1:])  # returns at the answer
    assert reply.startswith("+OK"), reply
    events = _events(collector, attempt, 10)
    hangup = events[-1]
    assert isinstance(hangup, ChannelHangup) and hangup.cause == "ALLOTTED_TIMEOUT"
    assert hangup.message_started and hangup.played_ms is not None
    assert hangup.played_ms < 500  # stuck after the first frames
    record = _record(rig, attempt)
    assert record.playback_response == "PLAYBACK ERROR" and record.played_ms == hangup.played_ms


def test_media_timeout_ends_a_call_without_media(rig: Rig, esl: tuple[EslClient, Collector]) -> None:
    """fs_conf's global media_timeout (30000 ms; lowered to 2000 here for the test) applies to
    our originated legs: no RTP from the callee -> MEDIA_TIMEOUT."""
    rig.switch.api("global_setvar media_timeout=2000")
    try:
        events, hangup, took = _call(esl, rig, "923001234560", rig.message(30), limit_s=20, timeout=15)
    finally:
        rig.switch.api("global_setvar media_timeout=30000")
    assert hangup.cause == "MEDIA_TIMEOUT" and hangup.answered and took < 6
    record = _record(rig, hangup.uuid)
    assert (record.cause, record.playback_response) == ("MEDIA_TIMEOUT", "PLAYBACK ERROR")
    assert record.played_ms is not None and 1500 < record.played_ms < 4000


def test_missing_message_file(rig: Rig, esl: tuple[EslClient, Collector]) -> None:
    """Answered, but the file cannot be opened: no PLAYBACK_START/STOP, NORMAL_CLEARING at once,
    billsec 0; the record has no playback variables and says FILE NOT FOUND."""
    missing = str(rig.audio_dir / "no-such-message.wav")
    events, hangup, took = _call(esl, rig, "923001234566", missing, limit_s=10, timeout=10)
    assert ChannelAnswered in [type(e) for e in events]
    assert hangup.message_started is False and hangup.played_ms is None
    assert hangup.cause == "NORMAL_CLEARING" and hangup.answered and hangup.billsec == 0 and took < 3
    record = _record(rig, hangup.uuid)
    assert record.answered and not record.playback_started and record.played_ms is None
    assert record.playback_response == "FILE NOT FOUND"


def test_not_audio_is_the_same_as_missing(rig: Rig, esl: tuple[EslClient, Collector]) -> None:
    bad = rig.audio_dir / "not-audio.wav"
    bad.write_bytes(b"RIFF....WAVEjunk" * 100)
    events, hangup, _ = _call(esl, rig, "923001234566", str(bad), limit_s=10, timeout=10)
    assert ChannelAnswered in [type(e) for e in events] and hangup.message_started is False
    assert _record(rig, hangup.uuid).playback_response == "FILE NOT FOUND"


def test_records_are_written_with_no_client_listening(rig: Rig) -> None:
    """The dialer is blind (no ESL connection at all): the records still appear."""
    busy, answered = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    for attempt, number in ((busy, "923001234562"), (answered, "923001234566")):
        arg = build_originate(attempt, f"c-{attempt[:8]}", number, "carrier", rig.message(4), CALLER, 20,
                              limit_s=10)
        rig.switch.api(f"originate {arg}")  # one short connection each, closed at once
    busy_record = _record(rig, busy)
    assert (busy_record.cause, busy_record.q850, busy_record.sip_status) == ("USER_BUSY", 17, 486)
    assert not busy_record.answered and busy_record.billsec == 0
    record = _record(rig, answered, timeout=15)
    assert record.cause == "NORMAL_CLEARING" and record.played_ms == 4000
    assert record.call_id == f"c-{answered[:8]}"


def test_no_channel_no_record(rig: Rig, esl: tuple[EslClient, Collector]) -> None:
    """An originate that fails before any channel exists (unknown gateway) leaves no record:
    its BACKGROUND_JOB ``-ERR`` is the only trace."""
    client, collector = esl
    attempt = str(uuidlib.uuid4())
    client.originate(attempt, "c-nogw", "923001234566", "nosuchgateway", rig.message(4), CALLER, 20, limit_s=10)
    with gevent.Timeout(10):
        result = collector.until(lambda e: isinstance(e, OriginateResult) and e.job_uuid == attempt)
    assert not result.ok and result.cause == "INVALID_GATEWAY"
    gevent.sleep(2)
    assert not Path(rig.cdr_dir / cdr_filename(attempt)).exists()
