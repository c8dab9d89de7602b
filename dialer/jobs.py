"""RQ job entry points that the API enqueues for the dialer.

They run inside the dialer process (taken off the queue by ``dialer.rq_consumer``)
and only hand the call id to the engine: the engine decides from SQL what to dial,
so running a job twice, late, or never loses and doubles nothing.
"""

from __future__ import annotations

from typing import Protocol


class _Engine(Protocol):
    def nudge(self) -> None: ...

    def cancel(self, call_id: str) -> bool: ...


_engine: _Engine | None = None


def bind(engine: _Engine | None) -> None:
    """Called once by the dialer's bootstrap."""
    global _engine
    _engine = engine


def dial_call(call_id: str) -> str:
    """A call is due: wake the dispatcher (it claims the call in SQL)."""
    if _engine is None:
        return "no dialer in this process; the dialer's sweep will find the call"
    _engine.nudge()
    return "handed to dispatcher"


def cancel_call(call_id: str) -> str:
    """The user cancelled a live call: hang it up on FreeSWITCH."""
    if _engine is None:
        return "no dialer in this process; the dialer's sweep hangs it up"
    return "hung up" if _engine.cancel(call_id) else "not live on this node"
