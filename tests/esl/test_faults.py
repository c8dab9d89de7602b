"""Fault handling against small raw ESL servers, and proof of each
greenswitch 0.0.19 defect the adapter guards against."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import gevent.server
import gevent.socket
import pytest
from greenswitch.esl import ESLProtocol, InboundESL

from dialer.esl import (
    DIALER_FILTERS,
    EslAuthError,
    EslClient,
    EslConnection,
    EslDisconnected,
    EslTimeout,
)
from dialer.esl_wire import EslError
from dialer.events import ChannelAnswered, ConnectionLost

from .conftest import Collector

pytestmark = pytest.mark.timeout(30)

AUTH_REQUEST = b"Content-Type: auth/request\n\n"
ACCEPTED = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
SUBSCRIBED = b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n"
NOTICE_BODY = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
UUID = "07bb8e94-ac73-4cbc-8223-d88cb55a8b9c"


def api_response(body: bytes) -> bytes:
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body


def plain_event(body: bytes) -> bytes:
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body


def answer_event(call_id: str = "c-1") -> bytes:
    return plain_event(
        b"Event-Name: CHANNEL_ANSWER\n"
        b"Unique-ID: " + UUID.encode() + b"\n"
        b"Event-Date-Timestamp: 1795709228000000\n"
        b"variable_zc_call_id: " + call_id.encode() + b"\n\n"
    )


def read_command(reader: Any) -> str | None:
    lines: list[str] = []
    while True:
        line = reader.readline()
        if not line:
            return None
        text = line.decode().rstrip("\n")
        if not text:
            if lines:
                return "\n".join(lines)
            continue
        lines.append(text)


def hang_up(sock: Any) -> None:
    try:
        sock.shutdown(gevent.socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class Conn:
    """Server side of one accepted connection."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.commands: list[str] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> str | None:
        command = read_command(self.reader)
        if command is not None:
            self.commands.append(command)
        return command

    def handshake(self) -> str | None:
        """auth/request, +OK accepted; returns the first command after auth."""
        self.send(AUTH_REQUEST)
        if self.read() is None:
            return None
        self.send(ACCEPTED)
        return self.read()

    def close(self) -> None:
        hang_up(self.sock)


Handler = Callable[[Conn], None]


@pytest.fixture
def server() -> Iterator[Callable[[Handler], tuple[str, int]]]:
    servers: list[gevent.server.StreamServer] = []

    def start(handler: Handler) -> tuple[str, int]:
        def handle(sock: Any, _addr: Any) -> None:
            conn = Conn(sock)
            try:
                handler(conn)
            except OSError:
                pass

        srv = gevent.server.StreamServer(("127.0.0.1", 0), handle)
        srv.start()
        servers.append(srv)
        return srv.address[0], srv.address[1]

    yield start
    for srv in servers:
        srv.stop(timeout=1)


def dialer_handler(
    on_events: Handler | None = None, on_command: Callable[[Conn, str], None] | None = None
) -> Handler:
    """A server for EslClient: ``on_events`` drives the subscribed connection,
    ``on_command`` answers each command on the commands connection."""

    subscribed = gevent.event.Event()
    commands_ready = gevent.event.Event()

    def handle(conn: Conn) -> None:
        conn.send(AUTH_REQUEST)
        if conn.read() is None:
            return
        conn.send(ACCEPTED)
        if subscribed.is_set():
            commands_ready.set()
        first = conn.read()
        if first is None:
            return
        if first.startswith("event "):
            conn.send(SUBSCRIBED)
            for _ in DIALER_FILTERS:  # the client's filters follow its subscription
                if conn.read() is None:
                    return
                conn.send(b"Content-Type: command/reply\nReply-Text: +OK filter added.\n\n")
            commands_ready.clear()
            subscribed.set()
            # the client connects its commands connection after subscribing
            commands_ready.wait(timeout=2)
            gevent.sleep(0.05)  # let the client finish connect()
            if on_events is not None:
                on_events(conn)
            while conn.read() is not None:
                pass
            return
        command: str | None = first
        while command is not None:
            if on_command is not None:
                on_command(conn, command)
            command = conn.read()

    return handle


