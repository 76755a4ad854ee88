"""pybreaker 1.4.1 on CircuitRedisStorage: calls per second on the success path.

Usage: pybreaker_redis.py PORT CALLS THREADS. Warms up, zeroes the server's
command statistics, runs CALLS successful calls over THREADS threads, and
prints the elapsed seconds.
"""

import sys
import threading
import time

import pybreaker
import redis

port, calls, threads = (int(arg) for arg in sys.argv[1:4])
client = redis.Redis(host="127.0.0.1", port=port)
storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace="pybench")
breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60, state_storage=storage)


def work(n):
    for _ in range(n):
        breaker.call(lambda: 1)


work(200)
client.config_resetstat()
workers = [threading.Thread(target=work, args=(calls // threads,)) for _ in range(threads)]
start = time.perf_counter()
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(time.perf_counter() - start)
