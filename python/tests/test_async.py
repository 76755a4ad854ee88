"""A storage whose methods are coroutines (an asyncio client's): call_async
awaits it on the caller's event loop, with no thread; two breakers share one
through concurrent calls with exact counts and one trial; its failures
follow the fallback state; blocking calls on it are refused by name."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Dict, Optional, Tuple

import pytest

import tripswitch
from tripswitch import Conflict, Entry, Written


class AsyncDict(tripswitch.Storage):
    """Versioned records in a dict, answered after a few ms of `asyncio.sleep`."""

    def __init__(self) -> None:
        self.records: Dict[str, Tuple[int, bytes]] = {}
        self.last_version = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.failing: Optional[str] = None

    async def _pause(self) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(random.random() * 0.002)
        finally:
            self.in_flight -= 1
        if self.failing is not None:
            raise ConnectionError(self.failing)

    async def load(self, key: str) -> Optional[Entry]:
        await self._pause()
        record = self.records.get(key)
        return None if record is None else Entry(record[0], record[1])

    async def compare_and_swap(self, key: str, expected: Optional[int], data: bytes):
        await self._pause()
        record = self.records.get(key)
        if (record[0] if record else None) != expected:
            return Conflict(None if record is None else Entry(record[0], record[1]))
        self.last_version += 1
        self.records[key] = (self.last_version, data)
        return Written(self.last_version)


def os_threads() -> int:
    """The process's OS threads (Python's and the extension's)."""
    return len(os.listdir("/proc/self/task"))


def no_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes any hop to a worker thread fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("asyncio.to_thread was called")

    monkeypatch.setattr(asyncio, "to_thread", refuse)


async def boom() -> None:
    raise ConnectionError("upstream down")


async def ok() -> str:
    return "ok"


def test_two_breakers_count_concurrent_calls_exactly_with_no_thread(monkeypatch):
    no_threads(monkeypatch)
    storage = AsyncDict()
    a = tripswitch.CircuitBreaker(fail_max=1000, state_storage=storage, name="shared")
    b = tripswitch.CircuitBreaker(fail_max=1000, state_storage=storage, name="shared")
    threads = os_threads()

    async def main() -> int:
        calls = [(a if i % 2 else b).call_async(boom) for i in range(40)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert os_threads() == threads, "no thread was started for the calls"
        return sum(isinstance(r, ConnectionError) for r in results)

    assert asyncio.run(main()) == 40
    assert storage.most_in_flight >= 10, f"steps interleave ({storage.most_in_flight} at most in flight)"
    snapshot = asyncio.run(a.snapshot_async())
    assert snapshot.failures == 40

    rates = AsyncDict()
    c = tripswitch.CircuitBreaker(failure_rate_threshold=100, state_storage=rates, name="rates")
    d = tripswitch.CircuitBreaker(failure_rate_threshold=100, state_storage=rates, name="rates")

    async def mixed() -> None:
        await asyncio.gather(
            *[(c if i % 2 else d).call_async(boom if i % 4 == 0 else ok) for i in range(40)],
            return_exceptions=True,
        )

    asyncio.run(mixed())
    snapshot = asyncio.run(d.snapshot_async())
    assert (snapshot.window_calls, snapshot.window_failures) == (40, 10)


def test_one_trial_between_two_breakers(monkeypatch, clock):
    no_threads(monkeypatch)
    storage = AsyncDict()
    a = tripswitch.CircuitBreaker(fail_max=1, reset_timeout=1, state_storage=storage, name="trial", clock=clock)
    b = tripswitch.CircuitBreaker(fail_max=1, reset_timeout=1, state_storage=storage, name="trial", clock=clock)

    async def main() -> list:
        with pytest.raises(tripswitch.CircuitBreakerError):
            await a.call_async(boom)
        assert (await b.snapshot_async()).state == "open"
        clock.advance(1000)
        gate = asyncio.Event()
        ran = []

        async def trial() -> str:
            ran.append(1)
            await gate.wait()
            return "recovered"

        calls = [asyncio.ensure_future((a if i % 2 else b).call_async(trial)) for i in range(10)]
        while not ran or storage.in_flight:
            await asyncio.sleep(0.001)
        gate.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert len(ran) == 1
        return results

    results = asyncio.run(main())
    assert results.count("recovered") == 1
    refused = [r for r in results if isinstance(r, tripswitch.CircuitBreakerError)]
    assert len(refused) == 9
    assert {r.reason for r in refused} == {"half-open-full"}
    assert asyncio.run(a.snapshot_async()).state == "closed"


def test_a_failing_storage_follows_the_fallback_and_blocking_calls_are_refused():
    storage = AsyncDict()
    admits = tripswitch.CircuitBreaker(state_storage=storage, name="down")
    refuses = tripswitch.CircuitBreaker(state_storage=storage, name="down", fallback_state="open")
    storage.failing = "connection reset"

    async def main() -> None:
        assert await admits.call_async(ok) == "ok"
        with pytest.raises(tripswitch.CircuitBreakerError) as refused:
            await refuses.call_async(ok)
        assert refused.value.reason == "storage-unavailable"
        assert "ConnectionError: connection reset" in str(refused.value)
        with pytest.raises(tripswitch.StorageError, match="connection reset"):
            await admits.snapshot_async()

    asyncio.run(main())
    with pytest.raises(TypeError, match="coroutines: acquire"):
        admits.call(lambda: 1)
    with pytest.raises(TypeError, match="coroutines: snapshot"):
        admits.current_state
    with pytest.raises(ValueError, match="flush_interval"):
        tripswitch.CircuitBreaker(state_storage=storage, flush_interval=1)


def test_a_cancelled_call_still_records_its_failure():
    storage = AsyncDict()
    breaker = tripswitch.CircuitBreaker(fail_max=5, state_storage=storage, name="cancel")
    original = storage.compare_and_swap

    async def main() -> None:
        writing, release = asyncio.Event(), asyncio.Event()

        async def held_write(key, expected, data):
            writing.set()
            await release.wait()
            return await original(key, expected, data)

        storage.compare_and_swap = held_write  # type: ignore[method-assign]
        task = asyncio.ensure_future(breaker.call_async(boom))
        # The failure's write is in flight when the task is cancelled.
        await writing.wait()
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await breaker.snapshot_async()).failures == 1

    asyncio.run(main())


def test_a_trial_cancelled_while_taking_its_slot_leaves_it_free(clock):
    storage = AsyncDict()
    breaker = tripswitch.CircuitBreaker(fail_max=1, reset_timeout=1, state_storage=storage, name="slot", clock=clock)
    original = storage.compare_and_swap

    async def main() -> None:
        with pytest.raises(tripswitch.CircuitBreakerError):
            await breaker.call_async(boom)
        clock.advance(1000)
        writing, release = asyncio.Event(), asyncio.Event()

        async def held_write(key, expected, data):
            writing.set()
            await release.wait()
            return await original(key, expected, data)

        storage.compare_and_swap = held_write  # type: ignore[method-assign]
        task = asyncio.ensure_future(breaker.call_async(ok))
        # The trial slot's write is in flight when the task is cancelled.
        await writing.wait()
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        storage.compare_and_swap = original  # type: ignore[method-assign]
        assert (await breaker.snapshot_async()).trials_in_flight == 0
        assert await breaker.call_async(ok) == "ok"
        assert (await breaker.snapshot_async()).state == "closed"

    asyncio.run(main())
