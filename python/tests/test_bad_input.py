"""Bad input gets a TypeError or ValueError that names the argument, before
the component sees it; a storage that misbehaves gets an error naming it."""

from __future__ import annotations

import datetime
import math

import pytest

import tripswitch


@pytest.mark.parametrize(
    "kwargs, error, names",
    [
        ({"fail_max": "5"}, TypeError, "fail_max"),
        ({"fail_max": True}, TypeError, "fail_max"),
        ({"fail_max": 2.0}, TypeError, "fail_max"),
        ({"fail_max": -1}, ValueError, "fail_max"),
        ({"fail_max": 2**32}, ValueError, "fail_max"),
        ({"fail_max": 0}, ValueError, "fail_max"),
        ({"success_threshold": 0}, ValueError, "success_threshold"),
        ({"reset_timeout": "60"}, TypeError, "reset_timeout"),
        ({"reset_timeout": -1}, ValueError, "reset_timeout"),
        ({"reset_timeout": math.nan}, ValueError, "reset_timeout"),
        ({"reset_timeout": math.inf}, ValueError, "reset_timeout"),
        ({"reset_timeout": 1e300}, ValueError, "reset_timeout"),
        ({"reset_timeout": 0}, ValueError, "reset_timeout"),
        ({"trial_timeout": 0.0001}, ValueError, "trial_timeout"),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls"),
        ({"fallback_state": 1}, TypeError, "fallback_state"),
        ({"fallback_state": "ajar"}, ValueError, "fallback_state"),
        ({"fallback_state": "half-open"}, ValueError, "fallback_state"),
        ({"failure_rate_threshold": 101}, ValueError, "failure_rate_threshold"),
        ({"failure_rate_threshold": 256}, ValueError, "failure_rate_threshold"),
        ({"window": 1, "window_calls": 10}, ValueError, "window"),
        ({"backoff_multiplier": math.nan}, ValueError, "backoff_multiplier"),
        ({"backoff_multiplier": 0.5}, ValueError, "backoff_multiplier"),
        ({"backoff_multiplier": "2"}, TypeError, "backoff_multiplier"),
        ({"name": 5}, TypeError, "name"),
        ({"name": ""}, ValueError, "name"),
        ({"name": "n" * 257}, ValueError, "name"),
        ({"throw_new_error_on_trip": "yes"}, TypeError, "throw_new_error_on_trip"),
        ({"clock": 1000}, TypeError, "clock"),
        ({"state_storage": object()}, TypeError, "state_storage"),
        ({"listeners": [object()]}, TypeError, "listeners"),
        ({"exclude": [42]}, TypeError, "exclude"),
    ],
)
def test_a_bad_argument_is_named(kwargs, error, names) -> None:
    with pytest.raises(error, match=rf"^{names}\b"):
        tripswitch.CircuitBreaker(**kwargs)


def test_times_take_seconds_and_timedeltas(clock) -> None:
    cb = tripswitch.CircuitBreaker(fail_max=1, reset_timeout=datetime.timedelta(milliseconds=1500), clock=clock)
    with pytest.raises(tripswitch.CircuitBreakerError):
        cb.call(lambda: 1 / 0)
    assert cb.snapshot().retry_after_ms == 1500


def test_a_pybreaker_style_storage_is_refused_with_how_to_port_it() -> None:
    class Legacy(tripswitch.CircuitBreakerStorage):
        def __init__(self):
            super().__init__("legacy")

        @property
        def state(self):
            return "closed"

    with pytest.raises(TypeError, match=r"^state_storage: Legacy is a pybreaker-style .*load\(key\).*compare_and_swap"):
        tripswitch.CircuitBreaker(state_storage=Legacy())


@pytest.mark.parametrize("state", ["ajar", "", None])
def test_a_storages_state_is_checked(state) -> None:
    with pytest.raises((TypeError, ValueError), match="^state"):
        tripswitch.CircuitMemoryStorage(state)


def test_a_storage_without_its_methods_is_refused() -> None:
    class Half(tripswitch.Storage):
        load = None

    with pytest.raises(TypeError, match="Half has no method load"):
        tripswitch.CircuitBreaker(state_storage=Half())


def test_a_storage_answering_the_wrong_type_is_a_storage_failure_that_names_it(clock) -> None:
    class Odd(tripswitch.Storage):
        fallback_state = "closed"

        def load(self, key):
            return ("not", "an entry")

        def compare_and_swap(self, key, expected, data):
            return 7

    cb = tripswitch.CircuitBreaker(state_storage=Odd(), clock=clock)
    permit = cb.acquire()
    assert "Odd.load returned tuple, not a tripswitch.Entry or None" in permit.degraded
    permit.ignore()


def test_a_storage_answering_a_write_oddly_is_named(clock) -> None:
    class Odd(tripswitch.Storage):
        def load(self, key):
            return None

        def compare_and_swap(self, key, expected, data):
            return 7

    cb = tripswitch.CircuitBreaker(state_storage=Odd(), clock=clock)
    with pytest.raises(tripswitch.StorageError, match="Odd.compare_and_swap returned int, not tripswitch.Written"):
        cb.open()


def test_a_corrupt_record_is_told_and_reads_as_a_breaker_error(clock) -> None:
    class Garbage(tripswitch.Storage):
        def load(self, key):
            return tripswitch.Entry(1, b"\xff\x00 not a record")

        def compare_and_swap(self, key, expected, data):
            return tripswitch.Conflict(self.load(key))

    cb = tripswitch.CircuitBreaker(state_storage=Garbage(), clock=clock)
    # The component treats an unreadable record as an outage: the fallback answers.
    permit = cb.acquire()
    assert "stored record is corrupt: unknown record format 255" in permit.degraded
    permit.ignore()
    with pytest.raises(tripswitch.BreakerError, match="corrupt"):
        cb.snapshot()


def test_a_storage_fallback_state_is_checked() -> None:
    class Storage(tripswitch.Storage):
        fallback_state = "sideways"

        def load(self, key):
            return None

        def compare_and_swap(self, key, expected, data):
            return tripswitch.Written(1)

    with pytest.raises(ValueError, match="Storage.fallback_state"):
        tripswitch.CircuitBreaker(state_storage=Storage())


def test_entries_and_answers_check_their_types() -> None:
    with pytest.raises(TypeError):
        tripswitch.Entry("1", b"x")
    with pytest.raises(OverflowError):
        tripswitch.Written(-1)
    with pytest.raises(TypeError):
        tripswitch.Conflict("entry")


def test_the_decorator_takes_a_function() -> None:
    cb = tripswitch.CircuitBreaker()
    with pytest.raises(TypeError, match="decorates functions"):
        cb(42)
    with pytest.raises(TypeError, match="unexpected arguments"):
        cb(retries=3)
