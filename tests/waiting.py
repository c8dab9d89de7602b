"""Bounded polling for tests that wait on other processes (dialer, simulator, worker)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T], timeout: float = 20.0, interval: float = 0.1,
             sleep: Callable[[float], object] = time.sleep) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline
    (``sleep=gevent.sleep`` where greenlets of the test's own process must run meanwhile)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        sleep(interval)
