"""pybreaker 1.4.1's behaviours one by one (its test suite, Redis aside),
through `import tripswitch as pybreaker`, and its known bugs shown fixed.
The list is in ../shared/reference/pybreaker-semantics.md; each `test_bugN`
shows pybreaker's bug N absent."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, List

import pytest

import tripswitch as pybreaker
from conftest import START


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom("boom")


def fail(cb: pybreaker.CircuitBreaker, times: int = 1) -> List[BaseException]:
    """Makes `times` failing calls; the exceptions they raised."""
    raised = []
    for _ in range(times):
        with pytest.raises((Boom, pybreaker.CircuitBreakerError)) as info:
            cb.call(boom)
        raised.append(info.value)
    return raised


class Recorder(pybreaker.CircuitBreakerListener):
    def __init__(self) -> None:
        self.events: List[Any] = []

    def before_call(self, cb, func, *args, **kwargs) -> None:
        self.events.append(("before_call", func, args, kwargs))

    def failure(self, cb, exc) -> None:
        self.events.append(("failure", type(exc).__name__))

    def success(self, cb) -> None:
        self.events.append(("success",))

    def state_change(self, cb, old_state, new_state) -> None:
        self.events.append(("state_change", old_state.name if old_state else None, new_state.name))

    def names(self) -> List[str]:
        return [e[0] if e[0] != "state_change" else f"{e[1]}->{e[2]}" for e in self.events]


def test_the_module_has_pybreakers_names() -> None:
    for name in (
        "CircuitBreaker",
        "CircuitBreakerListener",
        "CircuitBreakerError",
        "CircuitMemoryStorage",
        "CircuitRedisStorage",
        "CircuitBreakerStorage",
        "STATE_OPEN",
        "STATE_CLOSED",
        "STATE_HALF_OPEN",
    ):
        assert hasattr(pybreaker, name), name
    assert (pybreaker.STATE_OPEN, pybreaker.STATE_CLOSED, pybreaker.STATE_HALF_OPEN) == ("open", "closed", "half-open")


def test_a_successful_call_returns_its_value(clock) -> None:
    cb = pybreaker.CircuitBreaker(clock=clock)
    assert cb.call(lambda x, y=1: x + y, 40, y=2) == 42
    assert (cb.current_state, cb.fail_counter) == ("closed", 0)


def test_one_failure_raises_the_original_error_and_counts(clock) -> None:
    cb = pybreaker.CircuitBreaker(clock=clock)
    (error,) = fail(cb)
    assert isinstance(error, Boom)
    assert (cb.current_state, cb.fail_counter) == ("closed", 1)


def test_a_success_after_a_failure_resets_the_counter(clock) -> None:
    cb = pybreaker.CircuitBreaker(clock=clock)
    fail(cb)
    cb.call(lambda: None)
    assert cb.fail_counter == 0


def test_the_fail_max_th_failure_opens_and_the_next_call_does_not_run(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=3, clock=clock)
    first, second, third = fail(cb, 3)
    assert isinstance(first, Boom) and isinstance(second, Boom)
    assert isinstance(third, pybreaker.CircuitBreakerError)
    assert isinstance(third.__cause__, Boom), "the trip is chained to the call's error"
    assert cb.current_state == "open"
    ran = []
    with pytest.raises(pybreaker.CircuitBreakerError) as refused:
        cb.call(lambda: ran.append(1))
    assert ran == []
    assert refused.value.reason == "open"
    assert refused.value.retry_after == 60.0, "the default reset timeout, to the millisecond"


def test_throw_new_error_on_trip_false_raises_the_calls_own_error(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=1, throw_new_error_on_trip=False, clock=clock)
    (error,) = fail(cb)
    assert isinstance(error, Boom)
    assert cb.current_state == "open"
    assert cb.open() is False, "open() returns throw_new_error_on_trip, as pybreaker's does"


def test_after_the_reset_timeout_a_successful_trial_closes(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=10, clock=clock)
    fail(cb)
    clock.advance(9_999)
    assert cb.current_state == "open"
    clock.advance(1)
    assert cb.current_state == "half-open", "reading sees the elapsed timeout (bug 7)"
    ran = []
    assert cb.call(lambda: ran.append(1) or "ok") == "ok"
    assert ran == [1]
    assert cb.current_state == "closed"


def test_a_failed_trial_reopens_for_a_whole_period(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=10, clock=clock)
    fail(cb)
    clock.advance(10_000)
    (error,) = fail(cb)
    assert isinstance(error, pybreaker.CircuitBreakerError)
    assert str(error) == "Trial call failed, circuit breaker opened"
    assert cb.current_state == "open"
    clock.advance(9_999)
    assert cb.current_state == "open"
    assert cb.snapshot().opened_at_ms == START + 10_000


def test_only_one_trial_runs_at_a_time(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1, clock=clock)
    fail(cb)
    clock.advance(1_000)
    trial = cb.acquire()
    assert trial.is_trial
    with pytest.raises(pybreaker.CircuitBreakerError) as refused:
        cb.call(lambda: None)
    assert refused.value.reason == "half-open-full"
    trial.success()
    assert cb.current_state == "closed"


def test_manual_half_open_then_failure_reopens_then_success_closes(clock) -> None:
    cb = pybreaker.CircuitBreaker(clock=clock)
    cb.half_open()
    assert cb.current_state == "half-open"
    fail(cb)
    assert cb.current_state == "open"
    cb.half_open()
    cb.call(lambda: None)
    assert cb.current_state == "closed"


def test_manual_close_resets_the_counter(clock) -> None:
    cb = pybreaker.CircuitBreaker(clock=clock)
    fail(cb, 2)
    cb.open()
    cb.close()
    assert (cb.current_state, cb.fail_counter) == ("closed", 0)


def test_the_state_property_and_setter(clock) -> None:
    cb = pybreaker.CircuitBreaker(clock=clock)
    assert isinstance(cb.state, pybreaker.CircuitClosedState)
    cb.state = pybreaker.STATE_OPEN
    assert cb.state.name == "open" and isinstance(cb.state, pybreaker.CircuitOpenState)
    cb.state = pybreaker.STATE_CLOSED
    assert cb.current_state == "closed"
    with pytest.raises(ValueError, match="unknown state"):
        cb.state = "ajar"


def test_transition_events_in_order(clock) -> None:
    heard = Recorder()
    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1, listeners=[heard], clock=clock)
    fail(cb)
    assert heard.names() == ["before_call", "failure", "closed->open"], "pybreaker's order on a trip"
    heard.events.clear()
    clock.advance(1_000)
    cb.call(lambda: None)
    assert heard.names() == ["open->half-open", "before_call", "half-open->closed", "success"]


def test_listeners_hear_before_call_with_the_function_and_arguments(clock) -> None:
    heard = Recorder()
    cb = pybreaker.CircuitBreaker(listeners=[heard], clock=clock)

    def add(a, b=0):
        return a + b

    cb.call(add, 1, b=2)
    assert heard.events == [("before_call", add, (1,), {"b": 2}), ("success",)]


def test_listeners_can_be_added_and_removed(clock) -> None:
    first, second = Recorder(), Recorder()
    cb = pybreaker.CircuitBreaker(listeners=[first], clock=clock)
    cb.add_listeners(second)
    assert cb.listeners == (first, second)
    cb.remove_listener(first)
    cb.call(lambda: None)
    assert first.events == [] and len(second.events) == 2
    with pytest.raises(TypeError, match="listeners"):
        cb.add_listener(object())


def test_state_objects_carry_the_reason(clock) -> None:
    changes = []

    class Listener(pybreaker.CircuitBreakerListener):
        def state_change(self, cb, old_state, new_state):
            changes.append((old_state.name, new_state.name, new_state.reason, new_state.remote, cb))

    cb = pybreaker.CircuitBreaker(fail_max=1, listeners=[Listener()], clock=clock)
    fail(cb)
    assert changes == [("closed", "open", "tripped", False, cb)]


def test_excluded_exceptions_by_type_and_predicate_count_as_successes(clock) -> None:
    class Business(Exception):
        pass

    class Teapot(Exception):
        def __init__(self, status):
            super().__init__(status)
            self.status = status

    heard = Recorder()
    cb = pybreaker.CircuitBreaker(
        exclude=[Business, lambda e: isinstance(e, Teapot) and e.status == 418], listeners=[heard], clock=clock
    )
    fail(cb)
    assert cb.fail_counter == 1
    with pytest.raises(Business):
        cb.call(lambda: (_ for _ in ()).throw(Business()))
    assert cb.fail_counter == 0, "an excluded error resets the counter like a success"
    assert heard.names()[-1] == "success"
    with pytest.raises(Teapot):
        cb.call(lambda: (_ for _ in ()).throw(Teapot(418)))
    assert cb.fail_counter == 0
    with pytest.raises(Teapot):
        cb.call(lambda: (_ for _ in ()).throw(Teapot(500)))
    assert cb.fail_counter == 1
    assert cb.excluded_exceptions[0] is Business
    cb.remove_excluded_exception(Business)
    cb.add_excluded_exceptions(KeyError, LookupError)
    assert not cb.is_system_error(KeyError()) and cb.is_system_error(Business())
    with pytest.raises(TypeError, match="exclude"):
        cb.add_excluded_exception(42)


def test_success_threshold(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1, success_threshold=3, clock=clock)
    fail(cb)
    clock.advance(1_000)
    cb.call(lambda: None)
    cb.call(lambda: None)
    assert (cb.current_state, cb.success_counter) == ("half-open", 2)
    fail(cb)
    assert (cb.current_state, cb.success_counter) == ("open", 0)
    clock.advance(1_000)
    for _ in range(3):
        cb.call(lambda: None)
    assert cb.current_state == "closed"


def test_a_new_breaker_on_a_storage_takes_the_stored_state(clock) -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    first = pybreaker.CircuitBreaker(fail_max=3, state_storage=storage, clock=clock)
    fail(first, 2)
    second = pybreaker.CircuitBreaker(fail_max=3, state_storage=storage, clock=clock)
    assert second.fail_counter == 2
    fail(second)
    assert first.current_state == "open"
    third = pybreaker.CircuitBreaker(state_storage=pybreaker.CircuitMemoryStorage("open"), clock=clock)
    assert third.current_state == "open"


def test_a_storages_state_applies_only_when_the_key_is_absent(clock) -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_OPEN)
    first = pybreaker.CircuitBreaker(state_storage=storage, name="db", clock=clock)
    assert first.current_state == "open"
    first.close()
    fail(first, 2)
    again = pybreaker.CircuitBreaker(state_storage=storage, name="db", clock=clock)
    assert (again.current_state, again.fail_counter) == ("closed", 2), "pybreaker overwrote it"


def test_name_none_is_stored_as_default(clock) -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    cb = pybreaker.CircuitBreaker(state_storage=storage, clock=clock)
    fail(cb)
    assert cb.name is None and storage.keys() == ["default"]
    named = pybreaker.CircuitBreaker(state_storage=storage, name="payments", clock=clock)
    assert named.fail_counter == 0 and named.name == "payments"


def test_the_decorator_guards_sync_functions(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=2, clock=clock)

    @cb
    def double(x):
        """Doubles."""
        return 2 * x

    @cb()
    def broken():
        raise Boom()

    assert double(21) == 42 and double.__doc__ == "Doubles." and double.__name__ == "double"
    with pytest.raises(Boom):
        broken()
    with pytest.raises(pybreaker.CircuitBreakerError):
        broken()
    with pytest.raises(pybreaker.CircuitBreakerError):
        double(1)


def test_the_decorator_guards_async_functions(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=1, clock=clock)
    ran = []

    @cb
    async def fetch(x):
        await asyncio.sleep(0)
        ran.append(x)
        if x < 0:
            raise Boom()
        return x

    assert asyncio.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(3)) == 3
    with pytest.raises(pybreaker.CircuitBreakerError):
        asyncio.run(fetch(-1))
    assert ran == [3, -1]
    with pytest.raises(pybreaker.CircuitBreakerError):
        asyncio.run(fetch(5))
    assert ran == [3, -1], "a refused coroutine never runs"


def test_bug8_a_coroutine_counts_when_it_finishes_not_before_it_runs(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=2, clock=clock)

    async def failing():
        await asyncio.sleep(0)
        raise Boom()

    async def main():
        with pytest.raises(Boom):
            await cb.call_async(failing)
        assert cb.fail_counter == 1
        assert await cb.call_async(lambda: asyncio.sleep(0, "value")) == "value"
        assert cb.fail_counter == 0

    asyncio.run(main())


def test_a_cancelled_coroutine_records_nothing_and_frees_its_trial_slot(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1, clock=clock)
    fail(cb)
    clock.advance(1_000)

    async def main():
        task = asyncio.ensure_future(cb.call_async(asyncio.sleep, 3600))
        await asyncio.sleep(0.01)
        assert cb.snapshot().trials_in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cb.snapshot().trials_in_flight == 0
        assert cb.current_state == "half-open"
        await cb.call_async(asyncio.sleep, 0)
        assert cb.current_state == "closed"

    asyncio.run(main())


def test_the_context_manager(clock) -> None:
    heard = Recorder()
    cb = pybreaker.CircuitBreaker(fail_max=2, listeners=[heard], clock=clock)
    with cb.calling():
        pass
    with pytest.raises(Boom):
        with cb.calling():
            raise Boom()
    assert cb.fail_counter == 1
    with pytest.raises(pybreaker.CircuitBreakerError):
        with cb.calling():
            raise Boom()
    ran = []
    with pytest.raises(pybreaker.CircuitBreakerError):
        with cb.calling():
            ran.append(1)
    assert ran == [] and heard.names()[:2] == ["before_call", "success"]


def test_a_generator_counts_when_it_finishes(clock) -> None:
    cb = pybreaker.CircuitBreaker(clock=clock)

    def numbers():
        yield 1
        yield 2
        raise Boom()

    values = cb.call(numbers)
    assert cb.fail_counter == 0
    with pytest.raises(Boom):
        for value in values:
            assert value in (1, 2)
    assert cb.fail_counter == 1
    abandoned = cb.call(numbers)
    next(abandoned)
    abandoned.close()
    assert cb.fail_counter == 1, "a generator closed early records nothing"


def test_interrupts_record_nothing(clock) -> None:
    cb = pybreaker.CircuitBreaker(clock=clock)

    def interrupted():
        raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        cb.call(interrupted)
    assert cb.fail_counter == 0


def test_threads_count_every_failure(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=3000, clock=clock)

    def worker():
        for _ in range(500):
            with pytest.raises(Boom):
                cb.call(boom)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cb.fail_counter == 1500


def test_threads_stop_at_exactly_fail_max_and_one_trial_runs(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=3000, reset_timeout=1, clock=clock)
    ran, trips = [], []

    def worker():
        for _ in range(2000):
            try:
                cb.call(boom)
            except Boom:
                ran.append(1)
            except pybreaker.CircuitBreakerError as error:
                if error.reason == "tripped":
                    trips.append(error)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (cb.fail_counter, cb.current_state, len(trips)) == (3000, "open", 1), "one trip, at exactly fail_max"
    # Calls admitted before the trip may still fail after it (at most one per other thread).
    assert 2999 <= len(ran) <= 3001
    clock.advance(1_000)
    barrier = threading.Barrier(3)
    trials = []

    def trial():
        barrier.wait()
        try:
            trials.append(cb.acquire())
        except pybreaker.CircuitBreakerError:
            pass

    threads = [threading.Thread(target=trial) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(trials) == 1 and trials[0].is_trial


def test_bug1_a_guarded_call_holds_no_lock() -> None:
    cb = pybreaker.CircuitBreaker()
    inside = threading.Barrier(5, timeout=10)

    def worker():
        # Every call waits inside until all five are inside at once.
        cb.call(inside.wait)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not inside.broken


def test_bug5_fallback_open_with_the_storage_down_refuses_without_recursion(clock) -> None:
    class Down(pybreaker.Storage):
        fallback_state = "open"

        def load(self, key):
            raise ConnectionError("connection refused")

        def compare_and_swap(self, key, expected, data):
            raise ConnectionError("connection refused")

    cb = pybreaker.CircuitBreaker(state_storage=Down(), clock=clock)
    with pytest.raises(pybreaker.CircuitBreakerError) as refused:
        cb.call(lambda: None)
    assert refused.value.reason == "storage-unavailable" and refused.value.state == "open"
    assert "connection refused" in str(refused.value)


def test_the_fallback_state_closed_admits_while_the_storage_is_down(clock) -> None:
    errors = []

    class Listener(pybreaker.CircuitBreakerListener):
        def error(self, cb, error):
            errors.append(error)

    class Down(pybreaker.Storage):
        def load(self, key):
            raise ConnectionError("connection refused")

        def compare_and_swap(self, key, expected, data):
            raise ConnectionError("connection refused")

    cb = pybreaker.CircuitBreaker(state_storage=Down(), fallback_state="closed", listeners=[Listener()], clock=clock)
    assert cb.call(lambda: 7) == 7
    permit = cb.acquire()
    assert "ConnectionError: connection refused" in permit.degraded
    permit.success()
    assert [type(e) for e in errors] == [pybreaker.StorageError], "an outage is told once"
    with pytest.raises(pybreaker.StorageError, match="connection refused"):
        cb.snapshot()


def test_tripswitch_extras_trial_limit_timeout_forced_open_disabled(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1, half_open_max_calls=2, trial_timeout=5, clock=clock)
    fail(cb)
    clock.advance(1_000)
    first, second = cb.acquire(), cb.acquire()
    assert first.is_trial and second.is_trial
    with pytest.raises(pybreaker.CircuitBreakerError) as refused:
        cb.acquire()
    assert refused.value.retry_after == 5.0, "the oldest trial's slot is forfeited after the trial timeout"
    clock.advance(5_000)
    third = cb.acquire()
    assert third.is_trial
    for permit in (first, second, third):
        permit.ignore()
    cb.force_open()
    with pytest.raises(pybreaker.CircuitBreakerError) as refused:
        cb.call(lambda: None)
    assert (refused.value.reason, refused.value.retry_after) == ("forced-open", None)
    cb.disable()
    fail(cb, 5)
    assert cb.current_state == "disabled"
    cb.close()
    assert cb.current_state == "closed"


def test_tripswitch_extras_failure_rate_window_and_backoff(clock) -> None:
    cb = pybreaker.CircuitBreaker(
        reset_timeout=1,
        failure_rate_threshold=50,
        minimum_calls=4,
        window_calls=10,
        backoff_multiplier=2,
        max_reset_timeout=3,
        flush_interval=0,
        clock=clock,
    )
    cb.call(lambda: None)
    cb.call(lambda: None)
    fail(cb)
    snapshot = cb.snapshot()
    assert (snapshot.state, snapshot.window_calls, snapshot.window_failures) == ("closed", 3, 1)
    (error,) = fail(cb)
    assert isinstance(error, pybreaker.CircuitBreakerError), "the fourth call makes the rate 50%"
    assert cb.current_state == "open"
    clock.advance(1_000)
    fail(cb)
    assert cb.snapshot().open_duration_ms == 2_000, "each failed trial doubles the wait"


def test_knobs_left_unset_read_the_components_defaults() -> None:
    cb = pybreaker.CircuitBreaker()
    assert (cb.fail_max, cb.reset_timeout, cb.success_threshold) == (5, 60, 1)
    # A failure-rate rule alone replaces the consecutive rule: no fail_max.
    rated = pybreaker.CircuitBreaker(failure_rate_threshold=50)
    assert rated.fail_max is None
    assert pybreaker.CircuitBreaker(reset_timeout=2.5).reset_timeout == 2.5


def test_setting_a_knob_keeps_the_stored_state(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=5, clock=clock)
    fail(cb, 2)
    cb.fail_max = 3
    assert (cb.fail_max, cb.fail_counter) == (3, 2)
    fail(cb)
    assert cb.current_state == "open"
    cb.reset_timeout = 2
    assert cb.reset_timeout == 2
    cb.success_threshold = 2
    assert cb.success_threshold == 2
    with pytest.raises(ValueError, match="^fail_max: "):
        cb.fail_max = 0


def test_a_listener_exception_in_state_change_goes_to_the_unraisable_hook(clock, monkeypatch) -> None:
    seen = []
    monkeypatch.setattr("sys.unraisablehook", lambda info: seen.append(info.exc_value))

    class Loud(pybreaker.CircuitBreakerListener):
        def state_change(self, cb, old_state, new_state):
            raise RuntimeError("listener broke")

    cb = pybreaker.CircuitBreaker(fail_max=1, listeners=[Loud()], clock=clock)
    fail(cb)
    assert cb.current_state == "open"
    assert [str(e) for e in seen] == ["listener broke"]


def test_a_before_call_listener_that_raises_frees_the_trial_slot(clock) -> None:
    class Refuses(pybreaker.CircuitBreakerListener):
        def before_call(self, cb, func, *args, **kwargs):
            raise RuntimeError("no")

    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1, clock=clock)
    fail(cb)
    clock.advance(1_000)
    cb.add_listener(Refuses())
    with pytest.raises(RuntimeError):
        cb.call(lambda: None)
    assert cb.snapshot().trials_in_flight == 0


def test_an_unreported_permit_records_ignored_when_collected(clock) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1, clock=clock)
    fail(cb)
    clock.advance(1_000)
    permit = cb.acquire()
    assert cb.snapshot().trials_in_flight == 1
    del permit
    assert cb.snapshot().trials_in_flight == 0
    permit = cb.acquire()
    permit.success()
    with pytest.raises(RuntimeError, match="already reported"):
        permit.failure()


def test_the_system_clock_by_default() -> None:
    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=0.05)
    fail(cb)
    now = time.time() * 1000
    assert abs(cb.snapshot().opened_at_ms - now) < 5_000


def test_held_window_outcomes_are_merged_when_the_interpreter_exits(tmp_path) -> None:
    import subprocess
    import sys

    script = tmp_path / "held.py"
    script.write_text(
        "import tripswitch\n"
        "class Told(tripswitch.Storage):\n"
        "    entry = None\n"
        "    def load(self, key):\n"
        "        return self.entry\n"
        "    def compare_and_swap(self, key, expected, data):\n"
        "        print('write', flush=True)\n"
        "        version = (self.entry.version if self.entry else 0) + 1\n"
        "        self.entry = tripswitch.Entry(version, data)\n"
        "        return tripswitch.Written(version)\n"
        "cb = tripswitch.CircuitBreaker(state_storage=Told(), failure_rate_threshold=50, window=30, flush_interval=60)\n"
        "cb.call(lambda: None)\n"
        "print('called', flush=True)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["called", "write"], "held until exit, merged then"