def make_client(address: tuple[str, int], **kwargs: Any) -> tuple[EslClient, Collector]:
    collector = Collector()
    kwargs.setdefault("command_timeout", 5.0)
    kwargs.setdefault("connect_timeout", 2.0)
    client = EslClient(address[0], address[1], "ClueCon", on_event=collector, **kwargs)
    return client, collector


# --------------------------------------------------------------- truncated event body


class _EofStream:
    """A stream at EOF that counts how often it is read."""

    def __init__(self, data: bytes, limit: int = 1000) -> None:
        self.data = data
        self.reads = 0
        self.limit = limit

    def read(self, n: int) -> bytes:
        self.reads += 1
        if self.reads > self.limit:
            raise RuntimeError("still reading after EOF")
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_greenswitch_defect_reads_forever_after_eof_in_a_body() -> None:
    stream = _EofStream(b"Event-Name: CHANNEL_ANS")
    logging.disable(logging.WARNING)  # it logs a warning on every empty read
    try:
        with pytest.raises(RuntimeError, match="still reading after EOF"):
            ESLProtocol._read_socket(stream, 500)
    finally:
        logging.disable(logging.NOTSET)
    assert stream.reads > 1000  # a busy loop that never yields: the process hangs


def test_truncated_event_then_close_reports_connection_lost(server: Any) -> None:
    def events(conn: Conn) -> None:
        conn.send(answer_event())
        full = answer_event()
        conn.send(full[: len(full) - 40])  # cut inside the body
        conn.close()

    client, collector = make_client(server(dialer_handler(on_events=events)))
    client.connect()
    try:
        assert isinstance(collector.next(), ChannelAnswered)
        lost = collector.next(timeout=3)
        assert isinstance(lost, ConnectionLost)
        assert "body bytes" in lost.reason
        assert not client.connected
        assert collector.drain() == []  # reported once
        with pytest.raises(EslDisconnected):
            client.status()
    finally:
        client.close()


def test_truncated_header_block_then_close(server: Any) -> None:
    def events(conn: Conn) -> None:
        conn.send(b"Content-Length: 900\nContent-Ty")
        conn.close()

    client, collector = make_client(server(dialer_handler(on_events=events)))
    client.connect()
    try:
        lost = collector.next(timeout=3)
        assert isinstance(lost, ConnectionLost) and "header" in lost.reason
    finally:
        client.close()


# --------------------------------------------------------------- drop while a command waits


def test_greenswitch_defect_send_never_returns_when_the_socket_drops(server: Any) -> None:
    def handle(conn: Conn) -> None:
        conn.handshake()  # reads "api status", then drops without a reply
        conn.close()

    host, port = server(handle)
    esl = InboundESL(host, port, "ClueCon")
    with gevent.Timeout(3):
        connect = gevent.spawn(esl.connect)
        connect.join(timeout=2)
        assert connect.successful()
    waiter = gevent.spawn(esl.send, "api status")
    waiter.join(timeout=1.0)
    assert not waiter.ready()  # still blocked although the socket is gone
    assert esl.connected is False
    waiter.kill()
    for g in (esl._receive_events_greenlet, esl._process_events_greenlet):
        g.kill()


def test_api_fails_promptly_when_the_socket_drops(server: Any) -> None:
    def on_command(conn: Conn, command: str) -> None:
        if command == "api status":
            conn.close()

    client, collector = make_client(server(dialer_handler(on_command=on_command)), command_timeout=10)
    client.connect()
    try:
        started = time.monotonic()
        with pytest.raises(EslDisconnected):
            client.status()
        assert time.monotonic() - started < 1.0  # not the 10 s timeout
        lost = collector.next(timeout=3)
        assert isinstance(lost, ConnectionLost) and "commands connection lost" in lost.reason
        assert not client.connected
    finally:
        client.close()


