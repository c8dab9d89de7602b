"""EslClient / EslConnection against real captures served over a socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dialer.esl import EslAuthError, EslClient, EslCommandError, EslConnection
from dialer.events import (
    ChannelAnswered,
    ChannelHangup,
    ChannelProgress,
    ConnectionLost,
    OriginateResult,
    PlaybackStarted,
    PlaybackStopped,
)
from simulator.replay import ReplayServer

from .conftest import Collector, capture, index, sent_commands

# the dialer's subscription when the transcripts were recorded (plain events, playback events too,
# no filters): the replay answers the commands the capture's client sent, in that order
RECORDED: dict[str, object] = {
    "event_format": "plain", "filters": (),
    "events": ("BACKGROUND_JOB", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER",
               "CHANNEL_HANGUP_COMPLETE", "PLAYBACK_START", "PLAYBACK_STOP"),
}

pytestmark = pytest.mark.timeout(30)

AUDIO = "/srv/zc-test/audio/test.wav"


def _originate_args(sent: str) -> tuple[str, str, str, str]:
    """(uuid, call id, gateway, number) from a recorded ``bgapi originate``."""
    variables = dict(
        kv.split("=", 1) for kv in sent[sent.index("{") + 1 : sent.index("}")].split(",")
    )
    target = sent[sent.index("}") + 1 :].split(" ", 1)[0]
    _, _, gateway, number = target.split("/")
    return variables["origination_uuid"], variables["zc_call_id"], gateway, number


@pytest.fixture
def replay_client(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[EslClient, Collector, ReplayServer, str]]:
    name = request.param
    server = ReplayServer(capture(name), mode="split").start()
    collector = Collector()
    host, port = server.address
    client = EslClient(host, port, "ClueCon", on_event=collector, command_timeout=3, **RECORDED)
    client.connect()
    try:
        yield client, collector, server, name
    finally:
        client.close()
        server.stop()


SCENARIOS = {
    "dialer-subscription.answered-playback.plain.txt": [
        ChannelAnswered, OriginateResult, PlaybackStarted, PlaybackStopped, ChannelHangup,
    ],
    "dialer-subscription.answered-remote-hangup.plain.txt": [
        ChannelAnswered, OriginateResult, PlaybackStarted, PlaybackStopped, ChannelHangup,
    ],
    "dialer-subscription.busy.plain.txt": [ChannelHangup, OriginateResult],
    "dialer-subscription.no-answer.plain.txt": [ChannelProgress, OriginateResult, ChannelHangup],
    "dialer-subscription.early-media-no-answer.plain.txt": [
        ChannelProgress, OriginateResult, ChannelHangup,
    ],
    "dialer-subscription.unallocated-404.plain.txt": [ChannelHangup, OriginateResult],
    "dialer-subscription.gateway-missing.plain.txt": [OriginateResult],
}


@pytest.mark.parametrize("replay_client", sorted(SCENARIOS), indirect=True)
def test_dialer_subscription_scenarios(
    replay_client: tuple[EslClient, Collector, ReplayServer, str],
) -> None:
    client, collector, server, name = replay_client
    info = index()[name]
    recorded = sent_commands(name)
    uuid, call_id, gateway, number = _originate_args(recorded[-1])
    client.originate(uuid, call_id, number, gateway, AUDIO, "5550000000", 5)

    events = [collector.next() for _ in SCENARIOS[name]]
    assert [type(e) for e in events] == SCENARIOS[name]
    assert collector.drain() == []  # the carrier leg was dropped

    # the commands connection sent exactly the recorded originate, plus our Job-UUID
    by_role = {c[1].split(" ")[0]: c for c in server.commands if len(c) > 1}
    assert by_role["event"][1] == recorded[1]
    sent = by_role["bgapi"][1]
    assert sent == f"{recorded[-1]}\nJob-UUID: {uuid}"

    job = next(e for e in events if isinstance(e, OriginateResult))
    body = info["background_jobs"][0]["body"].strip()
    assert job.ok is body.startswith("+OK")
    for e in events:
        if not isinstance(e, OriginateResult):
            assert (e.uuid, e.call_id) == (uuid, call_id)
    if "hangup_complete_a_legs" in info:
        expected = info["hangup_complete_a_legs"][uuid]
        hangup = next(e for e in events if isinstance(e, ChannelHangup))
        assert hangup.cause == expected["Hangup-Cause"]
        assert hangup.billsec == int(expected["variable_billsec"])
        assert hangup.answered is (expected.get("variable_endpoint_disposition") == "ANSWER")


@pytest.mark.parametrize("replay_client", ["hupall.plain.txt"], indirect=True)
def test_hupall_capture(
    replay_client: tuple[EslClient, Collector, ReplayServer, str],
) -> None:
    client, collector, _, _ = replay_client
    recorded = sent_commands("hupall.plain.txt")
    for line in recorded[2:5]:
        uuid, call_id, gateway, number = _originate_args(line)
        client.originate(uuid, call_id, number, gateway, AUDIO, "5550000000", 5)
    assert client.api("hupall NORMAL_CLEARING zc_call_id c-2").startswith("+OK hangup all")
    live = client.channels()
    assert len(live) == 4 and {"uuid", "direction", "callstate"} <= set(live[0])
    assert client.api("hupall MANAGER_REQUEST").startswith("+OK")
    assert client.channels() == []
    hangups = []
    while len(hangups) < 3:
        event = collector.next()
        if isinstance(event, ChannelHangup):
            hangups.append(event)
    assert sorted(h.call_id or "" for h in hangups) == ["c-1", "c-2", "c-3"]
    assert all(h.answered for h in hangups)


@pytest.mark.parametrize("replay_client", ["uuid_kill.plain.txt"], indirect=True)
def test_uuid_kill_capture(
    replay_client: tuple[EslClient, Collector, ReplayServer, str],
) -> None:
    client, _, _, _ = replay_client
    uuid = index()["uuid_kill.plain.txt"]["a_leg_uuid"]
    client.originate(uuid, "c-1", "5551000000", "carrier", AUDIO, "5550000000", 5)
    assert client.exists(uuid) is True
    assert client.kill(uuid) is True
    assert client.exists(uuid) is False
    assert client.kill(uuid) is False  # -ERR No such channel!


def test_auth_and_api_replies_on_one_connection() -> None:
    with ReplayServer(capture("auth-and-api.txt")) as server:
        conn = EslConnection(*server.address, "ClueCon", command_timeout=3)
        conn.connect()
        try:
            assert conn.send("api version").text.startswith("FreeSWITCH Version 1.11.1")
            assert conn.send("api status").text.startswith("UP 0 years")
            assert conn.send("api show channels as json").text == '{"row_count": 0}\n'
            assert conn.send("api uuid_exists x").text == "false"
            assert conn.send("api uuid_kill x").text == "-ERR No such channel!\n"
            assert conn.send("api originate x").text == "-ERR INVALID_GATEWAY\n"
            assert conn.send("api originate y").text == "-ERR INVALID_PROFILE\n"
            assert not conn.send("api no_such_command").ok
            assert conn.send("nonsense_command").reply_text == "-ERR command not found"
            reply = conn.send("bgapi status")
            assert reply.headers["Job-UUID"] == "d1de492a-b50f-4af9-a353-f8145c63a67b"
        finally:
            conn.close()


def test_wrong_password_raises_auth_error() -> None:
    with ReplayServer(capture("auth-failure.txt")) as server:
        conn = EslConnection(*server.address, "WrongPassword", connect_timeout=3)
        with pytest.raises(EslAuthError):
            conn.connect()
        assert not conn.connected


def test_shutdown_capture_reports_connection_lost() -> None:
    with ReplayServer(capture("shutdown.plain.txt"), mode="split") as server:
        collector = Collector()
        client = EslClient(*server.address, "ClueCon", on_event=collector, command_timeout=3, **RECORDED)
        client.connect()
        try:
            assert client.api("fsctl shutdown") == "+OK\n"
            lost = collector.until(lambda e: isinstance(e, ConnectionLost))
            assert "shut down" in lost.reason
            assert not client.connected
        finally:
            client.close()


def test_show_channels_capture() -> None:
    with ReplayServer(capture("show-channels.json.txt")) as server:
        conn = EslConnection(*server.address, "ClueCon", command_timeout=3)
        conn.connect()
        try:
            body = conn.send("api show channels as json").text
            assert '"row_count":2' in body
            assert conn.send("api uuid_exists d6e9bfda-d7ba-485b-9b86-1aabf4facdc5").text == "true"
        finally:
            conn.close()


def test_connect_fails_when_the_subscription_is_refused() -> None:
    # auth-and-api.txt answers the second command with an api/response, not +OK
    with ReplayServer(capture("auth-and-api.txt"), mode="split") as server:
        collector = Collector()
        client = EslClient(*server.address, "ClueCon", on_event=collector, command_timeout=1, **RECORDED)
        with pytest.raises(EslCommandError):
            client.connect()  # "event plain" answered by an api/response: refused
