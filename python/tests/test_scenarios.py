"""Every scenario in tests/scenarios/*.json through the Python package's
permit API, on a storage written in Python (so the scenarios cross the
Python storage path too). The Rust host and the JavaScript package run the
same files: a host that disagrees with another fails its tests."""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Dict, List, Optional

import pytest

import tripswitch
from conftest import SCENARIOS, START

FILES = sorted(SCENARIOS.glob("*.json"))


def test_there_are_scenario_files() -> None:
    assert len(FILES) >= 10, FILES


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def arguments(config: Dict[str, Any]) -> Dict[str, Any]:
    """Scenario config (WIT names, ms) to keyword arguments (snake case, seconds)."""
    out: Dict[str, Any] = {}
    for key, value in config.items():
        name = snake(key)
        if name.endswith("_ms"):
            name, value = name[: -len("_ms")], value / 1000
        out[name] = value
    return out


def argument_of_field(field: str) -> str:
    name = field.replace("-", "_")
    return name[: -len("_ms")] if name.endswith("_ms") else name


class Switch(tripswitch.Storage):
    """Memory written in Python that a `storage` step can make fail. It tells
    its version for free while it works, as memory does."""

    def __init__(self) -> None:
        self.failing = False
        self.entries: Dict[str, tripswitch.Entry] = {}
        self.last_version = 0
        self.lock = threading.Lock()

    def _check(self) -> None:
        if self.failing:
            raise ConnectionError("connection refused (scenario)")

    def load(self, key: str) -> Optional[tripswitch.Entry]:
        self._check()
        return self.entries.get(key)

    def peek_version(self, key: str) -> Optional[int]:
        self._check()
        current = self.entries.get(key)
        return current.version if current else None

    def compare_and_swap(self, key: str, expected: Optional[int], data: bytes):
        self._check()
        with self.lock:
            current = self.entries.get(key)
            if (current.version if current else None) != expected:
                return tripswitch.Conflict(current)
            self.last_version += 1
            self.entries[key] = tripswitch.Entry(self.last_version, data)
            return tripswitch.Written(self.last_version)


class Heard(tripswitch.CircuitBreakerListener):
    def __init__(self) -> None:
        self.changes: List[tripswitch.CircuitBreakerState] = []
        self.old: List[Optional[tripswitch.CircuitBreakerState]] = []
        self.errors: List[Exception] = []
        self.notices: List[str] = []

    def state_change(self, cb, old_state, new_state) -> None:
        self.old.append(old_state)
        self.changes.append(new_state)

    def error(self, cb, error) -> None:
        self.errors.append(error)

    def notice(self, cb, kind, message) -> None:
        self.notices.append(kind)


def on_instance(instance: int, step):
    """Runs a step on this thread's instance (0), or on another thread's (1)."""
    if instance == 0:
        return step()
    result: Dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = step()
        except BaseException as error:  # noqa: BLE001 - carried back to the test
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def snapshot_fields(s: tripswitch.Snapshot) -> Dict[str, Any]:
    offset = lambda ms: None if ms is None else ms - START  # noqa: E731
    return {
        "state": s.state,
        "failures": s.failures,
        "successes": s.successes,
        "openedAt": offset(s.opened_at_ms),
        "trialsInFlight": s.trials_in_flight,
        "generation": s.generation,
        "retryAfterMs": s.retry_after_ms,
        "windowCalls": s.window_calls,
        "windowFailures": s.window_failures,
        "windowSlowCalls": s.window_slow_calls,
        "failureRate": s.failure_rate,
        "slowCallRate": s.slow_call_rate,
        "openDurationMs": s.open_duration_ms,
        "retryAt": offset(s.retry_at_ms),
    }


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_scenario(path) -> None:
    scenario = json.loads(path.read_text())
    clock = tripswitch.ManualClock(START)
    if "invalid" in scenario:
        for case in scenario["invalid"]:
            argument = argument_of_field(case["field"])
            with pytest.raises(ValueError, match=rf"^{argument}: .+"):
                tripswitch.CircuitBreaker(name=case.get("name", "invalid"), clock=clock, **arguments(case["config"]))
        return
    storage = Switch()
    configs = scenario.get("configs") or [scenario.get("config", {})] * scenario.get("breakers", 1)
    heard = [Heard() for _ in configs]
    breakers = [
        tripswitch.CircuitBreaker(name="scenario", state_storage=storage, listeners=[h], clock=clock, **arguments(c))
        for c, h in zip(configs, heard)
    ]
    told = [0] * len(breakers)
    outages_told = [0] * len(breakers)
    permits: Dict[str, tripswitch.Permit] = {}
    for n, step in enumerate(scenario["steps"]):
        at = f"{path.name} step {n}: {step}"
        on = step.get("on", 0)
        instance = step.get("instance", 0)
        breaker = breakers[on]
        kind = step["do"]
        if kind == "advance":
            clock.advance(step["ms"])
        elif kind == "storage":
            storage.failing = step["failing"]
        elif kind == "acquire":
            try:
                permit = on_instance(instance, breaker.acquire)
            except tripswitch.CircuitBreakerError as refused:
                assert "rejected" in step, f"{at}: refused: {refused}"
                assert refused.reason == step["rejected"], at
                if "state" in step:
                    assert refused.state == step["state"], at
                if "retryAfterMs" in step:
                    assert refused.retry_after_ms == step["retryAfterMs"], at
            else:
                assert "rejected" not in step, f"{at}: admitted"
                assert permit.is_trial == step.get("trial", False), at
                assert (permit.degraded is not None) == step.get("degraded", False), at
                permits[step["permit"]] = permit
        elif kind == "report":
            permit = permits.pop(step["permit"])
            report = {"success": permit.success, "failure": permit.failure, "ignored": permit.ignore}[step["outcome"]]
            try:
                tripped = on_instance(instance, report)
            except tripswitch.StorageError:
                assert step.get("error") == "storage", at
            else:
                assert "error" not in step, f"{at}: reported"
                if "tripped" in step:
                    assert bool(tripped) == step["tripped"], at
        elif kind == "operate":
            on_instance(instance, lambda: breaker._breaker.operate(step["action"]))
        elif kind == "outages":
            outages = sum(isinstance(e, tripswitch.StorageError) for e in heard[on].errors)
            assert outages - outages_told[on] == step["expect"], at
            outages_told[on] = outages
        elif kind == "notices":
            assert heard[on].notices == step["expect"], at
            heard[on].notices.clear()
        elif kind == "snapshot":
            got = snapshot_fields(on_instance(instance, breaker.snapshot))
            for key, expected in step["expect"].items():
                assert got[key] == expected, f"{at}: {key} in {got}"
        elif kind == "events":
            fresh = []
            for new, old, wanted in zip(
                heard[on].changes[told[on] :], heard[on].old[told[on] :], step["expect"] + [None] * 99
            ):
                full = [old.name, new.name, new.remote, new.reason, new.at_ms - START]
                fresh.append(full[: len(wanted) if wanted else 3])
            told[on] = len(heard[on].changes)
            assert fresh == step["expect"], at
        else:
            raise AssertionError(f"{at}: unknown step {kind}")