def test_every_pending_command_fails_on_disconnect(server: Any) -> None:
    gate = gevent.event.Event()

    def on_command(conn: Conn, command: str) -> None:
        if len(conn.commands) == 6:  # auth + first + 4 more queued
            gate.set()
            conn.close()

    client, _ = make_client(server(dialer_handler(on_command=on_command)), command_timeout=10)
    client.connect()
    try:
        waiters = [gevent.spawn(client.api, f"echo {i}") for i in range(5)]
        gevent.joinall(waiters, timeout=3)
        assert gate.is_set()
        assert all(w.ready() for w in waiters)
        assert all(isinstance(w.exception, EslDisconnected) for w in waiters)
    finally:
        client.close()


def test_events_connection_drop_fails_pending_commands(server: Any) -> None:
    drop = gevent.event.Event()

    def events(conn: Conn) -> None:
        drop.wait()
        conn.close()

    client, collector = make_client(server(dialer_handler(on_events=events)), command_timeout=10)
    client.connect()
    try:
        waiter = gevent.spawn(client.status)  # never answered by the server
        gevent.sleep(0.1)
        drop.set()
        waiter.join(timeout=3)
        assert isinstance(waiter.exception, EslDisconnected)
        assert isinstance(collector.next(timeout=3), ConnectionLost)
    finally:
        client.close()


# --------------------------------------------------------------- silence and timeouts


def test_command_times_out_when_the_server_never_answers(server: Any) -> None:
    client, _ = make_client(server(dialer_handler()), command_timeout=0.3)
    client.connect()
    try:
        started = time.monotonic()
        with pytest.raises(EslTimeout):
            client.exists(UUID)
        assert time.monotonic() - started < 1.5
        with pytest.raises(EslTimeout):
            client.originate(UUID, "c-1", "5551000006", "carrier", "/srv/a.wav", "5550000000", 5)
    finally:
        client.close()


def test_late_reply_does_not_shift_the_pairing(server: Any) -> None:
    def on_command(conn: Conn, command: str) -> None:
        if command == "api slow":
            gevent.sleep(0.5)
        conn.send(api_response(command.encode()))

    client, _ = make_client(server(dialer_handler(on_command=on_command)))
    client.connect()
    try:
        with pytest.raises(EslTimeout):
            client.api("slow", timeout=0.2)
        assert client.api("fast") == "api fast"  # not the late "api slow"
        assert client.connected
    finally:
        client.close()


