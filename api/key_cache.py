"""API keys this web process verified a moment ago, so most requests skip the key's SQL lookup.

An entry is made only after a key matched its stored hash, was not revoked and its account was
active; it is found by the SHA-256 of the full key (what the database stores), never by the
visible prefix, so a forged key with a real key's prefix misses and is checked in SQL as before.
An entry lives ``API_KEY_CACHE_SECONDS`` (5 s); then the next request reads the key and its
account from SQL again. So a key revoked by ``DELETE /api-keys/{id}`` is refused at once by the
process that revoked it (``forget_key``) and by every other process within that many seconds;
the same holds for ``flask keys revoke`` and for an account disabled in SQL. ``0`` turns the
cache off (every request reads SQL).

Per process, in memory, bounded (``max_entries``): a full cache drops its expired entries, and
when none expired, all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

DEFAULT_MAX_ENTRIES = 10_000


@dataclass
class VerifiedKey:
    api_key_id: str
    account_id: str
    expires_at: float  # on the cache's clock
    last_used_at: datetime | None  # as last written to SQL (by any process, when it was read)


class VerifiedKeys:
    def __init__(self, ttl_seconds: float, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, VerifiedKey] = {}

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def get(self, key_hash: str) -> VerifiedKey | None:
        """The entry of a key verified less than ``ttl`` seconds ago, else None."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if entry.expires_at <= self.clock():
            self._entries.pop(key_hash, None)
            return None
        return entry

    def put(self, key_hash: str, api_key_id: str, account_id: str, last_used_at: datetime | None) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if len(self._entries) >= self.max_entries and key_hash not in self._entries:
            self._entries = {h: e for h, e in self._entries.items() if e.expires_at > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key_hash] = VerifiedKey(api_key_id, account_id, now + self.ttl, last_used_at)

    def forget_key(self, api_key_id: str) -> None:
        """Drop a key at once (this process revoked it)."""
        self._entries = {h: e for h, e in self._entries.items() if e.api_key_id != api_key_id}

    def __len__(self) -> int:
        return len(self._entries)
