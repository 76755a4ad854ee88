"""Fixtures: a virtual clock, and real redis-server processes on free loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

import tripswitch

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "scenarios"
#: Where scenario and test clocks start (Unix ms); times are offsets from it.
START = 1_000_000


@pytest.fixture
def clock() -> tripswitch.ManualClock:
    return tripswitch.ManualClock(START)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own on a free loopback port, no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (cargo xtask test installs it)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tripswitch-py-redis-"))
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def worker_binary() -> Path:
    """The Rust `tripswitch-worker` (built by `cargo test --release`)."""
    path = os.environ.get("TRIPSWITCH_WORKER") or str(ROOT / "target" / "release" / "tripswitch-worker")
    if not Path(path).exists():
        raise RuntimeError(f"{path} is missing: run `cargo build --release -p tripswitch-tests` first")
    return Path(path)
