"""CircuitRedisStorage against real redis-server processes: through the
user's redis-py client, one command per healthy call, shared with a Rust
process on the same breaker, and the fallback state while Redis is down."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import redis

import tripswitch as pybreaker
from conftest import START


def boom() -> None:
    raise OSError("down")


def commands(client) -> int:
    """Commands clients have sent to the server (not those scripts ran)."""
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("hmget", "evalsha", "eval"))


def test_a_drop_in_pybreaker_redis_breaker_trips_and_keeps_its_record_in_one_hash(redis_server, clock) -> None:
    client = redis_server.client()
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace="payments")
    cb = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=1, state_storage=storage, name="db", clock=clock)
    with pytest.raises(OSError):
        cb.call(boom)
    with pytest.raises(pybreaker.CircuitBreakerError):
        cb.call(boom)
    assert cb.current_state == "open"
    assert client.keys("*") == [b"{payments:tripswitch:db}"]
    assert sorted(client.hkeys("{payments:tripswitch:db}")) == [b"d", b"v"]
    other = pybreaker.CircuitBreaker(state_storage=pybreaker.CircuitRedisStorage("closed", client), clock=clock)
    assert other.current_state == "closed", "another namespace and name is another breaker"
    assert storage.key("db") == "{payments:tripswitch:db}" and storage.namespace == "payments"
    clock.advance(1_000)
    assert cb.call(lambda: 7) == 7
    assert cb.current_state == "closed"


def test_a_healthy_call_costs_one_command_and_a_failure_two(redis_server, clock) -> None:
    client = redis_server.client()
    cb = pybreaker.CircuitBreaker(
        fail_max=1000, state_storage=pybreaker.CircuitRedisStorage("closed", client), clock=clock
    )
    cb.call(lambda: None)  # creates the key and loads the script
    with pytest.raises(OSError):
        cb.call(boom)
    cb.call(lambda: None)
    before = commands(client)
    for _ in range(100):
        cb.call(lambda: None)
    assert commands(client) - before == 100
    before = commands(client)
    for _ in range(100):
        with pytest.raises(OSError):
            cb.call(boom)
    assert commands(client) - before == 200
    assert cb.fail_counter == 100


def test_the_storages_state_applies_only_when_the_key_is_absent(redis_server, clock) -> None:
    client = redis_server.client()
    first = pybreaker.CircuitBreaker(
        state_storage=pybreaker.CircuitRedisStorage("open", client), name="svc", clock=clock
    )
    assert first.current_state == "open"
    first.close()
    again = pybreaker.CircuitBreaker(
        state_storage=pybreaker.CircuitRedisStorage("open", client), name="svc", clock=clock
    )
    assert again.current_state == "closed", "pybreaker overwrote the shared state here"


def test_threads_on_one_redis_breaker_count_exactly(redis_server, clock) -> None:
    client = redis_server.client()
    cb = pybreaker.CircuitBreaker(
        fail_max=10_000, state_storage=pybreaker.CircuitRedisStorage("closed", client), clock=clock
    )

    def worker() -> None:
        for _ in range(100):
            with pytest.raises(OSError):
                cb.call(boom)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cb.fail_counter == 400


class Worker:
    """A Rust `tripswitch-worker` process on the same Redis breaker."""

    def __init__(self, binary, url: str, namespace: str, name: str, fail_max: int, reset_ms: int) -> None:
        self.process = subprocess.Popen(
            [str(binary), url, namespace, name, str(fail_max), str(reset_ms), "1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, command: str) -> str:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, "the worker exited early"
        return answer.strip()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


def test_a_python_process_and_a_rust_process_share_one_breaker(redis_server, worker_binary) -> None:
    clock = pybreaker.ManualClock(1_000)
    rust = Worker(worker_binary, redis_server.url, "fleet", "payments", fail_max=4, reset_ms=5_000)
    try:
        assert rust.ask("clock 1000") == "ok"
        storage = pybreaker.CircuitRedisStorage("closed", redis_server.client(), namespace="fleet")
        cb = pybreaker.CircuitBreaker(fail_max=4, reset_timeout=5, state_storage=storage, name="payments", clock=clock)
        with pytest.raises(OSError):
            cb.call(boom)
        assert rust.ask("fail") == "failed tripped=false"
        with pytest.raises(OSError):
            cb.call(boom)
        assert rust.ask("state") == "closed failures=3", "the counts add up"
        assert rust.ask("fail") == "failed tripped=true"
        assert cb.current_state == "open"
        with pytest.raises(pybreaker.CircuitBreakerError) as refused:
            cb.call(lambda: None)
        assert refused.value.retry_after == 5.0
        # Both clocks pass the reset timeout: one trial in all.
        clock.set(6_000)
        assert rust.ask("clock 6000") == "ok"
        assert rust.ask("acquire") == "permit trial=true"
        with pytest.raises(pybreaker.CircuitBreakerError) as refused:
            cb.call(lambda: None)
        assert refused.value.reason == "half-open-full", "the Rust process holds the one trial"
        assert rust.ask("success") == "reported Ok(())"
        assert cb.current_state == "closed"
        assert cb.call(lambda: "through") == "through"
    finally:
        rust.close()


def test_with_redis_stopped_the_fallback_state_applies_and_nothing_hangs(redis_server, clock) -> None:
    # redis-py retries a refused connection with backoff unless told not to:
    # the client's own settings hold.
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(
        host="127.0.0.1",
        port=redis_server.port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    admits = pybreaker.CircuitBreaker(state_storage=pybreaker.CircuitRedisStorage("closed", client), clock=clock)
    refuses = pybreaker.CircuitBreaker(
        state_storage=pybreaker.CircuitRedisStorage("closed", client, fallback_circuit_state="open"),
        name="strict",
        clock=clock,
    )
    assert admits.call(lambda: 1) == 1 and refuses.call(lambda: 2) == 2
    redis_server.stop()
    started = time.monotonic()
    for _ in range(20):
        assert admits.call(lambda: 3) == 3
        with pytest.raises(OSError):
            admits.call(boom)
        with pytest.raises(pybreaker.CircuitBreakerError) as refused:
            refuses.call(lambda: 4)
        assert (refused.value.reason, refused.value.state) == ("storage-unavailable", "open")
    # Refused connections answer at once; 60 calls stay far inside one timeout each.
    assert time.monotonic() - started < 30
    assert "Connection" in str(refused.value)


def test_a_cluster_mode_flag_and_bad_clients(redis_server) -> None:
    client = redis_server.client()
    pybreaker.CircuitRedisStorage("closed", client, cluster_mode=True)
    with pytest.raises(TypeError, match="decode_responses"):
        pybreaker.CircuitRedisStorage("closed", redis_server.client(decode_responses=True))
    import redis.asyncio

    with pytest.raises(TypeError, match="redis.asyncio"):
        pybreaker.CircuitRedisStorage("closed", redis.asyncio.Redis(port=redis_server.port))
    with pytest.raises(TypeError, match="redis_object"):
        pybreaker.CircuitRedisStorage("closed", object())
    with pytest.raises(TypeError, match="namespace"):
        pybreaker.CircuitRedisStorage("closed", client, namespace=5)
    with pytest.raises(TypeError, match="cluster_mode"):
        pybreaker.CircuitRedisStorage("closed", client, cluster_mode="yes")
    with pytest.raises(ValueError, match="fallback_circuit_state"):
        pybreaker.CircuitRedisStorage("closed", client, fallback_circuit_state="ajar")


def test_a_zero_timeout_is_refused_by_name(redis_server) -> None:
    for argument in ("connect_timeout", "response_timeout"):
        for zero in (0, 0.0001):
            with pytest.raises(ValueError, match=argument):
                pybreaker.RedisStorage(redis_server.url, **{argument: zero})


def test_call_async_runs_redis_io_off_the_event_loop(redis_server, clock) -> None:
    import asyncio

    client = redis_server.client()
    cb = pybreaker.CircuitBreaker(
        fail_max=2, state_storage=pybreaker.CircuitRedisStorage("closed", client), clock=clock
    )
    loop_thread = []
    original = client.hmget

    def watched(*args, **kwargs):
        loop_thread.append(threading.current_thread() is threading.main_thread())
        return original(*args, **kwargs)

    client.hmget = watched

    async def ok():
        return "ok"

    assert asyncio.run(cb.call_async(ok)) == "ok"
    assert loop_thread and not any(loop_thread), "HMGET ran on a worker thread"


def test_a_key_of_another_type_is_told_clearly(redis_server, clock) -> None:
    client = redis_server.client()
    client.hset("{tripswitch:half}", "v", "1")
    cb = pybreaker.CircuitBreaker(state_storage=pybreaker.CircuitRedisStorage("closed", client), name="half", clock=clock)
    with pytest.raises(pybreaker.StorageError, match="does not hold a tripswitch record"):
        cb.snapshot()
    client.set("{tripswitch:text}", "x")
    cb = pybreaker.CircuitBreaker(state_storage=pybreaker.CircuitRedisStorage("closed", client), name="text", clock=clock)
    with pytest.raises(pybreaker.StorageError, match="WRONGTYPE"):
        cb.snapshot()


def test_the_native_redis_storage_shares_breakers_with_circuit_redis_storage(redis_server, clock) -> None:
    native = pybreaker.RedisStorage(redis_server.url, namespace="fleet")
    through_redis_py = pybreaker.CircuitRedisStorage("closed", redis_server.client(), namespace="fleet")
    assert native.key("db") == through_redis_py.key("db") == "{fleet:tripswitch:db}"
    rust = pybreaker.CircuitBreaker(fail_max=3, state_storage=native, name="db", clock=clock)
    python = pybreaker.CircuitBreaker(fail_max=3, state_storage=through_redis_py, name="db", clock=clock)
    with pytest.raises(OSError):
        rust.call(boom)
    with pytest.raises(OSError):
        python.call(boom)
    assert (rust.fail_counter, python.fail_counter) == (2, 2)
    with pytest.raises(pybreaker.CircuitBreakerError):
        rust.call(boom)
    assert python.current_state == "open"
    assert native.breakers() == ["db"]


def test_the_native_redis_storage_falls_back_while_redis_is_down(redis_server, clock) -> None:
    storage = pybreaker.RedisStorage(redis_server.url, fallback_circuit_state="open", connect_timeout=0.2)
    cb = pybreaker.CircuitBreaker(state_storage=storage, clock=clock)
    assert cb.call(lambda: 1) == 1
    redis_server.stop()
    with pytest.raises(pybreaker.CircuitBreakerError) as refused:
        cb.call(lambda: 2)
    assert (refused.value.reason, refused.value.state) == ("storage-unavailable", "open")


def test_the_native_redis_storage_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="^url: invalid Redis address"):
        pybreaker.RedisStorage("http://nowhere")
    with pytest.raises(ValueError, match="^url: 2 addresses"):
        pybreaker.RedisStorage(["redis://a", "redis://b"])
    with pytest.raises(TypeError, match="^url"):
        pybreaker.RedisStorage(5)
    with pytest.raises(ValueError, match="^response_timeout"):
        pybreaker.RedisStorage(response_timeout=-1)
    with pytest.raises(ValueError, match="^fallback_circuit_state"):
        pybreaker.RedisStorage(fallback_circuit_state="ajar")


def test_the_native_redis_storage_reaches_the_master_through_sentinel(redis_server, clock) -> None:
    import subprocess

    from conftest import free_port

    port = free_port()
    conf = redis_server.dir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel monitor py-master 127.0.0.1 {redis_server.port} 1\n"
    )
    sentinel = subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL)
    try:
        storage = pybreaker.RedisStorage(
            f"redis://127.0.0.1:{port}/", sentinel_master="py-master", connect_timeout=1, response_timeout=1
        )
        cb = pybreaker.CircuitBreaker(fail_max=1, state_storage=storage, name="via-sentinel", clock=clock)
        deadline = time.monotonic() + 10
        while True:
            try:
                cb.snapshot()
                break
            except pybreaker.StorageError:
                assert time.monotonic() < deadline, "the sentinel never named its master"
                time.sleep(0.05)
        with pytest.raises(pybreaker.CircuitBreakerError):
            cb.call(boom)
        assert redis_server.client().exists("{tripswitch:via-sentinel}") == 1
    finally:
        sentinel.kill()
        sentinel.wait()
