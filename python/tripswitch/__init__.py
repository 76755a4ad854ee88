"""tripswitch: a circuit breaker whose state machine is one WebAssembly
component, with pybreaker's API. `import tripswitch as pybreaker` and your
code runs; a Python process and a Rust one naming the same breaker on the
same Redis share it."""

from ._breaker import CircuitBreaker
from ._errors import CircuitBreakerError
from ._listener import CircuitBreakerListener
from ._native import BreakerError, ManualClock, Permit, Snapshot, StateChange, StorageError
from ._redis import CircuitRedisStorage, RedisStorage
from ._states import (
    STATE_CLOSED,
    STATE_DISABLED,
    STATE_FORCED_OPEN,
    STATE_HALF_OPEN,
    STATE_OPEN,
    STATES,
    CircuitBreakerState,
    CircuitClosedState,
    CircuitDisabledState,
    CircuitForcedOpenState,
    CircuitHalfOpenState,
    CircuitOpenState,
)
from ._storage import CircuitBreakerStorage, CircuitMemoryStorage, Conflict, Entry, Storage, Written

__all__ = (
    "CircuitBreaker",
    "CircuitBreakerListener",
    "CircuitBreakerError",
    "CircuitMemoryStorage",
    "CircuitRedisStorage",
    "RedisStorage",
    "STATE_OPEN",
    "STATE_CLOSED",
    "STATE_HALF_OPEN",
    "STATE_FORCED_OPEN",
    "STATE_DISABLED",
    "STATES",
    "CircuitBreakerState",
    "CircuitClosedState",
    "CircuitOpenState",
    "CircuitHalfOpenState",
    "CircuitForcedOpenState",
    "CircuitDisabledState",
    "CircuitBreakerStorage",
    "Storage",
    "Entry",
    "Written",
    "Conflict",
    "StorageError",
    "BreakerError",
    "ManualClock",
    "Permit",
    "Snapshot",
    "StateChange",
)
