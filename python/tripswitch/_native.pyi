"""Type stubs for tripswitch._native, the Rust host as an extension module."""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

STATES: List[str]
ACTIONS: List[str]
REDIS_COMPARE_AND_SWAP_SCRIPT: str

def redis_key(namespace: str, name: str) -> str:
    """The Redis key of a breaker, as the Rust RedisStorage spells it."""

class StorageError(Exception):
    """The breaker's storage failed (and no fallback state could answer)."""

class BreakerError(Exception):
    """The breaker itself failed: a corrupt record, contention, or the component."""

class ConfigError(ValueError):
    """The component refused a knob; args are (field, reason)."""

class ManualClock:
    """A clock that moves only when told, in Unix milliseconds."""

    def __init__(self, start_ms: int = 0) -> None: ...
    def advance(self, ms: int) -> None:
        """Moves the clock forward by `ms`."""
    def set(self, now_ms: int) -> None:
        """Sets the clock to `now_ms`."""
    @property
    def now_ms(self) -> int:
        """What the clock reads, in Unix ms."""

class MemoryStorage:
    """Memory in this process, kept in Rust."""

    def __init__(self) -> None: ...
    def keys(self) -> List[str]:
        """The keys stored, sorted."""

class Entry:
    """A stored record and its version."""

    version: int
    data: bytes
    def __init__(self, version: int, data: bytes) -> None: ...

class Written:
    """A compare-and-swap that wrote, with the key's new version."""

    version: int
    def __init__(self, version: int) -> None: ...

class Conflict:
    """A compare-and-swap that did not write, with the key's current entry."""

    current: Optional[Entry]
    def __init__(self, current: Optional[Entry] = None) -> None: ...

class Snapshot:
    """A breaker's state as seen at one instant (times in Unix ms, durations in ms)."""

    state: str
    failures: int
    successes: int
    opened_at_ms: Optional[int]
    trials_in_flight: int
    generation: int
    retry_after_ms: Optional[int]
    version: int
    window_calls: int
    window_failures: int
    window_slow_calls: int
    failure_rate: Optional[float]
    slow_call_rate: Optional[float]
    open_duration_ms: Optional[int]
    retry_at_ms: Optional[int]

class StateChange:
    """One state transition, as the component told it."""

    previous: str
    current: str
    at_ms: int
    generation: int
    reason: str
    remote: bool

class Refusal:
    """Why the breaker did not let a call run."""

    kind: str
    state: str
    retry_after_ms: Optional[int]
    message: str

class Permit:
    """The right to make one call; unreported, it records `ignored` when collected."""

    @property
    def is_trial(self) -> bool:
        """Whether this is a half-open trial."""
    @property
    def degraded(self) -> Optional[str]:
        """Why the call was admitted though the storage failed (None: it answered)."""
    def success(self, quiet: bool = False) -> bool:
        """Records a success; returns whether it opened the circuit."""
    def failure(self, quiet: bool = False) -> bool:
        """Records a failure; returns whether it opened the circuit."""
    def ignore(self, quiet: bool = False) -> None:
        """Records nothing and frees a trial slot."""
    def success_async(self, quiet: bool = False) -> Pending:
        """`success` as an operation the event loop steps."""
    def failure_async(self, quiet: bool = False) -> Pending:
        """`failure` as an operation the event loop steps."""
    def ignore_async(self, quiet: bool = False) -> Pending:
        """`ignore` as an operation the event loop steps."""

class Pending:
    """A breaker operation the event loop steps (over a storage whose methods are coroutines)."""

    def step(self) -> Tuple[bool, Any]:
        """(True, result) when it ended; (False, awaitable) to await and give back."""
    def give(self, value: Any) -> None:
        """What the awaited storage step returned."""
    def fail(self, message: str) -> None:
        """The awaited storage step raised: its message."""

class Breaker:
    """A named breaker on a storage."""

    def __init__(
        self,
        name: str,
        config: Dict[str, Any],
        storage: Any = None,
        clock: Optional[ManualClock] = None,
        on_change: Optional[Callable[[StateChange], None]] = None,
        on_error: Optional[Callable[[Exception], None]] = None,
        on_notice: Optional[Callable[[Tuple[str, str]], None]] = None,
    ) -> None: ...
    @property
    def name(self) -> str:
        """The breaker's name (its key in the storage)."""
    @property
    def may_block(self) -> bool:
        """Whether the storage may wait on I/O."""
    @property
    def python_storage(self) -> bool:
        """Whether the storage is written in Python."""
    @property
    def awaits(self) -> bool:
        """Whether the storage's methods are coroutines (reached through the *_async methods)."""
    def acquire(self) -> Union[Permit, Refusal]:
        """A permit, or a refusal when the call may not run."""
    def acquire_async(self) -> Pending:
        """`acquire` as an operation the event loop steps."""
    def snapshot_async(self) -> Pending:
        """`snapshot` as an operation the event loop steps."""
    def operate_async(self, action: str) -> Pending:
        """`operate` as an operation the event loop steps."""
    def config(self) -> Dict[str, Any]:
        """The configuration as the component resolved it: every default filled in."""
    def snapshot(self) -> Snapshot:
        """The breaker's state now, read from the storage."""
    def operate(self, action: str) -> None:
        """Operator: applies `action` now."""
    def flush(self) -> None:
        """Merges the window outcomes held in memory into the record now."""

class RedisStorage:
    """Redis reached from Rust (standalone or cluster), with no GIL while it works."""

    def __init__(
        self,
        nodes: List[str],
        namespace: str,
        fallback_state: Optional[str],
        cluster: bool,
        connect_timeout_ms: int,
        response_timeout_ms: int,
        master_name: Optional[str] = None,
        tls_ca: Optional[str] = None,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
    ) -> None: ...
    def key(self, name: str) -> str:
        """The Redis key that holds the breaker named `name`."""
    def breakers(self) -> List[str]:
        """The names of the breakers stored in this namespace, sorted."""
