"""pybreaker's listener: override the hooks you need."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from ._breaker import CircuitBreaker
    from ._states import CircuitBreakerState


class CircuitBreakerListener:
    """Hears a breaker's calls and transitions; every hook does nothing unless overridden.

    On a trip the order is before_call, failure, state_change; on a trial
    that closes the circuit it is state_change (open to half-open),
    before_call, state_change (half-open to closed), success. An exception a
    hook raises escapes to the caller, except from state_change and error,
    which go to `sys.unraisablehook`.
    """

    def before_call(self, cb: CircuitBreaker, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """`cb` admitted a call and is about to run `func`."""

    def failure(self, cb: CircuitBreaker, exc: BaseException) -> None:
        """A call through `cb` failed with `exc`."""

    def success(self, cb: CircuitBreaker) -> None:
        """A call through `cb` succeeded (or failed with an excluded exception)."""

    def state_change(
        self,
        cb: CircuitBreaker,
        old_state: Optional[CircuitBreakerState],
        new_state: CircuitBreakerState,
    ) -> None:
        """`cb` changed state (told once per change, wherever it was made)."""

    def error(self, cb: CircuitBreaker, error: Exception) -> None:
        """`cb` failed where no caller could be told: a result that could not be
        recorded (a BreakerError), or the start of a storage outage (a
        StorageError, once per outage). tripswitch's hook."""

    def notice(self, cb: CircuitBreaker, kind: str, message: str) -> None:
        """`cb` did something besides changing state, told by the process that
        did it: `kind` is 'window-restarted' (another config's window shape
        replaced the stored one, left unwritten for a minute). Also logged on the "tripswitch" logger.
        tripswitch's hook."""
