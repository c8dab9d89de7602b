"""One webhook POST, safe to point at any URL a customer gives.

* the address actually connected to is checked (``webhooks.urls.address_allowed``) right after
  the TCP connect and before TLS or any byte of the request, so a name that resolved to a public
  address when the endpoint was created and to 127.0.0.1 now (DNS rebinding) is refused;
* redirects are never followed (a 3xx is a failed attempt), nothing is retried here;
* the whole attempt is bounded by ``timeout`` (connect and each read), and at most
  ``MAX_RESPONSE_BYTES`` of the response body are read (it is only shown in the deliveries list
  when the attempt failed).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError

from webhooks.urls import address_allowed

MAX_RESPONSE_BYTES = 4096
USER_AGENT = "ZensCall-Webhooks/1"


class RefusedAddress(OSError):
    """The receiver's address is private, loopback, link-local or reserved."""


@dataclass(frozen=True)
class Response:
    status: int | None  # None: no HTTP answer (connection refused, timeout, refused address)
    latency_ms: int
    error: str | None  # why the attempt failed (None: a 2xx)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _checked(sock: socket.socket, allow_private: bool) -> socket.socket:
    peer = sock.getpeername()[0]
    if not address_allowed(str(peer), allow_private=allow_private):
        sock.close()
        raise RefusedAddress(f"the receiver's address {peer} is private, loopback, link-local or reserved")
    return sock


class _SafeHTTPConnection(HTTPConnection):
    allow_private = False

    def _new_conn(self) -> socket.socket:
        return _checked(super()._new_conn(), self.allow_private)


class _SafeHTTPSConnection(HTTPSConnection):
    allow_private = False

    def _new_conn(self) -> socket.socket:
        return _checked(super()._new_conn(), self.allow_private)


def _connection_classes(allow_private: bool) -> tuple[type[HTTPConnection], type[HTTPSConnection]]:
    return ((_AllowHTTP, _AllowHTTPS) if allow_private else (_SafeHTTPConnection, _SafeHTTPSConnection))


class _AllowHTTP(_SafeHTTPConnection):
    allow_private = True


class _AllowHTTPS(_SafeHTTPSConnection):
    allow_private = True


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool) -> Response:
    """POST ``body`` to ``url`` once; never raises for network or HTTP trouble."""
    parts = urlsplit(url)
    plain, tls = _connection_classes(allow_private)
    pool: Any
    kwargs: dict[str, Any] = {"timeout": urllib3.Timeout(connect=timeout, read=timeout), "retries": False,
                              "maxsize": 1, "block": False}
    host = parts.hostname or ""
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(host, parts.port or 443, **kwargs)
        pool.ConnectionCls = tls
    else:
        pool = urllib3.HTTPConnectionPool(host, parts.port or 80, **kwargs)
        pool.ConnectionCls = plain
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    deadline = started + timeout
    try:
        response = pool.urlopen("POST", path, body=body, headers={"User-Agent": USER_AGENT, **headers},
                                redirect=False, retries=False, preload_content=False, assert_same_host=False)
        try:
            data = b""
            while len(data) < MAX_RESPONSE_BYTES and time.monotonic() < deadline:
                chunk = response.read(MAX_RESPONSE_BYTES - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            response.release_conn()
        status = response.status
        latency = int((time.monotonic() - started) * 1000)
        if 200 <= status < 300:
            return Response(status, latency, None, data)
        why = f"redirect to {response.headers.get('Location', '?')[:200]} not followed" if 300 <= status < 400 \
            else f"HTTP {status}"
        return Response(status, latency, why, data)
    except RefusedAddress as exc:
        return Response(None, int((time.monotonic() - started) * 1000), str(exc))
    except (HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None)
        if isinstance(reason, RefusedAddress):
            return Response(None, int((time.monotonic() - started) * 1000), str(reason))
        return Response(None, int((time.monotonic() - started) * 1000), _describe(exc))
    finally:
        pool.close()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    # urllib3 names the pool object in its messages; keep what a customer can act on
    for marker in ("Failed to establish a new connection: ", "Read timed out", "timed out"):
        if marker in text:
            return ("connection failed: " + text.split(marker, 1)[1]) if marker.endswith(": ") else "timed out"
    return f"{type(exc).__name__}: {text}"[:300]
