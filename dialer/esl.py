"""FreeSWITCH Event Socket (ESL) adapter: the only module that imports greenswitch.

The dialer talks to FreeSWITCH over two inbound ESL connections:

* the **events** connection subscribes (``event plain ...``) to the few events
  the dialer needs and never carries commands: FreeSWITCH reads commands on a
  socket byte by byte and only writes queued events when no command is
  pending, so at a few hundred commands per second a mixed connection stops
  delivering events;
* the **commands** connection sends ``api`` / ``bgapi`` and is not subscribed
  to anything, so its replies never interleave with events.

BACKGROUND_JOB events are fired into the switch's event core
(``switch_event_fire`` in ``mod_event_socket.c:api_exec``) and delivered to
every listener subscribed to BACKGROUND_JOB, whichever connection sent the
``bgapi``; the events connection therefore receives the results of the
originates sent on the commands connection.  The design does not depend on
them anyway: we originate with ``origination_uuid=<attempt uuid>`` and
CHANNEL_HANGUP_COMPLETE carries the outcome; BACKGROUND_JOB only matters for
failures without any channel (``-ERR INVALID_GATEWAY``), and we send our own
``Job-UUID: <attempt uuid>`` so that result maps to the attempt.

Bytes are framed and parsed by :mod:`dialer.esl_wire` (shared with the simulator and
the replay server). Raw ESL header blocks stay inside this module: the rest of the dialer receives
the frozen domain events of :mod:`dialer.events` through ``on_event``.

``EslConnection`` subclasses greenswitch's ``InboundESL`` and replaces the
parts of greenswitch 0.0.19 that are unsafe for a long-running dialer:

* its reader loops forever when the socket closes inside an event body
  (``_read_socket`` keeps reading ``b""``); ours treats EOF anywhere inside a
  message as the end of the connection;
* it un-percent-encodes a whole event before splitting it into lines, so an
  encoded ``%0A`` inside a value (a caller name, a SIP header) forges extra
  headers; ours splits first and decodes each value;
* it leaves the BACKGROUND_JOB body glued to the inner ``Content-Length``
  value; ours reads the inner body by its length;
* ``send()`` has no timeout and never returns when the connection drops while
  it waits; ours fails every pending command at once on disconnect and bounds
  every command with ``gevent.Timeout``; writes are serialised so replies pair
  with commands in order;
* ``connect()`` waits for ``auth/request`` without a timeout and a second
  ``connect()`` on the same instance hangs; ours is bounded, and an instance
  connects once (``EslClient`` makes a fresh one per (re)connect);
* handlers run in one greenlet and their exceptions are swallowed; ours only
  parse, translate and call ``on_event`` (a non-blocking queue put in the
  dialer), and log any exception with its traceback.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import gevent.socket
from greenswitch.esl import InboundESL  # type: ignore[import-untyped]

from dialer.esl_wire import (
    EslError,
    EslProtocolError,
    RawEvent,
    Reply,
    parse_json_event,
    parse_plain_event,
    read_message,
)
from dialer.events import (
    ChannelAnswered,
    ChannelHangup,
    ChannelProgress,
    ConnectionLost,
    DomainEvent,
    OriginateResult,
    PlaybackStarted,
    PlaybackStopped,
)

__all__ = [
    "DIALER_EVENTS",
    "EslAuthError",
    "EslClient",
    "EslCommandError",
    "EslConnection",
    "EslDisconnected",
    "EslError",
    "EslTimeout",
    "build_originate",
    "translate",
]

log = logging.getLogger(__name__)

#: The events the dialer subscribes to on its events connection. Whether the message started
#: (and how much of it was sent) is read from the hangup event's own variables, so the playback
#: events are not needed: every event the switch sends costs its CPU and ours.
DIALER_EVENTS: tuple[str, ...] = (
    "BACKGROUND_JOB",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_ANSWER",
    "CHANNEL_HANGUP_COMPLETE",
)
#: Filters sent after the subscription (mod_event_socket: an event goes out when ONE filter matches;
#: a /regex/ value is searched): only legs carrying our call id, and the results of our jobs. The
#: switch then never serialises the events of other legs for us (on a switch that also plays the
#: carrier, half of all channel events).
DIALER_FILTERS: tuple[tuple[str, str], ...] = (("variable_zc_call_id", "/./"), ("Event-Name", "BACKGROUND_JOB"))

#: Stored audio is always 8 kHz mono (converted at upload), so a playback
#: offset in samples converts to milliseconds with this rate.
AUDIO_SAMPLE_RATE = 8000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- errors


class EslDisconnected(EslError):
    """The connection is down (or went down while the command waited)."""


class EslTimeout(EslError):
    """FreeSWITCH did not answer within the command or connect timeout."""


class EslAuthError(EslError):
    """FreeSWITCH refused the password."""


class EslCommandError(EslError):
    """FreeSWITCH answered a command with an error (``-ERR ...``)."""



# --------------------------------------------------------------------------- translation


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _from_usec(value: str | None) -> datetime | None:
    usec = _int(value)
    if usec is None or usec <= 0:
        return None
    return _EPOCH + timedelta(microseconds=usec)


def _from_sec(value: str | None) -> datetime | None:
    sec = _int(value)
    if sec is None or sec <= 0:
        return None
    return _EPOCH + timedelta(seconds=sec)


def _event_time(h: dict[str, str]) -> datetime:
    at = _from_usec(h.get("Event-Date-Timestamp"))
    return at if at is not None else datetime.now(UTC)


def _played_ms(h: dict[str, str]) -> int | None:
    # playback_ms counts whole read buffers and over-reports a cut-short file
    # (4096 ms for 24160 samples); the file offset is exact.
    offset = _int(h.get("variable_playback_last_offset_pos"))
    if offset is not None and offset >= 0:
        return offset * 1000 // AUDIO_SAMPLE_RATE
    return _int(h.get("variable_playback_ms"))


def _job_result(h: dict[str, str], body: str | None) -> OriginateResult | None:
    job_uuid = h.get("Job-UUID")
    if not job_uuid:
        return None
    text = (body or "").strip()
    if text.startswith("+OK"):
        rest = text[3:].strip()
        channel = rest if _UUID_RE.fullmatch(rest) else None
        return OriginateResult(job_uuid=job_uuid, ok=True, channel_uuid=channel, cause=None)
    cause = text[4:].strip() if text.startswith("-ERR") else text
    return OriginateResult(job_uuid=job_uuid, ok=False, channel_uuid=None, cause=cause or None)


def translate(event: RawEvent, *, require_call_id: bool = True) -> DomainEvent | None:
    """Translate one ESL event into a domain event, or None to drop it.

    Channel events without ``variable_zc_call_id`` (legs we did not originate,
    e.g. the carrier leg on a switch that also plays the carrier) are dropped
    unless ``require_call_id`` is False.
    """
    h = event.headers
    name = event.name
    if name == "BACKGROUND_JOB":
        return _job_result(h, event.body)
    if name not in _CHANNEL_EVENTS:
        return None
    uuid = h.get("Unique-ID")
    if not uuid:
        return None
    call_id = h.get("variable_zc_call_id") or None
    if call_id is None and require_call_id:
        return None
    at = _event_time(h)
    if name in ("CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA"):
        return ChannelProgress(uuid, call_id, at, early_media=name == "CHANNEL_PROGRESS_MEDIA")
    if name == "CHANNEL_ANSWER":
        return ChannelAnswered(uuid, call_id, at)
    if name == "PLAYBACK_START":
        return PlaybackStarted(uuid, call_id, at)
    if name == "PLAYBACK_STOP":
        return PlaybackStopped(uuid, call_id, at, played_ms=_played_ms(h))
    # CHANNEL_HANGUP_COMPLETE
    answered_at = _from_usec(h.get("variable_answer_uepoch")) or _from_sec(
        h.get("variable_answer_epoch")
    )
    answered = h.get("variable_endpoint_disposition") == "ANSWER" or answered_at is not None
    ended_at = (
        _from_usec(h.get("variable_end_uepoch"))
        or _from_sec(h.get("variable_end_epoch"))
        or at
    )
    started_at = _from_usec(h.get("variable_start_uepoch")) or _from_sec(
        h.get("variable_start_epoch")
    )
    cause = h.get("Hangup-Cause") or h.get("variable_hangup_cause") or "UNKNOWN"
    started = None
    if answered:
        started = "variable_playback_samples" in h or "variable_playback_last_offset_pos" in h
    return ChannelHangup(
        uuid=uuid,
        call_id=call_id,
        at=at,
        cause=cause,
        q850=_int(h.get("variable_hangup_cause_q850")),
        sip_status=_int(h.get("variable_sip_term_status")),
        answered=answered,
        answered_at=answered_at,
        ended_at=ended_at,
        billsec=_int(h.get("variable_billsec")) or 0,
        duration=_int(h.get("variable_duration")) or 0,
        started_at=started_at,
        message_started=started,
        played_ms=_played_ms(h) if started else None,
    )


#: Every header ``translate`` reads: the adapter's reader picks only these out of an event.
TRANSLATED_HEADERS = frozenset({
    "Event-Name", "Unique-ID", "Job-UUID", "Event-Date-Timestamp", "Hangup-Cause", "variable_zc_call_id",
    "variable_playback_last_offset_pos", "variable_playback_ms", "variable_playback_samples",
    "variable_answer_uepoch", "variable_answer_epoch",
    "variable_endpoint_disposition", "variable_end_uepoch", "variable_end_epoch", "variable_start_uepoch",
    "variable_start_epoch", "variable_hangup_cause", "variable_hangup_cause_q850", "variable_sip_term_status",
    "variable_billsec", "variable_duration",
})

_CHANNEL_EVENTS = frozenset(
    {
        "CHANNEL_PROGRESS",
        "CHANNEL_PROGRESS_MEDIA",
        "CHANNEL_ANSWER",
        "PLAYBACK_START",
        "PLAYBACK_STOP",
        "CHANNEL_HANGUP_COMPLETE",
    }
)


# --------------------------------------------------------------------------- originate


_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CALL_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_NUMBER_RE = re.compile(r"[0-9]{3,20}")
_CALLER_ID_RE = re.compile(r"[0-9]{1,20}")
_GATEWAY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TEMPLATE_PART_RE = re.compile(r"[A-Za-z0-9_./:@-]*")
_AUDIO_RE = re.compile(r"/[A-Za-z0-9_./-]{1,1023}")
_CAUSE_RE = re.compile(r"[A-Z][A-Z0-9_]{1,47}")
_EVENT_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]{1,63}")
_FILTER_VALUE_RE = re.compile(r"[A-Za-z0-9_./-]{1,64}")


def _check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ValueError(f"refusing {what} {value!r}")
    return value


def _check_uuid(value: object) -> str:
    return _check(_UUID_RE, value, "uuid").lower()


def _dial_target(gateway_or_dial_template: str, number: str) -> str:
    """``carrier`` -> ``sofia/gateway/carrier/<number>``; a template with one
    ``{number}`` placeholder (``sofia/external/{number}@10.0.0.1``) is filled in."""
    if not isinstance(gateway_or_dial_template, str):
        raise TypeError(f"refusing gateway {gateway_or_dial_template!r}")
    if "{number}" in gateway_or_dial_template:
        before, _sep, after = gateway_or_dial_template.partition("{number}")
        if (
            "/" not in before
            or _TEMPLATE_PART_RE.fullmatch(before) is None
            or _TEMPLATE_PART_RE.fullmatch(after) is None
        ):
            raise ValueError(f"refusing dial template {gateway_or_dial_template!r}")
        return before + number + after
    gateway = _check(_GATEWAY_RE, gateway_or_dial_template, "gateway")
    return f"sofia/gateway/{gateway}/{number}"


def build_originate(
    attempt_uuid: str,
    call_id: str,
    number_digits: str,
    gateway_or_dial_template: str,
    audio_path: str,
    caller_id_digits: str,
    timeout_s: int,
    *,
    limit_s: int | None = None,
) -> str:
    """The ``originate`` argument string.  Every piece is checked against a
    strict pattern (digits, uuid, ``[A-Za-z0-9-]`` ids, plain absolute paths),
    so nothing can close the ``{...}`` variable block, add a variable or
    chain another application; anything else raises ValueError."""
    uuid = _check_uuid(attempt_uuid)
    cid = _check(_CALL_ID_RE, call_id, "call id")
    number = _check(_NUMBER_RE, number_digits, "number")
    caller = _check(_CALLER_ID_RE, caller_id_digits, "caller id")
    path = _check(_AUDIO_RE, audio_path, "audio path")
    if "/../" in path + "/" or "/./" in path + "/" or "//" in path or path.endswith("/"):
        raise ValueError(f"refusing audio path {audio_path!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or not 1 <= timeout_s <= 600:
        raise ValueError(f"refusing originate timeout {timeout_s!r}")
    if limit_s is not None and (isinstance(limit_s, bool) or not isinstance(limit_s, int)
                                or not 1 <= limit_s <= 86_400):
        raise ValueError(f"refusing call length limit {limit_s!r}")
    target = _dial_target(gateway_or_dial_template, number)
    variables = (
        f"origination_uuid={uuid},zc_call_id={cid},"
        f"origination_caller_id_number={caller},"
        f"originate_timeout={timeout_s},ignore_early_media=true"
    )
    if limit_s is not None:
        # the switch itself ends the call this long after the answer, whatever the far end does
        variables += f",execute_on_answer='sched_hangup +{limit_s} ALLOTTED_TIMEOUT'"
    return "{" + variables + "}" + f"{target} &playback({path})"


# --------------------------------------------------------------------------- one connection


_CLOSED = object()


class EslConnection(InboundESL):  # type: ignore[misc]
    """One inbound ESL connection (greenswitch ``InboundESL`` made safe).

    An instance connects once; reconnecting means a new instance.
    ``on_event`` receives :class:`RawEvent` in the dispatch greenlet;
    ``on_closed(reason)`` is called once, after every queued event was
    dispatched, when the connection ends without :meth:`close`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        name: str = "esl",
        connect_timeout: float = 5.0,
        command_timeout: float = 5.0,
        on_event: Callable[[RawEvent], None] | None = None,
        on_closed: Callable[[str], None] | None = None,
        wanted_headers: frozenset[str] | None = None,
    ) -> None:
        if not isinstance(password, str) or any(c in password for c in "\r\n"):
            raise ValueError("password must be one line")
        super().__init__(host, port, password, timeout=connect_timeout)
        self.name = name
        self.command_timeout = command_timeout
        self.sock: Any = None
        self.sock_file: Any = None
        self._on_raw_event = on_event
        self._on_closed = on_closed
        self._wanted = wanted_headers  # None: every header of an event is parsed
        self._send_lock = gevent.lock.Semaphore()
        self._used = False
        self._shut = False
        self._closing = False
        self.close_reason: str | None = None

    # -- connect / close --------------------------------------------------------

    def connect(self) -> None:
        if self._used:
            raise EslError(f"{self.name}: an EslConnection connects once; create a new one")
        self._used = True
        where = f"{self.host}:{self.port}"
        try:
            with gevent.Timeout(
                self.timeout,
                EslTimeout(f"{self.name}: no auth/request from {where} within {self.timeout}s"),
            ):
                try:
                    self.sock = gevent.socket.create_connection((self.host, self.port))
                except OSError as exc:
                    raise EslDisconnected(f"{self.name}: cannot connect to {where}: {exc}") from exc
                self.sock.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
                self.sock_file = self.sock.makefile("rb")
                self.connected = True
                self.start_event_handlers()
                self._auth_request_event.wait()
            if not self.connected:
                raise EslDisconnected(
                    f"{self.name}: {where} closed the connection before auth ({self.close_reason})"
                )
            try:
                reply = self.send(f"auth {self.password}", timeout=self.timeout)
            except EslDisconnected as exc:
                raise EslAuthError(f"{self.name}: connection closed during auth: {exc}") from exc
            if reply.reply_text != "+OK accepted":
                raise EslAuthError(
                    f"{self.name}: FreeSWITCH at {where} refused the password ({reply.reply_text})"
                )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection; pending commands fail with EslDisconnected.
        ``on_closed`` is not called for a close we asked for."""
        self._closing = True
        if self.sock is not None and self.connected:
            with gevent.Timeout(0.5, False):
                try:
                    self.sock.sendall(b"exit\n\n")
                except OSError:
                    pass
        self._shutdown("closed by the client")
        current = gevent.getcurrent()
        greenlets = [
            g
            for g in (self._receive_events_greenlet, self._process_events_greenlet)
            if g is not None and g is not current
        ]
        gevent.killall(greenlets, block=True, timeout=2)
        if self._receive_events_greenlet is None or self._receive_events_greenlet.dead:
            self._close_file()

    def stop(self) -> None:  # greenswitch's name, used by its context manager
        self.close()

    def abort(self, reason: str) -> None:
        """End the connection as if it had dropped (``on_closed`` runs)."""
        self._shutdown(reason)

    def _shutdown(self, reason: str) -> None:
        if self._shut:
            return
        self._shut = True
        self.connected = False
        self.close_reason = reason
        pending, self._commands_sent[:] = list(self._commands_sent), []
        for result in pending:
            if not result.ready():
                result.set_exception(EslDisconnected(f"{self.name}: {reason}"))
        self._auth_request_event.set()
        if self.sock is not None:
            # shutdown() wakes a reader blocked in recv (close() alone is
            # deferred while the reader's file object holds the socket)
            for step in (lambda: self.sock.shutdown(gevent.socket.SHUT_RDWR), self.sock.close):
                try:
                    step()
                except OSError:
                    pass
        self._esl_event_queue.put(_CLOSED)

    def _close_file(self) -> None:
        if self.sock_file is not None:
            try:
                self.sock_file.close()
            except (OSError, RuntimeError):
                pass

    # -- reading ----------------------------------------------------------------

    def receive_events(self) -> None:
        reason = "connection closed by FreeSWITCH"
        try:
            while not self._shut:
                message = read_message(self.sock_file)
                if message is None:
                    break
                headers, body = message
                ctype = headers.get("Content-Type", "")
                if ctype == "auth/request":
                    self._auth_request_event.set()
                elif ctype in ("command/reply", "api/response"):
                    self._deliver_reply(Reply(headers, body))
                elif ctype in ("text/event-plain", "text/event-json"):
                    if self._on_raw_event is not None and not self._shut:
                        self._esl_event_queue.put((ctype, body))
                elif ctype == "text/disconnect-notice":
                    reason = "disconnect notice: {}".format(body.decode("utf-8", "replace").strip())
                elif ctype in ("text/rude-rejection", "rude/rejection"):
                    reason = "rejected: {}".format(body.decode("utf-8", "replace").strip())
                else:
                    log.debug("%s: ignoring %s message", self.name, ctype or "untyped")
        except EslProtocolError as exc:
            reason = str(exc)
        except OSError as exc:
            reason = f"socket error: {exc}"
        except Exception as exc:  # never let the reader die without shutting down
            log.exception("%s: ESL reader failed", self.name)
            reason = f"reader failed: {exc!r}"
        finally:
            self._shutdown(reason)
            self._close_file()

    def _deliver_reply(self, reply: Reply) -> None:
        if not self._commands_sent:
            log.warning("%s: %s without a pending command", self.name, reply.content_type)
            return
        result = self._commands_sent.pop(0)
        if not result.ready():  # a command that timed out keeps its slot
            result.set(reply)

    def process_events(self) -> None:
        while True:
            item = self._esl_event_queue.get()
            if item is _CLOSED:
                break
            ctype, body = item
            try:
                raw = (parse_plain_event(body, self._wanted) if ctype == "text/event-plain"
                       else parse_json_event(body, self._wanted))
            except Exception:
                log.exception("%s: unparsable %s event dropped", self.name, ctype)
                continue
            try:
                if self._on_raw_event is not None:
                    self._on_raw_event(raw)
            except Exception:
                log.exception("%s: event handler failed on %s", self.name, raw.name)
        if not self._closing and self._on_closed is not None:
            try:
                self._on_closed(self.close_reason or "connection closed")
            except Exception:
                log.exception("%s: on_closed failed", self.name)

    # -- commands ---------------------------------------------------------------

    def send(self, data: str, timeout: float | None = None) -> Reply:
        """Send one command (``data`` without the final blank line) and wait
        for its reply.  Raises EslTimeout / EslDisconnected instead of hanging."""
        if not isinstance(data, str) or "\r" in data or "\n\n" in data or data.strip("\n") != data:
            raise ValueError("malformed ESL command")
        seconds = self.command_timeout if timeout is None else timeout
        words = data.split("\n", 1)[0].split(" ", 2)
        verb = " ".join(words[:2]) if words[0] in ("api", "bgapi") else words[0]
        if not self.connected:
            raise EslDisconnected("{}: not connected ({})".format(self.name, self.close_reason or "never connected"))
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()
        queued = written = False
        try:
            with gevent.Timeout(
                seconds, EslTimeout(f"{self.name}: no reply to {verb!r} within {seconds}s")
            ):
                with self._send_lock:
                    if not self.connected:
                        raise EslDisconnected(f"{self.name}: {self.close_reason}")
                    self._commands_sent.append(result)
                    queued = True
                    try:
                        self.sock.sendall((data + "\n\n").encode("utf-8"))
                    except OSError as exc:
                        self._shutdown(f"send failed: {exc}")
                    written = True
                reply: Reply = result.get()
                return reply
        except EslTimeout:
            if queued and not written:
                # half a command on the wire: the stream can no longer be trusted
                self._shutdown("timed out writing a command")
            raise


# --------------------------------------------------------------------------- the client


@dataclass
class _Generation:
    number: int
    events: EslConnection
    commands: EslConnection
    ready: bool = False
    lost: bool = False


class EslClient:
    """The dialer's FreeSWITCH client: one events connection, one commands
    connection, domain events out through ``on_event``.

    ``on_event`` is called from the dispatch greenlet for every translated
    event, and once with :class:`~dialer.events.ConnectionLost` when either
    connection drops (after the events already received were delivered).  It
    must not block: the dialer makes it a queue put.  ``connect()`` again
    (after a loss, typically with backoff) opens two fresh connections.
    """

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        on_event: Callable[[DomainEvent], None],
        command_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        events: Iterable[str] = DIALER_EVENTS,
        require_call_id: bool = True,
        event_format: str = "plain",
        filters: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._password = password
        self._on_event = on_event
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self.events = tuple(_check(_EVENT_NAME_RE, e, "event name") for e in events)
        self.require_call_id = require_call_id
        if event_format not in ("json", "plain"):
            raise ValueError(f"refusing event format {event_format!r}")
        # plain costs the switch less than JSON to write (measured on FreeSWITCH 1.11.1:
        # bench/realswitch.py), JSON costs us less to read; the switch is the scarcer CPU
        self.event_format = event_format
        # by default, with require_call_id, the switch sends only our legs' events and job results
        if filters is None:
            filters = DIALER_FILTERS if require_call_id else ()
        self.filters = tuple((_check(_EVENT_NAME_RE, h.replace("-", "_").upper(), "filter header") and h,
                              _check(_FILTER_VALUE_RE, v, "filter value")) for h, v in filters)
        self._gen: _Generation | None = None
        self._counter = 0

    # -- lifecycle --------------------------------------------------------------

    def connect(self) -> None:
        """(Re)connect both connections and subscribe; raises EslError on failure."""
        self.close()
        self._counter += 1
        number = self._counter
        events = self._new_connection("events", number, self._on_raw_event)
        commands = self._new_connection("commands", number, None)
        gen = _Generation(number, events, commands)
        self._gen = gen
        try:
            events.connect()
            reply = events.send(f"event {self.event_format} " + " ".join(self.events))
            if not reply.reply_text.startswith("+OK"):
                raise EslCommandError(f"event subscription refused: {reply.reply_text}")
            for header, value in self.filters:
                reply = events.send(f"filter {header} {value}")
                if not reply.reply_text.startswith("+OK"):
                    raise EslCommandError(f"event filter refused: {reply.reply_text}")
            commands.connect()
            if not (events.connected and commands.connected):
                raise EslDisconnected(
                    "connection dropped while connecting: %s"
                    % (events.close_reason or commands.close_reason)
                )
        except BaseException:
            self._gen = None
            events.close()
            commands.close()
            raise
        gen.ready = True

    def close(self) -> None:
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.events.close()
            gen.commands.close()

    @property
    def connected(self) -> bool:
        gen = self._gen
        return bool(gen and gen.ready and not gen.lost and gen.events.connected and gen.commands.connected)

    def _new_connection(
        self, name: str, number: int, on_event: Callable[[RawEvent], None] | None
    ) -> EslConnection:
        return EslConnection(
            self.host,
            self.port,
            self._password,
            name=name,
            connect_timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
            on_event=on_event,
            on_closed=partial(self._on_connection_closed, number, name),
            wanted_headers=TRANSLATED_HEADERS if on_event is not None else None,
        )

    def _on_raw_event(self, raw: RawEvent) -> None:
        event = translate(raw, require_call_id=self.require_call_id)
        if event is not None:
            self._on_event(event)

    def _on_connection_closed(self, number: int, name: str, reason: str) -> None:
        gen = self._gen
        if gen is None or gen.number != number or not gen.ready:
            return
        if name == "commands":
            # let the events connection drain what it already read, then report
            gen.events.abort(f"commands connection lost: {reason}")
            return
        gen.commands.abort(f"events connection lost: {reason}")
        if gen.lost:
            return
        gen.lost = True
        self._on_event(ConnectionLost(reason))

    # -- commands ---------------------------------------------------------------

    def _commands(self) -> EslConnection:
        gen = self._gen
        if gen is None or not gen.ready or not gen.commands.connected:
            reason = gen.commands.close_reason if gen is not None else None
            raise EslDisconnected("not connected to FreeSWITCH (%s)" % (reason or "no connection"))
        return gen.commands

    def api(self, cmd: str, timeout: float | None = None) -> str:
        """Run ``api <cmd>`` and return the raw response body."""
        if not isinstance(cmd, str) or not cmd or any(c in cmd for c in "\r\n"):
            raise ValueError(f"refusing api command {cmd!r}")
        reply = self._commands().send("api " + cmd, timeout)
        if reply.content_type != "api/response":
            raise EslCommandError("api {}: {}".format(cmd.split(" ", 1)[0], reply.reply_text))
        return reply.text

    def status(self) -> str:
        return self.api("status")

    def exists(self, uuid: str) -> bool:
        body = self.api("uuid_exists " + _check_uuid(uuid)).strip()
        if body in ("true", "false"):
            return body == "true"
        raise EslCommandError(f"uuid_exists: {body}")

    def kill(self, uuid: str, cause: str = "NORMAL_CLEARING") -> bool:
        """``uuid_kill``; False when the channel does not exist (any more)."""
        cause = _check(_CAUSE_RE, cause, "hangup cause")
        body = self.api(f"uuid_kill {_check_uuid(uuid)} {cause}")
        return body.startswith("+OK")

    def channels(self) -> list[dict[str, Any]]:
        """Live channels from ``show channels as json`` (a few fields each)."""
        body = self.api("show channels as json")
        try:
            data = json.loads(body)
        except ValueError:
            raise EslCommandError(f"show channels: {body.strip()}") from None
        rows = data.get("rows") or [] if isinstance(data, dict) else []
        result: list[dict[str, Any]] = []
        for row in rows:
            if not isinstance(row, dict) or not row.get("uuid"):
                continue
            result.append(
                {
                    "uuid": row["uuid"],
                    "direction": row.get("direction"),
                    "name": row.get("name"),
                    "state": row.get("state"),
                    "callstate": row.get("callstate"),
                    "dest": row.get("dest"),
                    "created_epoch": _int(row.get("created_epoch")),
                }
            )
        return result

    def channel_uuids(self) -> set[str]:
        """The uuids of every channel FreeSWITCH has now."""
        return {c["uuid"] for c in self.channels()}

    def originate(
        self,
        attempt_uuid: str,
        call_id: str,
        number_digits: str,
        gateway_or_dial_template: str,
        audio_path: str,
        caller_id_digits: str,
        timeout_s: int,
        *,
        limit_s: int | None = None,
    ) -> None:
        """``bgapi originate`` with ``Job-UUID: <attempt uuid>``.

        Returns once FreeSWITCH accepted the job; the outcome arrives as
        events (ChannelHangup, or OriginateResult for failures without a
        channel).  Raises ValueError for any argument that is not the
        expected shape, EslCommandError if the job is refused.
        """
        args = build_originate(
            attempt_uuid,
            call_id,
            number_digits,
            gateway_or_dial_template,
            audio_path,
            caller_id_digits,
            timeout_s,
            limit_s=limit_s,
        )
        job_uuid = attempt_uuid.lower()
        reply = self._commands().send(f"bgapi originate {args}\nJob-UUID: {job_uuid}")
        if not reply.reply_text.startswith("+OK"):
            raise EslCommandError("bgapi originate: %s" % (reply.reply_text or reply.text.strip()))
        if reply.headers.get("Job-UUID", job_uuid) != job_uuid:
            log.warning("bgapi answered Job-UUID %s, expected %s", reply.headers.get("Job-UUID"), job_uuid)
