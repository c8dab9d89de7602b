"""One ESL ``api`` command from plain blocking code (no gevent loop needed).

Benchmarks, fault scripts and tests use it to read the simulator's ``sim_stats`` or to
send its test hooks (``sim_drop_all``); it speaks to a real FreeSWITCH the same way.
"""

from __future__ import annotations

import socket

from dialer.esl_wire import EslProtocolError, read_message


def esl_api(port: int, command: str, *, host: str = "127.0.0.1", password: str = "ClueCon",
            timeout: float = 10.0) -> str:
    """Authenticate, run ``api <command>``, return the response body."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        stream = sock.makefile("rb")

        def message() -> tuple[dict[str, str], bytes]:
            got = read_message(stream)
            if got is None:
                raise EslProtocolError("ESL connection closed")
            return got

        message()  # auth/request
        sock.sendall(f"auth {password}\n\n".encode())
        reply, _ = message()
        if not reply.get("Reply-Text", "").startswith("+OK"):
            raise EslProtocolError(f"authentication refused: {reply.get('Reply-Text')}")
        sock.sendall(f"api {command}\n\n".encode())
        while True:  # events may come first on a subscribed connection; this one is not
            headers, body = message()
            if headers.get("Content-Type") == "api/response":
                return body.decode()
