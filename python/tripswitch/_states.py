"""States as pybreaker names them, and the state objects its listeners receive."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from . import _native

if TYPE_CHECKING:
    from ._breaker import CircuitBreaker

STATE_CLOSED = "closed"
STATE_OPEN = "open"
STATE_HALF_OPEN = "half-open"
STATE_FORCED_OPEN = "forced-open"
STATE_DISABLED = "disabled"

#: Every state name, as the component spells them.
STATES = tuple(_native.STATES)


def check_state(value: object, argument: str) -> str:
    """`value` as a state name, or a TypeError / ValueError naming `argument`."""
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a state name (str), not {type(value).__name__}")
    if value not in STATES:
        raise ValueError(f"{argument}: unknown state {value!r}; expected one of {', '.join(STATES)}")
    return value


class CircuitBreakerState:
    """A state a breaker was in, as listeners and `CircuitBreaker.state` see it."""

    def __init__(
        self,
        cb: CircuitBreaker,
        name: str,
        reason: Optional[str] = None,
        remote: bool = False,
        at_ms: Optional[int] = None,
    ) -> None:
        self._breaker = cb
        self._name = name
        self.reason = reason
        """Why the breaker entered this state (`tripped`, `trial-failed`, ...; None if unknown)."""
        self.remote = remote
        """Whether another instance or process made the change."""
        self.at_ms = at_ms
        """When the breaker entered this state, in Unix ms (None if unknown)."""

    @property
    def name(self) -> str:
        """The state's name: `closed`, `open`, `half-open`, `forced-open` or `disabled`."""
        return self._name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CircuitBreakerState):
            return self._name == other._name
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name}>"


class CircuitClosedState(CircuitBreakerState):
    """Closed: calls run and failures are counted."""


class CircuitOpenState(CircuitBreakerState):
    """Open: calls are refused until the reset timeout elapses."""


class CircuitHalfOpenState(CircuitBreakerState):
    """Half-open: a limited number of trial calls run."""


class CircuitForcedOpenState(CircuitBreakerState):
    """Forced open by an operator: every call is refused."""


class CircuitDisabledState(CircuitBreakerState):
    """Disabled by an operator: every call runs and nothing is recorded."""


_CLASSES = dict(
    zip(
        STATES,
        (
            CircuitClosedState,
            CircuitOpenState,
            CircuitHalfOpenState,
            CircuitForcedOpenState,
            CircuitDisabledState,
        ),
    )
)


def state_object(
    cb: CircuitBreaker,
    name: str,
    reason: Optional[str] = None,
    remote: bool = False,
    at_ms: Optional[int] = None,
) -> CircuitBreakerState:
    """The state object for the state named `name`."""
    return _CLASSES.get(name, CircuitBreakerState)(cb, name, reason, remote, at_ms)
