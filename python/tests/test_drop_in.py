"""pybreaker's own README, run as written but for its first line
(`import tripswitch as pybreaker`), on a real redis-server: the drop-in
promise, checked."""

from __future__ import annotations

import textwrap

PROGRAM = textwrap.dedent(
    '''
    import tripswitch as pybreaker
    import redis

    events = []

    class CustomerValidationError(Exception):
        pass

    class HTTPError(Exception):
        def __init__(self, status_code):
            self.status_code = status_code

    db_breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)

    @db_breaker
    def update_customer(cust):
        if cust == "invalid":
            raise CustomerValidationError(cust)
        if cust == "down":
            raise ConnectionError("database down")
        return f"updated {cust}"

    class DBListener(pybreaker.CircuitBreakerListener):
        "Listener used by circuit breakers that execute database operations."

        def before_call(self, cb, func, *args, **kwargs):
            "Called before the circuit breaker `cb` calls `func`."
            events.append(("before", func.__name__))

        def state_change(self, cb, old_state, new_state):
            "Called when the circuit breaker `cb` state changes."
            events.append(("state", old_state.name, new_state.name))

        def failure(self, cb, exc):
            "Called when a function invocation raises a system error."
            events.append(("failure", type(exc).__name__))

        def success(self, cb):
            "Called when a function invocation succeeds."
            events.append(("success",))

    class LogListener(pybreaker.CircuitBreakerListener):
        "Listener used to log circuit breaker events."

        def state_change(self, cb, old_state, new_state):
            msg = "State Change: CB: {0}, New State: {1}".format(cb.name, new_state.name)
            events.append(("log", msg))

    db_breaker = pybreaker.CircuitBreaker(
        fail_max=5,
        reset_timeout=60,
        exclude=[CustomerValidationError, lambda e: type(e) == HTTPError and e.status_code < 500],
        listeners=[DBListener(), LogListener()],
        name="customers",
        state_storage=pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, redis.StrictRedis(port=PORT), namespace="shop"
        ),
    )
    db_breaker.add_excluded_exception(KeyError)

    @db_breaker
    def update_customer(cust):
        if cust == "invalid":
            raise CustomerValidationError(cust)
        if cust == "down":
            raise ConnectionError("database down")
        return f"updated {cust}"

    def load_customer(cust):
        return f"loaded {cust}"

    assert db_breaker.call(load_customer, "ann") == "loaded ann"
    with db_breaker.calling():
        pass
    try:
        update_customer("invalid")
    except CustomerValidationError:
        pass
    for _ in range(5):
        try:
            update_customer("down")
        except (ConnectionError, pybreaker.CircuitBreakerError) as e:
            last = e
    assert isinstance(last, pybreaker.CircuitBreakerError)
    assert db_breaker.current_state == pybreaker.STATE_OPEN
    assert db_breaker.fail_counter == 5
    try:
        update_customer("bob")
    except pybreaker.CircuitBreakerError:
        pass
    else:
        raise AssertionError("an open breaker ran the call")
    db_breaker.close()
    assert db_breaker.current_state == pybreaker.STATE_CLOSED
    db_breaker.half_open()
    db_breaker.open()
    '''
)


def test_pybreakers_readme_runs_with_tripswitch_imported_as_pybreaker(redis_server) -> None:
    scope = {"PORT": redis_server.port}
    exec(compile(PROGRAM, "pybreaker-readme", "exec"), scope)
    events = scope["events"]
    assert events[:4] == [("before", "load_customer"), ("success",), ("before", "_calling_block"), ("success",)]
    assert ("log", "State Change: CB: customers, New State: open") in events
    assert events.count(("failure", "ConnectionError")) == 5
    assert [e for e in events if e[0] == "state"] == [
        ("state", "closed", "open"),
        ("state", "open", "closed"),
        ("state", "closed", "half-open"),
        ("state", "half-open", "open"),
    ]
