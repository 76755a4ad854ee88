"""The breaker's knobs: Python's arguments (seconds, pybreaker's names) to
the host's config fields (milliseconds), checked for type and form here;
the component checks the values and supplies every default."""

from __future__ import annotations

import datetime
import math
from typing import Any, Callable, Dict, Optional, Tuple

from ._states import check_state

_U8 = 2**8 - 1
_U32 = 2**32 - 1
_U64 = 2**64 - 1


def _whole(limit: int) -> Callable[[str, Any], int]:
    def convert(argument: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
        if not 0 <= value <= limit:
            raise ValueError(f"{argument} must be between 0 and {limit}, got {value}")
        return value

    return convert


def millis(argument: str, value: Any) -> int:
    """Seconds (a number or a timedelta) as whole ms, or an error naming `argument`."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{argument} must be a number of seconds (int, float or timedelta), not {type(value).__name__}"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{argument} must be a finite, non-negative number of seconds, got {value!r}")
    ms = round(value * 1000)
    if ms > _U64:
        raise ValueError(f"{argument} is too long: {value!r} seconds")
    return ms


def _factor(argument: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{argument} must be finite, got {value!r}")
    return float(value)


def _state(argument: str, value: Any) -> str:
    return check_state(value, argument)


#: Each knob: its argument, the host's config field, and the conversion.
KNOBS: Tuple[Tuple[str, str, Callable[[str, Any], Any]], ...] = (
    ("fail_max", "fail_max", _whole(_U32)),
    ("reset_timeout", "reset_timeout_ms", millis),
    ("success_threshold", "success_threshold", _whole(_U32)),
    ("half_open_max_calls", "half_open_max_calls", _whole(_U32)),
    ("trial_timeout", "trial_timeout_ms", millis),
    ("fallback_state", "fallback_state", _state),
    ("failure_rate_threshold", "failure_rate_threshold", _whole(_U8)),
    ("minimum_calls", "minimum_calls", _whole(_U32)),
    ("window", "window_ms", millis),
    ("window_calls", "window_calls", _whole(_U32)),
    ("slow_call", "slow_call_ms", millis),
    ("slow_call_rate_threshold", "slow_call_rate_threshold", _whole(_U8)),
    ("backoff_multiplier", "backoff_multiplier", _factor),
    ("max_reset_timeout", "max_reset_timeout_ms", millis),
    ("flush_interval", "flush_interval_ms", millis),
)

ARGUMENTS = tuple(argument for argument, _, _ in KNOBS)


def to_config(arguments: Dict[str, Any]) -> Dict[str, Any]:
    """The host config for `arguments` (knobs set to None are left to the component)."""
    config = {}
    for argument, field, convert in KNOBS:
        value = arguments.get(argument)
        if value is not None:
            config[field] = convert(argument, value)
    return config


def argument_of(field: str) -> Optional[str]:
    """The argument behind a config field as the contract names it (`reset-timeout-ms`)."""
    wanted = field.replace("-", "_")
    for argument, config_field, _ in KNOBS:
        if config_field == wanted:
            return argument
    return None


def effective(argument: str, config: Dict[str, Any]) -> Any:
    """A knob's value (seconds for times) in the component's resolved config."""
    for name, field, _ in KNOBS:
        if name == argument:
            value = config.get(field)
            if field.endswith("_ms") and value is not None:
                return value / 1000
            return value
    raise KeyError(argument)

