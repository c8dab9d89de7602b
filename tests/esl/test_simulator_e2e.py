"""EslClient end to end against the FreeSWITCH simulator (``python -m simulator``)."""

from __future__ import annotations

import uuid as uuidlib
import wave
from collections.abc import Iterator
from pathlib import Path

import gevent
import gevent.subprocess
import pytest

from dialer.esl import EslClient
from dialer.events import (
    ChannelAnswered,
    ChannelHangup,
    ChannelProgress,
    ConnectionLost,
    OriginateResult,
    PlaybackStarted,
    PlaybackStopped,
)

from .conftest import Collector, simulator_process

pytestmark = pytest.mark.timeout(60)

CALLER = "5550000000"


@pytest.fixture(scope="module")
def simulator() -> Iterator[tuple[str, int, gevent.subprocess.Popen]]:
    with simulator_process("--time-scale", "10") as running:
        yield running


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("audio") / "message.wav"
    with wave.open(str(path), "wb") as w:  # 8 kHz mono 16-bit, 5 s, like stored audio
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 40000)
    return str(path)


@pytest.fixture
def client(simulator: tuple[str, int, object]) -> Iterator[tuple[EslClient, Collector]]:
    host, port, _ = simulator
    collector = Collector()
    esl = EslClient(host, port, "ClueCon", on_event=collector, command_timeout=5)
    esl.connect()
    try:
        yield esl, collector
    finally:
        esl.close()


def _final(collector: Collector, attempt: str, timeout: float = 10) -> list[object]:
    """Events of one attempt up to its ChannelHangup (or its failed OriginateResult)."""
    events: list[object] = []
    with gevent.Timeout(timeout, AssertionError(f"no final event; got {events!r}")):
        while True:
            event = collector.next(timeout)
            if getattr(event, "uuid", None) == attempt or getattr(event, "job_uuid", None) == attempt:
                events.append(event)
            if isinstance(event, ChannelHangup) and event.uuid == attempt:
                return events
            if isinstance(event, OriginateResult) and event.job_uuid == attempt and not event.ok \
                    and event.cause == "INVALID_GATEWAY":
                return events


def test_status_and_idle_channels(client: tuple[EslClient, Collector]) -> None:
    esl, _ = client
    assert esl.connected
    assert "is ready" in esl.status()
    assert esl.channels() == []
    assert esl.exists(str(uuidlib.uuid4())) is False
    assert esl.kill(str(uuidlib.uuid4())) is False


def test_answered_call_plays_the_message(client: tuple[EslClient, Collector], audio: str) -> None:
    esl, collector = client
    attempt = str(uuidlib.uuid4())
    esl.originate(attempt, "c-6", "5551000006", "carrier", audio, CALLER, 5)
    events = _final(collector, attempt)
    kinds = [type(e) for e in events]
    # the playback events are not subscribed to: the hangup's own variables tell the message played
    assert ChannelAnswered in kinds and PlaybackStarted not in kinds and PlaybackStopped not in kinds
    job = next(e for e in events if isinstance(e, OriginateResult))
    assert job.ok and job.channel_uuid == attempt
    hangup = events[-1]
    assert isinstance(hangup, ChannelHangup)
    assert hangup.message_started is True and hangup.played_ms == 5000
    assert hangup.call_id == "c-6" and hangup.answered and hangup.cause == "NORMAL_CLEARING"
    assert hangup.billsec >= 4


@pytest.mark.parametrize(
    ("digit", "cause", "sip", "progress"),
    [("2", "USER_BUSY", 486, None), ("5", "UNALLOCATED_NUMBER", 404, None),
     ("3", "NO_ANSWER", None, False), ("9", "NO_ANSWER", None, True)],
)
def test_failed_calls(
    client: tuple[EslClient, Collector], audio: str, digit: str, cause: str,
    sip: int | None, progress: bool | None,
) -> None:
    esl, collector = client
    attempt = str(uuidlib.uuid4())
    esl.originate(attempt, f"c-{digit}", f"555100000{digit}", "carrier", audio, CALLER, 5)
    events = _final(collector, attempt)
    hangup = events[-1]
    assert isinstance(hangup, ChannelHangup)
    assert (hangup.cause, hangup.sip_status, hangup.answered, hangup.billsec) == (cause, sip, False, 0)
    if progress is not None:
        first = events[0]
        assert isinstance(first, ChannelProgress) and first.early_media is progress


def test_missing_gateway_is_reported_by_the_background_job(
    client: tuple[EslClient, Collector], audio: str
) -> None:
    esl, collector = client
    attempt = str(uuidlib.uuid4())
    esl.originate(attempt, "c-0", "5551000001", "nosuchgw", audio, CALLER, 5)
    events = _final(collector, attempt)
    assert events == [OriginateResult(attempt, False, None, "INVALID_GATEWAY")]


def test_kill_an_answered_call(client: tuple[EslClient, Collector], audio: str) -> None:
    esl, collector = client
    attempt = str(uuidlib.uuid4())
    esl.originate(attempt, "c-10", "5551000000", "carrier", audio, CALLER, 30)
    collector.until(lambda e: isinstance(e, ChannelAnswered) and e.uuid == attempt, timeout=10)
    assert esl.exists(attempt) is True
    assert attempt in {c["uuid"] for c in esl.channels()}
    assert esl.kill(attempt) is True
    hangup = collector.until(lambda e: isinstance(e, ChannelHangup) and e.uuid == attempt)
    assert hangup.answered and hangup.cause == "NORMAL_CLEARING"
    assert esl.exists(attempt) is False


def test_many_concurrent_originates(client: tuple[EslClient, Collector], audio: str) -> None:
    esl, collector = client
    attempts = [str(uuidlib.uuid4()) for _ in range(30)]
    jobs = [
        gevent.spawn(esl.originate, a, f"c-{i}", "555100000" + "2693"[i % 4], "carrier", audio, CALLER, 5)
        for i, a in enumerate(attempts)
    ]
    gevent.joinall(jobs, raise_error=True, timeout=10)
    pending = set(attempts)
    with gevent.Timeout(20, AssertionError(f"missing hangups for {pending}")):
        while pending:
            event = collector.next(20)
            if isinstance(event, ChannelHangup):
                pending.discard(event.uuid)


def test_simulator_exit_reports_connection_lost(simulator: tuple[str, int, object]) -> None:
    host, port, _ = simulator
    collector = Collector()
    esl = EslClient(host, port, "ClueCon", on_event=collector, command_timeout=5)
    esl.connect()
    try:
        # drop the commands connection from the server side by asking it to leave
        esl._commands().send("exit")
        lost = collector.until(lambda e: isinstance(e, ConnectionLost), timeout=5)
        assert "commands connection lost" in lost.reason
        assert not esl.connected
        esl.connect()  # a fresh pair works
        assert "is ready" in esl.status()
    finally:
        esl.close()


def test_a_message_the_switch_cannot_open_never_started(client: tuple[EslClient, Collector], tmp_path: Path) -> None:
    """Answered, but the file is missing: as on the real switch, the hangup has no playback
    variables, so the message counts as never started (not delivered, not charged)."""
    esl, collector = client
    attempt = str(uuidlib.uuid4())
    esl.originate(attempt, "c-missing", "5551000006", "carrier", str(tmp_path / "gone.wav"), CALLER, 5)
    hangup = _final(collector, attempt)[-1]
    assert isinstance(hangup, ChannelHangup) and hangup.answered
    assert hangup.message_started is False and hangup.played_ms is None
