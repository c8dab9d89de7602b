"""An open-loop HTTP load generator: requests at a fixed rate, latency from the intended send time.

Usage: ``python bench/openloop.py --url http://127.0.0.1:8000/api/v1/calls --rate 100 --seconds 30
[--warmup 3] [--method POST] [--body '{"audio_id": "%AUDIO%"}'] [--keys-file keys.tsv]
[--header "Content-Type: application/json"]``

A closed-loop tool such as wrk sends the next request only when an answer came back, so when the
server stalls it simply sends less, and the requests it did not send never count as slow
(coordinated omission). Here request ``i`` is due at ``start + i / rate`` whatever happened before;
it is sent by its own greenlet on a free keep-alive connection (a new connection when none is
free), and its latency is measured from the moment it was due to the end of its response. A
server that falls behind therefore shows up as growing latency, as clients see it.

``--keys-file``: one ``<API key><TAB><audio id>`` line per account, as ``bench/wrk_report.lua``
reads it; request ``i`` uses line ``i mod n`` (``Authorization: Bearer <key>``, ``%AUDIO%`` in the
body replaced by the audio id). Prints one line ``OPENLOOP_JSON {...}`` with the counts and the
latency percentiles of the requests due after the warm-up.

It runs as its own process (``bench/api.py`` starts it): gevent patches the standard library
here only.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
from gevent.queue import LifoQueue  # noqa: E402


@dataclass
class Sample:
    due: float
    latency: float
    status: int  # 0: connection or protocol error


class StaleConnection(ConnectionError):
    """The server had closed the connection: nothing of the request was answered."""


class Connection:
    """One HTTP/1.1 keep-alive connection with a minimal response reader (Content-Length bodies)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, request: bytes) -> int:
        try:
            self.sock.sendall(request)
            self._fill()
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:  # before any answer
            raise StaleConnection(str(exc)) from exc
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            rest += self._recv()
        self.buffer = rest[length:]
        return status

    def _fill(self) -> None:
        self.buffer += self._recv()

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("connection closed by the server")
        return data

    def close(self) -> None:
        self.sock.close()


def build_requests(url: str, method: str, body: str, headers: list[str], keys_file: str | None) -> list[bytes]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    accounts: list[tuple[str | None, str]] = [(None, "")]
    if keys_file:
        with open(keys_file) as f:
            accounts = [tuple(line.rstrip("\n").split("\t", 1)) for line in f if line.strip()]  # type: ignore[misc]
    built = []
    for key, audio in accounts:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}"] + list(headers)
        if key:
            lines.append(f"Authorization: Bearer {key}")
        payload = body.replace("%AUDIO%", audio).encode()
        if payload or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(payload)}")
        built.append(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
    return built


def run(url: str, *, rate: float, seconds: float, warmup: float, method: str, body: str, headers: list[str],
        keys_file: str | None, timeout: float) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = build_requests(url, method, body, headers, keys_file)
    pool: LifoQueue = LifoQueue()
    opened = stale = 0
    failures: dict[str, int] = {}
    samples: list[Sample] = []

    def one(i: int, due: float) -> None:
        nonlocal opened, stale
        conn = None
        status = 0
        try:
            conn = pool.get_nowait() if pool.qsize() else None
            if conn is not None:
                try:
                    status = conn.exchange(requests[i % len(requests)])
                except StaleConnection:
                    # the server closed this idle keep-alive connection before reading the request
                    # (gunicorn's keepalive timeout): sent again on a new one, as HTTP clients do
                    stale += 1
                    conn.close()
                    conn = None
            if conn is None:
                conn = Connection(host, port, timeout)
                opened += 1
                status = conn.exchange(requests[i % len(requests)])
        except Exception as exc:  # noqa: BLE001 - counted as an error (status 0)
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            if conn is not None:
                conn.close()
            conn = None
        finally:
            samples.append(Sample(due, time.perf_counter() - due, status))
            if conn is not None:
                pool.put(conn)

    total = int((warmup + seconds) * rate)
    greenlets = []
    start = time.perf_counter() + 0.05
    lag_max = 0.0
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        else:
            lag_max = max(lag_max, -delay)
        greenlets.append(gevent.spawn(one, i, due))
    gevent.joinall(greenlets, timeout=timeout + 5)
    expected = sum(1 for i in range(total) if start + i / rate >= start + warmup)
    measured = [s for s in samples if s.due >= start + warmup]
    if len(measured) < expected:  # still waiting at the end: counted as errors
        failures["unfinished"] = expected - len(measured)
    ok = sorted(s.latency for s in measured if 200 <= s.status < 300)
    errors = sum(1 for s in measured if s.status == 0) + expected - len(measured)
    non_2xx = sum(1 for s in measured if s.status and not 200 <= s.status < 300)
    span = max(s.due for s in measured) - min(s.due for s in measured) if measured else 0.0

    def pct(p: float) -> float:
        return ok[min(len(ok) - 1, int(p / 100 * len(ok)))] * 1000 if ok else float("nan")

    return {"rate": rate, "sent": expected, "answered_2xx": len(ok), "non_2xx": non_2xx, "errors": errors,
            "offered_rps": (len(measured) - 1) / span if span else 0.0, "connections": opened,
            "stale_resent": stale, "error_kinds": failures,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": ok[-1] * 1000 if ok else float("nan"),
            "send_lag_max_ms": lag_max * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds sent before the measured ones")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default="")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--keys-file")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    result = run(args.url, rate=args.rate, seconds=args.seconds, warmup=args.warmup, method=args.method,
                 body=args.body, headers=args.header, keys_file=args.keys_file, timeout=args.timeout)
    print("OPENLOOP_JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
