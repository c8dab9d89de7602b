"""VerifiedKeys on its own: lifetime, forgetting a key, the bound on its size."""

from __future__ import annotations

from api.key_cache import VerifiedKeys


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entries_live_for_the_ttl():
    clock = Clock()
    keys = VerifiedKeys(5.0, clock=clock)
    keys.put("h1", "key-1", "acc-1", None)
    clock.now = 4.99
    entry = keys.get("h1")
    assert entry is not None and (entry.api_key_id, entry.account_id) == ("key-1", "acc-1")
    clock.now = 5.0
    assert keys.get("h1") is None and len(keys) == 0


def test_zero_ttl_caches_nothing():
    keys = VerifiedKeys(0)
    keys.put("h1", "key-1", "acc-1", None)
    assert not keys.enabled and keys.get("h1") is None


def test_forget_key_drops_every_entry_of_that_key():
    keys = VerifiedKeys(5.0, clock=Clock())
    keys.put("h1", "key-1", "acc-1", None)
    keys.put("h2", "key-2", "acc-1", None)
    keys.forget_key("key-1")
    assert keys.get("h1") is None and keys.get("h2") is not None


def test_a_full_cache_drops_expired_entries_first_then_everything():
    clock = Clock()
    keys = VerifiedKeys(5.0, max_entries=3, clock=clock)
    keys.put("old", "key-0", "acc", None)
    clock.now = 3.0
    keys.put("h1", "key-1", "acc", None)
    keys.put("h2", "key-2", "acc", None)
    clock.now = 6.0  # "old" expired, h1 and h2 alive
    keys.put("h3", "key-3", "acc", None)
    assert len(keys) == 3 and keys.get("old") is None and keys.get("h1") is not None
    keys.put("h4", "key-4", "acc", None)  # full with live entries: start again
    assert len(keys) == 1 and keys.get("h4") is not None
