"""pybreaker's CircuitBreaker on the tripswitch component: the same names
and behaviours, with its known bugs fixed. Every decision is the
component's; this class converts, runs the guarded call, and tells the
listeners."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import inspect
import logging
import threading
import types
import weakref
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

from . import _knobs, _native
from ._errors import CircuitBreakerError
from ._listener import CircuitBreakerListener
from ._states import (
    STATE_CLOSED,
    STATE_DISABLED,
    STATE_FORCED_OPEN,
    STATE_HALF_OPEN,
    STATE_OPEN,
    CircuitBreakerState,
    state_object,
)
from ._storage import CircuitMemoryStorage, Storage, native_storage

T = TypeVar("T")
Exclusion = Union[type, Callable[[BaseException], bool]]

logger = logging.getLogger("tripswitch")

#: The operator action that puts an absent breaker in a storage's initial state.
_ENTER = {
    STATE_OPEN: "open",
    STATE_HALF_OPEN: "half-open",
    STATE_FORCED_OPEN: "force-open",
    STATE_DISABLED: "disable",
}

_TRIPPED = "Failures threshold reached, circuit breaker opened"
_TRIAL_FAILED = "Trial call failed, circuit breaker opened"
_STILL_OPEN = "Timeout not elapsed yet, circuit breaker still open"


#: Every breaker alive, so that what they hold is merged before the interpreter exits.
_LIVE: "weakref.WeakSet[CircuitBreaker]" = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for breaker in list(_LIVE):
        try:
            breaker.flush()
        except Exception as error:  # noqa: BLE001 - nothing left to raise to
            logger.warning("breaker %r: held outcomes not merged at exit: %s", breaker._breaker.name, error)


def _knob(argument: str, doc: str) -> Any:
    """A settable property for a knob: setting it rebuilds the breaker on the same storage."""

    def get(self: "CircuitBreaker") -> Any:
        value = self._knobs.get(argument)
        if value is None:
            # The component's default, as it resolved it.
            value = _knobs.effective(argument, self._breaker.config())
        return value

    def set(self: "CircuitBreaker", value: Any) -> None:
        self._rebuild(argument, value)

    return property(get, set, doc=doc)


def _calling_block() -> None:
    """What listeners' before_call receive as `func` for a `calling()` block."""


