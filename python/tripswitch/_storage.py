"""Where breakers keep their state: the two-method contract, memory, and
pybreaker's storage class (refused, with how to port it)."""

from __future__ import annotations

from typing import Any, Optional, Union

from . import _native
from ._states import STATE_CLOSED, check_state

Entry = _native.Entry
Written = _native.Written
Conflict = _native.Conflict


class Storage:
    """A versioned register per key, in which breakers keep their records.

    Implement `load` and `compare_and_swap`: `load(key)` returns the key's
    `Entry(version, data)` or None; `compare_and_swap(key, expected, data)`
    writes `data` only if the key's version is still `expected` (None: the
    key must be absent) and returns `Written(new_version)`, or else
    `Conflict(current_entry_or_None)`. Versions must grow with every write to
    a key and never repeat, even after the key is removed. An exception
    either method raises is a storage failure: the breaker's fallback state
    answers. Both run on the calling thread, with the GIL.

    A storage that can tell a key's version without I/O may also define
    `peek_version(key) -> int | None` (None: absent); breakers then reuse
    answers while the version stays, as they do on memory.
    """

    #: What breakers on this storage do while it fails, unless a breaker says
    #: otherwise (a state name; None: the component's default).
    fallback_state: Optional[str] = None

    #: The state a breaker takes when its key is absent (pybreaker's `state`).
    initial_state: str = STATE_CLOSED

    def load(self, key: str) -> Optional[Entry]:
        """The key's entry, or None when it is absent."""
        raise NotImplementedError(f"{type(self).__name__}.load")

    def compare_and_swap(self, key: str, expected: Optional[int], data: bytes) -> Union[Written, Conflict]:
        """Writes `data` under `key` if its version is `expected`."""
        raise NotImplementedError(f"{type(self).__name__}.compare_and_swap")

    def _native_storage(self) -> Any:
        """What the extension is handed: this object, called back with the GIL."""
        return self


class CircuitMemoryStorage(Storage):
    """Memory in this process, kept in Rust (no GIL while it works); breakers
    given one storage share it, each under its own name."""

    def __init__(self, state: str = STATE_CLOSED) -> None:
        self.initial_state = check_state(state, "state")
        self._memory = _native.MemoryStorage()

    def _native_storage(self) -> Any:
        return self._memory

    def keys(self) -> list:
        """The breaker names stored, sorted."""
        return self._memory.keys()


class CircuitBreakerStorage:
    """pybreaker's storage interface (state, counters and opened_at, set one
    by one), which cannot be made atomic across processes. tripswitch refuses
    subclasses of it: port one to `Storage` (`load` and `compare_and_swap`)."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        """The storage's name."""
        return self._name


def native_storage(storage: Any) -> Any:
    """What the extension takes for a breaker's `state_storage`; a TypeError
    that says how to port a pybreaker-style storage."""
    if isinstance(storage, Storage):
        return storage._native_storage()
    if isinstance(storage, CircuitBreakerStorage):
        raise TypeError(
            f"state_storage: {type(storage).__name__} is a pybreaker-style CircuitBreakerStorage "
            "(state, counters and opened_at written one by one), which cannot be made atomic. "
            "Port it to tripswitch.Storage: implement load(key) -> Entry | None and "
            "compare_and_swap(key, expected, data) -> Written | Conflict over one versioned "
            "value per key (see the README, 'Custom storages')"
        )
    raise TypeError(
        f"state_storage must be a tripswitch.Storage (CircuitMemoryStorage, CircuitRedisStorage "
        f"or a subclass of Storage), not {type(storage).__name__}"
    )
