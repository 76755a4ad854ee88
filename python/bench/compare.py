"""tripswitch's Python package beside pybreaker 1.4.1, in one run: a
successful and a failed guarded call on memory, and on a real Redis (calls
per second with 1 and 8 threads, and commands sent per call), through the
user's redis-py client (CircuitRedisStorage) and through tripswitch's own
Rust client (RedisStorage). Prints a
Markdown table with the ratio. Run by `cargo xtask bench-python`, which
installs both packages into target/python-venv."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from typing import Callable, Dict, Tuple

import pybreaker
import redis

import tripswitch

MEMORY_CALLS = 200_000
REDIS_CALLS = 8_000


class Boom(Exception):
    pass


def ok() -> None:
    return None


def boom() -> None:
    raise Boom()


def rate(call: Callable[[], None], calls: int, threads: int) -> float:
    """Calls per second of `call`, `calls` in all over `threads` threads."""
    each = calls // threads
    start = threading.Barrier(threads + 1)

    def worker() -> None:
        start.wait()
        for _ in range(each):
            call()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in pool:
        t.join()
    return each * threads / (time.perf_counter() - began)


def guarded(cb, func) -> Callable[[], None]:
    def call() -> None:
        try:
            cb.call(func)
        except Boom:
            pass

    return call


class Server:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, max_connections=64)

    def commands(self, client: redis.Redis, names) -> int:
        stats = client.info("commandstats")
        if names is None:  # every command sent but our INFO and FLUSHALL
            return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_flushall"))
        return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in names)


#: What each library sends: tripswitch reads with HMGET and writes with its
#: script (the HGET / HSET the script runs inside Redis are not sent).
TRIPSWITCH_SENT = ("hmget", "evalsha", "eval", "script")


def redis_row(server: Server, library: str, outcome: str, threads: int) -> Tuple[float, float]:
    client = server.client()
    client.flushall()
    client.config_resetstat()
    if library == "pybreaker":
        storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace="bench")
        cb = pybreaker.CircuitBreaker(fail_max=10**9, state_storage=storage)
        sent = None
    elif library == "CircuitRedisStorage":
        storage = tripswitch.CircuitRedisStorage(tripswitch.STATE_CLOSED, client, namespace="bench")
        cb = tripswitch.CircuitBreaker(fail_max=10**9, state_storage=storage, name="bench")
        sent = TRIPSWITCH_SENT
    else:
        storage = tripswitch.RedisStorage(f"redis://127.0.0.1:{server.port}/0", namespace="bench")
        cb = tripswitch.CircuitBreaker(fail_max=10**9, state_storage=storage, name="bench")
        sent = TRIPSWITCH_SENT
    call = guarded(cb, ok if outcome == "success" else boom)
    for _ in range(50):
        call()
    before = server.commands(client, sent)
    per_second = rate(call, REDIS_CALLS, threads)
    per_call = (server.commands(client, sent) - before) / REDIS_CALLS
    return per_second, per_call


def main() -> None:
    rows = []
    for outcome, func in (("success", ok), ("failure", boom)):
        py = rate(guarded(pybreaker.CircuitBreaker(fail_max=10**9), func), MEMORY_CALLS, 1)
        ts = rate(guarded(tripswitch.CircuitBreaker(fail_max=10**9), func), MEMORY_CALLS, 1)
        rows.append((f"memory, {outcome}", 1, py, None, "CircuitMemoryStorage", ts, None))
    server = Server()
    try:
        for outcome in ("success", "failure"):
            for threads in (1, 8):
                py, py_cmds = redis_row(server, "pybreaker", outcome, threads)
                for storage in ("CircuitRedisStorage", "RedisStorage"):
                    ts, ts_cmds = redis_row(server, storage, outcome, threads)
                    rows.append((f"Redis, {outcome}", threads, py, py_cmds, storage, ts, ts_cmds))
        # The floor under CircuitRedisStorage: one redis-py command, nothing else.
        client = server.client()
        for threads in (1, 8):
            bare = rate(lambda: client.hmget("{bench:tripswitch:bench}", "v", "d"), REDIS_CALLS, threads)
            print(f"redis-py HMGET alone, {threads} thread(s): {bare:,.0f} commands/s")
    finally:
        server.process.terminate()
        server.process.wait()
    print("| call | threads | pybreaker 1.4.1 calls/s | cmds/call | tripswitch storage | calls/s | cmds/call | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, threads, py, py_cmds, storage, ts, ts_cmds in rows:
        cmds = lambda c: "" if c is None else f"{c:.2f}"  # noqa: E731
        print(
            f"| {name} | {threads} | {py:,.0f} | {cmds(py_cmds)} | {storage} | {ts:,.0f} | {cmds(ts_cmds)} "
            f"| {ts / py:.1f}x |"
        )


if __name__ == "__main__":
    main()