class CircuitBreaker:
    """A circuit breaker named `name` (default `default`), its state in
    `state_storage` (default: memory of its own).

    pybreaker's arguments keep their names and order; a knob left None takes
    the component's default (fail_max 5, reset_timeout 60 s, success_threshold
    1). The keyword-only knobs are tripswitch's: trial limits and timeouts,
    the fallback state, failure-rate and slow-call windows, backoff, and how
    long window outcomes may be held before one write (`flush_interval`).
    Times are in seconds (int, float or timedelta).
    """

    def __init__(
        self,
        fail_max: Optional[int] = None,
        reset_timeout: Optional[float] = None,
        success_threshold: Optional[int] = None,
        exclude: Optional[Iterable[Exclusion]] = None,
        listeners: Optional[Sequence[CircuitBreakerListener]] = None,
        state_storage: Optional[Storage] = None,
        name: Optional[str] = None,
        throw_new_error_on_trip: bool = True,
        *,
        half_open_max_calls: Optional[int] = None,
        trial_timeout: Optional[float] = None,
        fallback_state: Optional[str] = None,
        failure_rate_threshold: Optional[int] = None,
        minimum_calls: Optional[int] = None,
        window: Optional[float] = None,
        window_calls: Optional[int] = None,
        slow_call: Optional[float] = None,
        slow_call_rate_threshold: Optional[int] = None,
        backoff_multiplier: Optional[float] = None,
        max_reset_timeout: Optional[float] = None,
        flush_interval: Optional[float] = None,
        clock: Optional[_native.ManualClock] = None,
    ) -> None:
        knobs = {argument: value for argument, value in locals().items() if argument in _knobs.ARGUMENTS}
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        if not isinstance(throw_new_error_on_trip, bool):
            raise TypeError(f"throw_new_error_on_trip must be a bool, not {type(throw_new_error_on_trip).__name__}")
        if clock is not None and not isinstance(clock, _native.ManualClock):
            raise TypeError(f"clock must be a tripswitch.ManualClock or None, not {type(clock).__name__}")
        self._storage = CircuitMemoryStorage() if state_storage is None else state_storage
        self._native_storage = native_storage(self._storage)
        self._excluded: List[Exclusion] = []
        self.add_excluded_exceptions(*(exclude or ()))
        self._listeners: List[CircuitBreakerListener] = []
        self.add_listeners(*(listeners or ()))
        self._name = name
        self._throw_new_error_on_trip = throw_new_error_on_trip
        self._clock = clock
        self._knobs = knobs
        self._config = _knobs.to_config(knobs)
        self._breaker = self._build()
        # This process's reports to a storage written in Python go one at a
        # time: threads of one process then do not race each other's
        # compare-and-swap (a conflict costs a round trip and the GIL).
        self._writes = threading.RLock() if self._breaker.python_storage else None
        # A storage to await is first reached by a call_async.
        self._initial_pending = self._breaker.awaits
        self._initial_task: Optional[asyncio.Future] = None
        if not self._initial_pending:
            self._enter_initial_state()
        _LIVE.add(self)

    # -- building -----------------------------------------------------------

    def _build(self) -> _native.Breaker:
        this = weakref.ref(self)

        def on_change(change: _native.StateChange) -> None:
            breaker = this()
            if breaker is not None:
                breaker._tell_change(change)

        def on_error(error: Exception) -> None:
            breaker = this()
            if breaker is not None:
                breaker._tell_error(error)

        def on_notice(notice: Tuple[str, str]) -> None:
            breaker = this()
            if breaker is not None:
                breaker._tell_notice(*notice)

        try:
            return _native.Breaker(
                self._name if self._name is not None else "default",
                self._config,
                self._native_storage,
                self._clock,
                on_change,
                on_error,
                on_notice,
            )
        except _native.ConfigError as refused:
            field, reason = refused.args
            argument = _knobs.argument_of(field) or field
            raise ValueError(f"{argument}: {reason}") from None

    def _enter_initial_state(self) -> None:
        action = _ENTER.get(self._storage.initial_state)
        if action is None:
            return
        try:
            if self._breaker.snapshot().version == 0:
                self._breaker.operate(action)
        except _native.StorageError as error:
            logger.warning("breaker %r: initial state not applied: %s", self._breaker.name, error)

    async def _enter_initial_state_async(self) -> None:
        """Applies the storage's initial state once, before any call (every
        concurrent first call waits for the one task that applies it)."""
        task = self._initial_task
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = self._initial_task = asyncio.ensure_future(self._apply_initial_state())
        await asyncio.shield(task)
        self._initial_pending = False

    async def _apply_initial_state(self) -> None:
        action = _ENTER.get(self._storage.initial_state)
        if action is None:
            return
        try:
            if (await _drive(self._breaker.snapshot_async())).version == 0:
                await _drive(self._breaker.operate_async(action))
        except _native.StorageError as error:
            logger.warning("breaker %r: initial state not applied: %s", self._breaker.name, error)

    def _rebuild(self, argument: str, value: Any) -> None:
        knobs = dict(self._knobs, **{argument: value})
        config = _knobs.to_config(knobs)
        self._knobs, self._config = knobs, config
        self._breaker = self._build()

    # -- knobs (pybreaker's properties) ---------------------------------------

    fail_max = _knob("fail_max", "Consecutive failures that open the circuit (the component's default unless set; None when a failure-rate rule replaces it).")
    reset_timeout = _knob("reset_timeout", "Seconds the circuit stays open before a trial (the component's default unless set).")
    success_threshold = _knob("success_threshold", "Trial successes that close the circuit (the component's default unless set).")

    @property
    def name(self) -> Optional[str]:
        """The name given (None: the breaker is stored as `default`)."""
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        self._name = name
        self._breaker = self._build()

    # -- state ----------------------------------------------------------------

    def snapshot(self) -> _native.Snapshot:
        """The breaker's state now, read from the storage (times in Unix ms)."""
        return self._breaker.snapshot()

    async def snapshot_async(self) -> _native.Snapshot:
        """`snapshot`, awaiting the storage: the way to read a breaker whose
        storage's methods are coroutines (any storage works)."""
        if not self._breaker.awaits:
            return self.snapshot()
        return await _drive(self._breaker.snapshot_async())

    @property
    def current_state(self) -> str:
        """The effective state's name: an open circuit whose timeout elapsed reads half-open."""
        return self._breaker.snapshot().state

    @property
    def state(self) -> CircuitBreakerState:
        """The effective state, as a state object with `.name`."""
        return state_object(self, self.current_state)

    @state.setter
    def state(self, state_str: str) -> None:
        action = _ENTER.get(state_str, "close" if state_str == STATE_CLOSED else None)
        if action is None:
            raise ValueError(f"unknown state {state_str!r}")
        self._breaker.operate(action)

    @property
    def fail_counter(self) -> int:
        """Consecutive failures counted while closed."""
        return self._breaker.snapshot().failures

    @property
    def success_counter(self) -> int:
        """Trial successes counted in this half-open period."""
        return self._breaker.snapshot().successes

    def open(self) -> bool:
        """Operator: opens the circuit now; returns `throw_new_error_on_trip`, as pybreaker's does."""
        self._breaker.operate("open")
        return self._throw_new_error_on_trip

    def half_open(self) -> None:
        """Operator: moves the circuit to half-open, admitting trials."""
        self._breaker.operate("half-open")

    def close(self) -> None:
        """Operator: closes the circuit and resets its counters."""
        self._breaker.operate("close")

    def force_open(self) -> None:
        """Operator: refuses every call until another operator action."""
        self._breaker.operate("force-open")

    def disable(self) -> None:
        """Operator: admits every call and records nothing until another operator action."""
        self._breaker.operate("disable")

    def flush(self) -> None:
        """Merges the window outcomes held in memory into the record now."""
        self._breaker.flush()

    # -- exclusions -----------------------------------------------------------

    @property
    def excluded_exceptions(self) -> tuple:
        """The exception types and predicates that count as successes."""
        return tuple(self._excluded)

    def add_excluded_exception(self, exception: Exclusion) -> None:
        """Counts exceptions of this type (or for which this predicate is true) as successes."""
        if not (isinstance(exception, type) and issubclass(exception, BaseException)) and not callable(exception):
            raise TypeError(f"exclude: {exception!r} is neither an exception type nor a predicate")
        self._excluded.append(exception)

    def add_excluded_exceptions(self, *exceptions: Exclusion) -> None:
        """Adds each exception type or predicate."""
        for exception in exceptions:
            self.add_excluded_exception(exception)

    def remove_excluded_exception(self, exception: Exclusion) -> None:
        """Stops excluding an exception type or predicate."""
        self._excluded.remove(exception)

    def is_system_error(self, exception: BaseException) -> bool:
        """Whether `exception` counts as a failure (it is not excluded)."""
        for exclusion in self._excluded:
            if isinstance(exclusion, type):
                if isinstance(exception, exclusion):
                    return False
            elif exclusion(exception):
                return False
        return True

    # -- listeners ------------------------------------------------------------

    @property
    def listeners(self) -> tuple:
        """The listeners, in the order they hear events."""
        return tuple(self._listeners)

    def add_listener(self, listener: CircuitBreakerListener) -> None:
        """Adds a listener."""
        if not all(callable(getattr(listener, hook, None)) for hook in ("before_call", "failure", "success", "state_change")):
            raise TypeError(
                f"listeners: {listener!r} lacks CircuitBreakerListener's hooks (subclass CircuitBreakerListener)"
            )
        self._listeners.append(listener)

    def add_listeners(self, *listeners: CircuitBreakerListener) -> None:
        """Adds each listener."""
        for listener in listeners:
            self.add_listener(listener)

    def remove_listener(self, listener: CircuitBreakerListener) -> None:
        """Removes a listener."""
        self._listeners.remove(listener)

    def _tell_change(self, change: _native.StateChange) -> None:
        old = state_object(self, change.previous)
        new = state_object(self, change.current, change.reason, change.remote, change.at_ms)
        for listener in list(self._listeners):
            listener.state_change(self, old, new)

    def _tell_notice(self, kind: str, message: str) -> None:
        logger.warning("%s", message, extra={"tripswitch_notice": kind})
        for listener in list(self._listeners):
            hook = getattr(listener, "notice", None)
            if hook is not None:
                hook(self, kind, message)

    def _tell_error(self, error: Exception) -> None:
        logger.warning("breaker %r: %s", self._breaker.name, error)
        for listener in list(self._listeners):
            hook = getattr(listener, "error", None)
            if hook is not None:
                hook(self, error)

    # -- calls ----------------------------------------------------------------

    def acquire(self) -> _native.Permit:
        """Asks to make a call: a permit to report with success(), failure() or
        ignore() (collected unreported, it records ignored); CircuitBreakerError
        when the call may not run. Listeners are not told (tripswitch's permit API)."""
        answer = self._breaker.acquire()
        if type(answer) is _native.Refusal:
            raise self._refused(answer)
        return answer

    def _refused(self, refusal: _native.Refusal) -> CircuitBreakerError:
        if refusal.kind == "open":
            message = f"{_STILL_OPEN}; retry after {refusal.retry_after_ms / 1000:g} s"
        else:
            message = refusal.message
        return CircuitBreakerError(
            message, reason=refusal.kind, state=refusal.state, retry_after_ms=refusal.retry_after_ms
        )

    def _admit(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> _native.Permit:
        permit = self.acquire()
        self._before_call(permit, func, args, kwargs)
        return permit

    def _before_call(self, permit: _native.Permit, func: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        """Tells the listeners; one that raises frees the permit."""
        try:
            for listener in self._listeners:
                listener.before_call(self, func, *args, **kwargs)
        except BaseException:
            permit.ignore(quiet=True)
            raise

    def _report(self, report: Callable[[bool], Any]) -> Any:
        """Runs a permit's report, one at a time for a storage written in Python."""
        if self._writes is None:
            return report(True)
        with self._writes:
            return report(True)

    def _succeeded(self, permit: _native.Permit) -> None:
        self._report(permit.success)
        for listener in self._listeners:
            listener.success(self)

    def _verdict(self, exc: BaseException) -> str:
        """What a raised exception counts as: `ignore`, `success` or `failure`."""
        if not isinstance(exc, Exception):
            # Cancelled, interrupted or exiting: the call did not finish.
            return "ignore"
        if self._excluded and not self.is_system_error(exc):
            return "success"
        return "failure"

    def _trip_error(self, permit: _native.Permit, tripped: bool) -> Optional[CircuitBreakerError]:
        """The error a failure that opened the circuit raises instead of its own, if any."""
        if tripped and self._throw_new_error_on_trip:
            message = _TRIAL_FAILED if permit.is_trial else _TRIPPED
            return CircuitBreakerError(message, reason="tripped", state=STATE_OPEN)
        return None

    def _failed(self, permit: _native.Permit, exc: BaseException) -> Optional[CircuitBreakerError]:
        """Records a raised exception; the error to raise instead of it, if any."""
        verdict = self._verdict(exc)
        if verdict == "ignore":
            permit.ignore(quiet=True)
            return None
        if verdict == "success":
            self._succeeded(permit)
            return None
        if self._listeners:
            try:
                for listener in self._listeners:
                    listener.failure(self, exc)
            finally:
                tripped = self._report(permit.failure)
        elif self._writes is None:
            tripped = permit.failure(True)
        else:
            tripped = self._report(permit.failure)
        return self._trip_error(permit, tripped)

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Calls `func(*args, **kwargs)` if the breaker admits it, and records what became of it."""
        # The hot path, written out: each Python call it saves is ~50 ns.
        permit = self._breaker.acquire()
        if type(permit) is _native.Refusal:
            raise self._refused(permit)
        if self._listeners:
            self._before_call(permit, func, args, kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            error = self._failed(permit, exc)
            if error is not None:
                raise error from exc
            raise
        if type(result) is types.GeneratorType:
            return self._guarded(permit, result)  # type: ignore[return-value]
        if self._writes is None:
            permit.success(True)
        else:
            self._report(permit.success)
        if self._listeners:
            for listener in self._listeners:
                listener.success(self)
        return result

    def _guarded(self, permit: _native.Permit, generator: Iterator[Any]) -> Any:
        """A generator's outcome is known when it finishes (closed early: ignored)."""
        try:
            value = yield from generator
        except BaseException as exc:
            error = self._failed(permit, exc)
            if error is not None:
                raise error from exc
            raise
        self._succeeded(permit)
        return value

    async def call_async(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Awaits `func(*args, **kwargs)` if the breaker admits it, and records
        what became of it; a cancelled call records nothing. A storage whose
        methods are coroutines is awaited on this event loop; a blocking one
        other than memory runs on a worker thread, off the event loop."""
        if self._breaker.awaits:
            return await self._call_awaiting(func, args, kwargs)
        offload = self._breaker.may_block
        permit = await asyncio.to_thread(self.acquire) if offload else self.acquire()
        self._before_call(permit, func, args, kwargs)
        try:
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            if offload:
                error = await _finish(asyncio.to_thread(self._failed, permit, exc))
            else:
                error = self._failed(permit, exc)
            if error is not None:
                raise error from exc
            raise
        if offload:
            await _finish(asyncio.to_thread(self._report, permit.success))
        else:
            self._report(permit.success)
        for listener in self._listeners:
            listener.success(self)
        return result

    async def _call_awaiting(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """`call_async` over a storage whose methods are coroutines: every
        storage step is awaited here, on the caller's loop, with no thread."""
        if self._initial_pending:
            await self._enter_initial_state_async()
        acquiring = asyncio.ensure_future(_drive(self._breaker.acquire_async()))
        try:
            answer = await asyncio.shield(acquiring)
        except asyncio.CancelledError:
            # Cancelled while asking: a permit it got frees its slot (and
            # the cancellation, not a storage error, is what the caller sees).
            with contextlib.suppress(Exception):
                answer = await acquiring
                if type(answer) is not _native.Refusal:
                    await _drive(answer.ignore_async(True))
            raise
        if type(answer) is _native.Refusal:
            raise self._refused(answer)
        permit = answer
        try:
            for listener in self._listeners:
                listener.before_call(self, func, *args, **kwargs)
        except BaseException:
            await _finish(_drive(permit.ignore_async(True)))
            raise
        try:
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            error = await _finish(self._failed_awaiting(permit, exc))
            if error is not None:
                raise error from exc
            raise
        await _finish(_drive(permit.success_async(True)))
        for listener in self._listeners:
            listener.success(self)
        return result

    async def _failed_awaiting(self, permit: _native.Permit, exc: BaseException) -> Optional[CircuitBreakerError]:
        """`_failed`, awaiting the storage."""
        verdict = self._verdict(exc)
        if verdict == "ignore":
            await _drive(permit.ignore_async(True))
            return None
        if verdict == "success":
            await _drive(permit.success_async(True))
            for listener in self._listeners:
                listener.success(self)
            return None
        try:
            for listener in self._listeners:
                listener.failure(self, exc)
        finally:
            tripped = await _drive(permit.failure_async(True))
        return self._trip_error(permit, tripped)

    @contextlib.contextmanager
    def calling(self) -> Iterator[None]:
        """A context manager: the `with` block runs as one guarded call."""
        permit = self._admit(_calling_block, (), {})
        try:
            yield
        except BaseException as exc:
            error = self._failed(permit, exc)
            if error is not None:
                raise error from exc
            raise
        self._succeeded(permit)

    def __call__(self, *call_args: Any, **call_kwargs: bool) -> Callable:
        """A decorator: `@breaker` (or `@breaker()`) guards a function; an
        `async def` function is guarded with `call_async`."""
        call_async = call_kwargs.pop("__pybreaker_call_async", False)
        if call_kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(call_kwargs)}")

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(func):
                raise TypeError(f"the breaker decorates functions, not {type(func).__name__}")
            if call_async or inspect.iscoroutinefunction(func):

                @functools.wraps(func)
                async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                    return await self.call_async(func, *args, **kwargs)

                return guarded_async

            @functools.wraps(func)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                return self.call(func, *args, **kwargs)

            return guarded

        if call_args:
            return decorate(*call_args)
        return decorate

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._breaker.name!r}>"


async def _drive(pending: _native.Pending) -> Any:
    """Steps a breaker operation on this event loop: each awaitable its
    storage returns is awaited here and its result handed back."""
    while True:
        done, value = pending.step()
        if done:
            return value
        try:
            found = await value
        except Exception as error:  # noqa: BLE001 - a storage failure, as the breaker takes it
            pending.fail(f"{type(error).__name__}: {error}")
        else:
            pending.give(found)


async def _finish(work: Any) -> Any:
    """Awaits `work` to the end even if the awaiting task is cancelled meanwhile."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