def test_connect_times_out_without_auth_request(server: Any) -> None:
    def silent(conn: Conn) -> None:
        gevent.sleep(5)

    client, _ = make_client(server(silent), connect_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(EslTimeout):
        client.connect()
    assert time.monotonic() - started < 1.5
    assert not client.connected


def test_connect_refused_raises_disconnected() -> None:
    sock = gevent.socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    client, _ = make_client(("127.0.0.1", port))
    with pytest.raises(EslDisconnected, match="cannot connect"):
        client.connect()


def test_server_closing_before_auth_request(server: Any) -> None:
    client, _ = make_client(server(lambda conn: conn.close()))
    with pytest.raises(EslDisconnected):
        client.connect()


# --------------------------------------------------------------- auth


def test_auth_failure_raises_a_clear_error(server: Any) -> None:
    def handle(conn: Conn) -> None:
        conn.send(AUTH_REQUEST)
        conn.read()
        conn.send(b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n")
        conn.send(
            b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(NOTICE_BODY)
            + NOTICE_BODY
        )
        conn.close()

    client, collector = make_client(server(handle))
    with pytest.raises(EslAuthError, match="refused the password"):
        client.connect()
    assert not client.connected
    assert collector.drain(0.1) == []  # a failed connect is an exception, not an event


def test_password_with_newline_is_refused() -> None:
    with pytest.raises(ValueError):
        EslConnection("127.0.0.1", 1, "ClueCon\n\napi fsctl shutdown")


# --------------------------------------------------------------- reconnect


def test_greenswitch_defect_second_connect_on_one_instance_hangs(server: Any) -> None:
    def handle(conn: Conn) -> None:
        conn.send(AUTH_REQUEST)
        conn.read()
        conn.send(ACCEPTED)
        gevent.sleep(0.05)
        conn.close()  # the connection drops; the client reconnects

    host, port = server(handle)
    esl = InboundESL(host, port, "ClueCon")
    first = gevent.spawn(esl.connect)
    first.join(timeout=2)
    assert first.successful()
    gevent.sleep(0.3)  # the server hangs up; greenswitch's reader stops
    assert esl.connected is False
    second = gevent.spawn(esl.connect)
    second.join(timeout=1.0)
    assert not second.ready()  # hangs
    second.kill()
    for g in (esl._receive_events_greenlet, esl._process_events_greenlet):
        g.kill()


def test_connection_objects_connect_once(server: Any) -> None:
    host, port = server(dialer_handler())
    conn = EslConnection(host, port, "ClueCon")
    conn.connect()
    conn.close()
    with pytest.raises(EslError, match="connects once"):
        conn.connect()


def test_reconnect_after_a_drop_uses_fresh_connections(server: Any) -> None:
    drops = {"n": 0}

    def events(conn: Conn) -> None:
        if drops["n"] == 0:
            drops["n"] += 1
            conn.close()
            return
        conn.send(answer_event("c-2"))

    def on_command(conn: Conn, command: str) -> None:
        conn.send(api_response(b"UP"))

    client, collector = make_client(server(dialer_handler(on_events=events, on_command=on_command)))
    client.connect()
    try:
        assert isinstance(collector.next(timeout=3), ConnectionLost)
        assert not client.connected
        client.connect()
        assert client.connected
        answered = collector.next(timeout=3)
        assert isinstance(answered, ChannelAnswered) and answered.call_id == "c-2"
        assert client.status() == "UP"
        assert collector.drain() == []  # no stale ConnectionLost from the old pair
    finally:
        client.close()
    assert not client.connected


def test_close_does_not_report_connection_lost(server: Any) -> None:
    client, collector = make_client(server(dialer_handler()))
    client.connect()
    client.close()
    assert collector.drain(0.3) == []
    with pytest.raises(EslDisconnected):
        client.status()


# --------------------------------------------------------------- dispatch and pairing


def test_handler_exceptions_are_logged_and_do_not_stop_delivery(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def events(conn: Conn) -> None:
        conn.send(answer_event("boom"))
        conn.send(answer_event("ok"))

    seen: list[Any] = []
    done = gevent.event.Event()

    def on_event(event: Any) -> None:
        if getattr(event, "call_id", None) == "boom":
            raise RuntimeError("handler bug")
        seen.append(event)
        done.set()

    host, port = server(dialer_handler(on_events=events))
    client = EslClient(host, port, "ClueCon", on_event=on_event)
    client.connect()
    try:
        assert done.wait(timeout=3)
        assert [e.call_id for e in seen] == ["ok"]
        assert "handler bug" in caplog.text
    finally:
        client.close()


def test_concurrent_commands_get_their_own_replies(server: Any) -> None:
    def on_command(conn: Conn, command: str) -> None:
        gevent.sleep(0.001)
        conn.send(api_response(command.encode()))

    client, _ = make_client(server(dialer_handler(on_command=on_command)))
    client.connect()
    try:
        jobs = [gevent.spawn(client.api, f"echo {i}") for i in range(200)]
        gevent.joinall(jobs, timeout=10, raise_error=True)
        assert [j.value for j in jobs] == [f"api echo {i}" for i in range(200)]
    finally:
        client.close()


def test_originate_sends_bgapi_with_our_job_uuid(server: Any) -> None:
    def on_command(conn: Conn, command: str) -> None:
        job = command.split("Job-UUID: ")[-1]
        conn.send(
            b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: %s\nJob-UUID: %s\n\n"
            % (job.encode(), job.encode())
        )

    received: list[Conn] = []

    def handler(conn: Conn) -> None:
        received.append(conn)
        dialer_handler(on_command=on_command)(conn)

    client, _ = make_client(server(handler))
    client.connect()
    try:
        client.originate(
            UUID.upper(), "c-1006", "5551000006", "carrier",
            "/srv/zc-test/audio/test.wav", "5550000000", 5,
        )
        commands = [c for conn in received for c in conn.commands]
        assert commands[-1] == (
            f"bgapi originate {{origination_uuid={UUID},zc_call_id=c-1006,"
            "origination_caller_id_number=5550000000,originate_timeout=5,"
            "ignore_early_media=true}sofia/gateway/carrier/5551000006 "
            f"&playback(/srv/zc-test/audio/test.wav)\nJob-UUID: {UUID}"
        )
        subscribe = [c for c in commands if c.startswith(("event ", "filter "))]
        assert subscribe == [
            "event plain BACKGROUND_JOB CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_ANSWER "
            "CHANNEL_HANGUP_COMPLETE",
            "filter variable_zc_call_id /./",  # only our legs' events and our jobs' results
            "filter Event-Name BACKGROUND_JOB",
        ]
    finally:
        client.close()


GOOD = dict(
    attempt_uuid=UUID,
    call_id="c-1",
    number_digits="923001234567",
    gateway_or_dial_template="carrier",
    audio_path="/var/lib/zenscall/audio/42.wav",
    caller_id_digits="5550000000",
    timeout_s=30,
)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempt_uuid", "not-a-uuid"),
        ("attempt_uuid", UUID + "\n"),
        ("call_id", "c-1,origination_caller_id_name=Evil"),
        ("call_id", "c}1"),
        ("call_id", ""),
        ("number_digits", "+923001234567"),
        ("number_digits", "5551000006 &bridge(sofia/gateway/x/1)"),
        ("number_digits", "5551000006\n"),
        ("number_digits", "12"),
        ("gateway_or_dial_template", "carrier/../x"),
        ("gateway_or_dial_template", "{absolute_codec_string=PCMA}sofia/gateway/x/{number}"),
        ("gateway_or_dial_template", "sofia/gateway/x/{number} &park()"),
        ("audio_path", "relative.wav"),
        ("audio_path", "/srv/a b.wav"),
        ("audio_path", "/srv/../etc/passwd"),
        ("audio_path", "/srv/a.wav)&hangup("),
        ("caller_id_digits", "Dialer"),
        ("timeout_s", 0),
        ("timeout_s", True),
        ("timeout_s", "5"),
        ("limit_s", 0),
        ("limit_s", -4),
        ("limit_s", 86_401),
        ("limit_s", True),
        ("limit_s", "30"),
        ("limit_s", 30.0),
        ("limit_s", "30 NORMAL_CLEARING'}&park("),
    ],
)
def test_originate_refuses_anything_not_digits_or_uuid_shaped(field: str, value: Any) -> None:
    client, _ = make_client(("127.0.0.1", 9))  # never connected: validation comes first
    with pytest.raises((ValueError, TypeError)):
        client.originate(**{**GOOD, field: value})


def test_limit_adds_a_hangup_the_switch_schedules_at_answer() -> None:
    from dialer.esl import build_originate

    args = build_originate(**GOOD, limit_s=42)
    assert args == (
        f"{{origination_uuid={UUID},zc_call_id=c-1,origination_caller_id_number=5550000000,"
        "originate_timeout=30,ignore_early_media=true,"
        "execute_on_answer='sched_hangup +42 ALLOTTED_TIMEOUT'}sofia/gateway/carrier/923001234567 "
        "&playback(/var/lib/zenscall/audio/42.wav)"
    )
    assert build_originate(**GOOD, limit_s=None) == build_originate(**GOOD)
    assert "execute_on_answer" not in build_originate(**GOOD)


def test_dial_template_is_filled_with_the_digits(server: Any) -> None:
    from dialer.esl import build_originate

    args = build_originate(
        **{**GOOD, "gateway_or_dial_template": "sofia/external/{number}@10.0.0.1:5060"}
    )
    assert args.endswith("}sofia/external/923001234567@10.0.0.1:5060 &playback(/var/lib/zenscall/audio/42.wav)")


def test_api_refuses_line_breaks() -> None:
    client, _ = make_client(("127.0.0.1", 9))
    with pytest.raises(ValueError):
        client.api("status\n\napi fsctl shutdown")
    with pytest.raises(ValueError):
        client.kill(UUID, "NORMAL_CLEARING\n")
