"""Translation of every real capture into domain events (no sockets)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from dialer.esl import TRANSLATED_HEADERS, translate
from dialer.esl_wire import EslProtocolError, RawEvent, parse_json_event, parse_plain_event, read_message
from dialer.events import (
    ChannelAnswered,
    ChannelHangup,
    ChannelProgress,
    OriginateResult,
    PlaybackStarted,
    PlaybackStopped,
)
from tests.fixtures import CAPTURES

from .conftest import capture, index, messages, raw_events

pytestmark = pytest.mark.timeout(30)

CALL_CAPTURES = sorted(n for n, i in index().items() if "hangup_complete_a_legs" in i)


def _a_leg_uuids(info: dict) -> list[str]:
    legs = info.get("a_leg_uuids") or [info["a_leg_uuid"]]
    return list(legs.values()) if isinstance(legs, dict) else list(legs)


@pytest.mark.parametrize("name", CALL_CAPTURES)
def test_hangup_of_every_a_leg_matches_the_index(name: str) -> None:
    info = index()[name]
    events = [translate(e, require_call_id=False) for e in raw_events(capture(name))]
    hangups = {e.uuid: e for e in events if isinstance(e, ChannelHangup)}
    for uuid in _a_leg_uuids(info):
        expected = info["hangup_complete_a_legs"][uuid]
        got = hangups[uuid]
        assert got.cause == expected["Hangup-Cause"]
        assert got.q850 == int(expected["variable_hangup_cause_q850"])
        sip = expected.get("variable_sip_term_status")
        assert got.sip_status == (int(sip) if sip else None)
        assert got.billsec == int(expected["variable_billsec"])
        assert got.duration == int(expected["variable_duration"])
        assert got.answered == (expected.get("variable_endpoint_disposition") == "ANSWER")
        assert got.call_id == expected.get("variable_zc_call_id")
        assert got.ended_at.tzinfo is UTC
        if got.answered:
            assert got.answered_at is not None and got.answered_at <= got.ended_at
        else:
            assert got.answered_at is None


@pytest.mark.parametrize(
    "name", sorted(n for n, i in index().items() if i.get("background_jobs"))
)
def test_background_job_bodies_match_the_index(name: str) -> None:
    info = index()[name]
    results = [
        e
        for e in (translate(r) for r in raw_events(capture(name)))
        if isinstance(e, OriginateResult)
    ]
    expected = []
    for job in info["background_jobs"]:
        body = job["body"].strip()
        if body.startswith("+OK"):
            expected.append(OriginateResult(job["job_uuid"], True, body[4:], None))
        else:
            expected.append(OriginateResult(job["job_uuid"], False, None, body[5:]))
    assert sorted(results, key=str) == sorted(expected, key=str)


def test_greenswitch_glues_the_job_body_to_content_length_we_do_not() -> None:
    from greenswitch.esl import ESLEvent

    data = capture("dialer-subscription.busy.plain.txt")
    body = next(b for h, b in messages(data) if b.startswith(b"Event-Name: BACKGROUND_JOB"))
    glued = ESLEvent(body.decode())
    assert glued.headers["Content-Length"] == "15\n\n-ERR USER_BUSY"  # the defect
    event = parse_plain_event(body)
    assert event.headers["Content-Length"] == "15"
    assert event.body == "-ERR USER_BUSY\n"
    assert translate(event) == OriginateResult(
        "124e5e11-bda7-454a-a453-ba9c6ff7634d", False, None, "USER_BUSY"
    )


def test_encoded_newline_cannot_forge_a_header() -> None:
    # A carrier-controlled caller name carrying an encoded line break.
    body = (
        b"Event-Name: CHANNEL_ANSWER\n"
        b"Unique-ID: 15d19eed-a509-4b7e-ac16-f91d44d38a0d\n"
        b"Event-Date-Timestamp: 1795709228000000\n"
        b"Caller-Caller-ID-Name: Mallory%0Avariable_zc_call_id%3A%20c-999\n\n"
    )
    from greenswitch.esl import ESLEvent

    forged = ESLEvent(body.decode())
    assert forged.headers.get("variable_zc_call_id") == "c-999"  # the defect
    event = parse_plain_event(body)
    assert "variable_zc_call_id" not in event.headers
    assert event.headers["Caller-Caller-ID-Name"] == "Mallory\nvariable_zc_call_id: c-999"
    assert translate(event) is None  # not our leg: dropped


def test_values_are_decoded_per_line() -> None:
    data = capture("dialer-subscription.gateway-missing.plain.txt")
    job = [e for e in raw_events(data) if e.name == "BACKGROUND_JOB"][0]
    assert job.headers["Event-Date-GMT"] == "Thu, 26 Nov 2026 16:09:41 GMT"
    assert job.headers["Job-Command-Arg"].startswith("{origination_uuid=916caa46")
    assert job.headers["Job-Command-Arg"].endswith("&playback(/srv/zc-test/audio/test.wav)")


def test_dialer_subscription_answered_playback_sequence() -> None:
    events = [translate(e) for e in raw_events(capture("dialer-subscription.answered-playback.plain.txt"))]
    events = [e for e in events if e is not None]
    kinds = [type(e).__name__ for e in events]
    # the carrier leg (no zc_call_id) is dropped
    assert kinds == [
        "ChannelAnswered",
        "OriginateResult",
        "PlaybackStarted",
        "PlaybackStopped",
        "ChannelHangup",
    ]
    uuid = "07bb8e94-ac73-4cbc-8223-d88cb55a8b9c"
    assert all(e.call_id == "c-1006" for e in events if not isinstance(e, OriginateResult))
    assert all(e.uuid == uuid for e in events if not isinstance(e, OriginateResult))
    stop = events[3]
    assert isinstance(stop, PlaybackStopped) and stop.played_ms == 5000
    hangup = events[4]
    assert isinstance(hangup, ChannelHangup)
    assert hangup.answered and hangup.billsec == 5 and hangup.sip_status is None
    assert hangup.answered_at is not None
    assert (hangup.ended_at - hangup.answered_at).total_seconds() == pytest.approx(5, abs=0.2)


def test_remote_hangup_reports_the_part_played() -> None:
    events = [translate(e) for e in raw_events(capture("dialer-subscription.answered-remote-hangup.plain.txt"))]
    stop = next(e for e in events if isinstance(e, PlaybackStopped))
    assert stop.played_ms == 3020  # 24160 samples at 8 kHz, not playback_ms=4096
    hangup = next(e for e in events if isinstance(e, ChannelHangup))
    assert (hangup.cause, hangup.sip_status, hangup.billsec, hangup.answered) == (
        "NORMAL_CLEARING", 200, 3, True,
    )


@pytest.mark.parametrize(
    ("name", "early"),
    [
        ("dialer-subscription.no-answer.plain.txt", False),
        ("dialer-subscription.early-media-no-answer.plain.txt", True),
    ],
)
def test_progress_and_no_answer(name: str, early: bool) -> None:
    events = [e for e in (translate(r) for r in raw_events(capture(name))) if e is not None]
    progress = events[0]
    assert isinstance(progress, ChannelProgress) and progress.early_media is early
    hangup = next(e for e in events if isinstance(e, ChannelHangup))
    assert (hangup.cause, hangup.q850, hangup.answered, hangup.billsec) == ("NO_ANSWER", 19, False, 0)
    job = next(e for e in events if isinstance(e, OriginateResult))
    assert (job.ok, job.cause) == (False, "NO_ANSWER")


def test_gateway_missing_is_only_a_background_job() -> None:
    data = capture("dialer-subscription.gateway-missing.plain.txt")
    events = [e for e in (translate(r) for r in raw_events(data)) if e]
    assert events == [
        OriginateResult("6896c73e-dfb2-417a-aea8-798d27f5981d", False, None, "INVALID_GATEWAY")
    ]


def test_hupall_c2_answered_with_zero_billsec() -> None:
    events = [translate(e) for e in raw_events(capture("hupall.plain.txt"))]
    hangups = {e.call_id: e for e in events if isinstance(e, ChannelHangup)}
    assert set(hangups) == {"c-1", "c-2", "c-3"}
    assert hangups["c-2"].answered and hangups["c-2"].billsec == 0
    assert hangups["c-1"].cause == "MANAGER_REQUEST"
    answers = [e for e in events if isinstance(e, ChannelAnswered)]
    assert len(answers) == 3


def test_json_and_plain_captures_translate_alike() -> None:
    def kinds(name: str) -> list[str]:
        info = index()[name]
        out = []
        for e in raw_events(capture(name)):
            ev = translate(e, require_call_id=False)
            if ev is None or getattr(ev, "uuid", info["a_leg_uuid"]) != info["a_leg_uuid"]:
                continue
            out.append(type(ev).__name__)
        return out

    assert kinds("answered-playback.json-events.txt") == kinds("answered-playback.plain.txt")
    assert kinds("busy.json-events.txt") == kinds("busy.plain.txt")
    playing = [translate(e, require_call_id=False) for e in raw_events(capture("answered-playback.json-events.txt"))]
    started = [e for e in playing if isinstance(e, PlaybackStarted)]
    assert started and all(e.at.tzinfo is UTC for e in started)


def test_event_time_is_utc_from_the_microsecond_timestamp() -> None:
    event = RawEvent(
        {
            "Event-Name": "CHANNEL_ANSWER",
            "Unique-ID": "07bb8e94-ac73-4cbc-8223-d88cb55a8b9c",
            "variable_zc_call_id": "c-1",
            "Event-Date-Timestamp": "1795709228123456",
        }
    )
    answered = translate(event)
    assert answered == ChannelAnswered(
        "07bb8e94-ac73-4cbc-8223-d88cb55a8b9c",
        "c-1",
        datetime(2026, 11, 26, 16, 7, 8, 123456, tzinfo=UTC),
    )


def test_events_without_call_id_are_dropped_by_default() -> None:
    events = raw_events(capture("busy.plain.txt"))  # event plain ALL, no zc_call_id
    translated = [translate(e) for e in events]
    assert [type(e).__name__ for e in translated if e is not None] == ["OriginateResult"]


@pytest.mark.parametrize(
    "data",
    [
        b"Content-Length: 100\nContent-Type: text/event-plain\n\nEvent-Name: CHANNEL_ANS",
        b"Content-Length: 10\nContent-Type: text/ev",
        b"Content-Type: api/response\nContent-Length: abc\n\n",
    ],
)
def test_read_message_rejects_truncated_or_bad_frames(data: bytes) -> None:
    with pytest.raises(EslProtocolError):
        read_message(io.BufferedReader(io.BytesIO(data)))  # type: ignore[arg-type]


def test_read_message_handles_bodies_without_trailing_newline() -> None:
    frames = list(messages(capture("auth-and-api.txt")))
    bodies = [b for h, b in frames if h.get("Content-Type") == "api/response"]
    assert b"false" in bodies
    assert frames[-1][0]["Content-Type"] == "text/disconnect-notice"


@pytest.mark.parametrize("name", sorted(p.name for p in CAPTURES.glob("*.plain.txt")))
def test_picking_the_translated_headers_reads_what_a_full_parse_reads(name: str) -> None:
    """The adapter parses only the headers ``translate`` uses: same values, same domain events."""
    for headers, body in messages(capture(name)):
        if headers.get("Content-Type") != "text/event-plain":
            continue
        full = parse_plain_event(body)
        picked = parse_plain_event(body, TRANSLATED_HEADERS)
        wanted = TRANSLATED_HEADERS | {"Content-Length"}
        assert picked.headers == {k: v for k, v in full.headers.items() if k in wanted}
        assert picked.body == full.body
        assert translate(picked, require_call_id=False) == translate(full, require_call_id=False)


@pytest.mark.parametrize("name", sorted(p.name for p in CAPTURES.glob("*.json-events.txt")))
def test_picking_from_json_events_reads_what_a_full_parse_reads(name: str) -> None:
    for headers, body in messages(capture(name)):
        if headers.get("Content-Type") != "text/event-json":
            continue
        full = parse_json_event(body)
        picked = parse_json_event(body, TRANSLATED_HEADERS)
        assert picked.headers == {k: v for k, v in full.headers.items() if k in TRANSLATED_HEADERS}
        assert translate(picked, require_call_id=False) == translate(full, require_call_id=False)


@pytest.mark.parametrize(("name", "started"), [
    ("dialer-subscription.answered-playback.plain.txt", True),
    ("dialer-subscription.answered-remote-hangup.plain.txt", True),
    ("dialer-subscription.playback-missing.plain.txt", False),
])
def test_the_hangup_says_whether_the_message_started(name: str, started: bool) -> None:
    """Recorded on the real switch: a file it cannot open leaves no playback variables."""
    hangups = [e for e in (translate(r) for r in raw_events(capture(name))) if isinstance(e, ChannelHangup)]
    assert hangups and all(h.answered for h in hangups)
    assert {h.message_started for h in hangups} == {started}
    assert all((h.played_ms or 0) > 0 for h in hangups) is started
