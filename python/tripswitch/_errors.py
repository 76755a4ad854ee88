"""The error a refused or tripping call raises."""

from __future__ import annotations

from typing import Optional


class CircuitBreakerError(Exception):
    """The breaker refused the call, or (with `throw_new_error_on_trip`) the
    call's failure opened the circuit; then the call's own error is the cause."""

    def __init__(
        self,
        message: str,
        *,
        reason: Optional[str] = None,
        state: Optional[str] = None,
        retry_after_ms: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        """Why: `open`, `half-open-full`, `forced-open`, `storage-unavailable`, or `tripped`."""
        self.state = state
        """The state that refused the call (the fallback state when the storage failed)."""
        self.retry_after_ms = retry_after_ms
        """Milliseconds until a call can be admitted, when that is known."""

    @property
    def retry_after(self) -> Optional[float]:
        """Seconds until a call can be admitted, when that is known."""
        return None if self.retry_after_ms is None else self.retry_after_ms / 1000
