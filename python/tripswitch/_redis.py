"""Breakers shared through Redis, by the redis-py client the user passes
(their pool, auth, TLS and Sentinel settings hold). The keys and the
compare-and-swap script are the Rust RedisStorage's, so Python and Rust
processes naming one breaker on one Redis share it."""

from __future__ import annotations

import inspect
import os
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _native
from ._knobs import millis
from ._states import STATE_CLOSED, check_state
from ._storage import Conflict, Entry, Storage, Written


class RedisStorage(Storage):
    """Redis reached from Rust (tripswitch's own client): no GIL and no
    Python while it works, so threads scale; the same keys and record as
    `CircuitRedisStorage` and the Rust services, so they all share breakers.

    `url` is one `redis://` (or `rediss://`, TLS) URL, with `user:password@`
    if the server asks; with `cluster=True` one or more cluster nodes; with
    `sentinel_master` the sentinels to ask for that master (a password in
    their URLs is theirs and the master's). `tls_ca` names a CA file to
    trust, `tls_cert` and `tls_key` a client certificate. Connections open
    lazily: a service starts while Redis is down, and its calls meet
    `fallback_circuit_state` meanwhile.
    """

    def __init__(
        self,
        url: Union[str, Sequence[str]] = "redis://127.0.0.1:6379/0",
        namespace: Optional[str] = None,
        fallback_circuit_state: str = STATE_CLOSED,
        *,
        state: str = STATE_CLOSED,
        cluster: bool = False,
        sentinel_master: Optional[str] = None,
        tls_ca: Optional[str] = None,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        connect_timeout: float = 0.1,
        response_timeout: float = 0.1,
    ) -> None:
        nodes: List[str] = [url] if isinstance(url, str) else list(url) if isinstance(url, (list, tuple)) else []
        if not nodes or not all(isinstance(node, str) for node in nodes):
            raise TypeError(f"url must be a Redis URL or a list of them, not {url!r}")
        if namespace is not None and not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str or None, not {type(namespace).__name__}")
        if not isinstance(cluster, bool):
            raise TypeError(f"cluster must be a bool, not {type(cluster).__name__}")
        for argument, value in (
            ("sentinel_master", sentinel_master),
            ("tls_ca", tls_ca),
            ("tls_cert", tls_cert),
            ("tls_key", tls_key),
        ):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{argument} must be a str or a path, not {type(value).__name__}")
        self.initial_state = check_state(state, "state")
        self.fallback_state = check_state(fallback_circuit_state, "fallback_circuit_state")
        self._redis = _native.RedisStorage(
            nodes,
            namespace or "",
            self.fallback_state,
            cluster,
            _positive_millis("connect_timeout", connect_timeout),
            _positive_millis("response_timeout", response_timeout),
            sentinel_master,
            None if tls_ca is None else os.fspath(tls_ca),
            None if tls_cert is None else os.fspath(tls_cert),
            None if tls_key is None else os.fspath(tls_key),
        )

    def _native_storage(self) -> Any:
        return self._redis

    def key(self, name: str) -> str:
        """The Redis key that holds the breaker named `name`."""
        return self._redis.key(name)

    def breakers(self) -> List[str]:
        """The names of the breakers stored in this namespace, sorted."""
        return self._redis.breakers()


class CircuitRedisStorage(Storage):
    """pybreaker's Redis storage on tripswitch's record: one hash per breaker,
    one command per healthy call, one script per write.

    `state` applies only when the breaker's key is absent. While Redis
    fails, calls meet `fallback_circuit_state`. `cluster_mode` is accepted
    for pybreaker's sake: the keys carry their own hash tag, so a
    `RedisCluster` client works either way.
    """

    def __init__(
        self,
        state: str,
        redis_object: Any,
        namespace: Optional[str] = None,
        fallback_circuit_state: str = STATE_CLOSED,
        cluster_mode: bool = False,
    ) -> None:
        self.initial_state = check_state(state, "state")
        self.fallback_state = check_state(fallback_circuit_state, "fallback_circuit_state")
        if namespace is not None and not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str or None, not {type(namespace).__name__}")
        if not isinstance(cluster_mode, bool):
            raise TypeError(f"cluster_mode must be a bool, not {type(cluster_mode).__name__}")
        _check_client(redis_object)
        self._redis = redis_object
        self._namespace = namespace or ""
        self._script = redis_object.register_script(_native.REDIS_COMPARE_AND_SWAP_SCRIPT)
        self._keys: Dict[str, str] = {}

    @property
    def namespace(self) -> Optional[str]:
        """The namespace, as given (None: none)."""
        return self._namespace or None

    def key(self, name: str) -> str:
        """The Redis key that holds the breaker named `name`."""
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = _native.redis_key(self._namespace, name)
        return key

    def load(self, key: str) -> Optional[Entry]:
        redis_key = self.key(key)
        version, data = self._redis.hmget(redis_key, "v", "d")
        if version is None and data is None:
            return None
        if version is None or data is None:
            raise ValueError(f"key {redis_key!r} does not hold a tripswitch record (a hash without both v and d)")
        return Entry(_version(redis_key, version), data)

    def compare_and_swap(self, key: str, expected: Optional[int], data: bytes) -> Union[Written, Conflict]:
        redis_key = self.key(key)
        reply = self._script(keys=[redis_key], args=["" if expected is None else str(expected), data])
        if reply[0] == 1:
            return Written(int(reply[1]))
        if len(reply) == 1:
            return Conflict(None)
        return Conflict(Entry(_version(redis_key, reply[1]), reply[2]))


def _version(key: str, text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"key {key!r} does not hold a tripswitch record (its version is not a number)") from None


def _check_client(redis_object: Any) -> None:
    """A TypeError unless `redis_object` is a blocking redis-py client that returns bytes."""
    hmget = getattr(redis_object, "hmget", None)
    if hmget is None or not callable(getattr(redis_object, "register_script", None)):
        raise TypeError(
            f"redis_object must be a redis.Redis or redis.RedisCluster client, not {type(redis_object).__name__}"
        )
    if inspect.iscoroutinefunction(hmget) or type(redis_object).__module__.startswith("redis.asyncio"):
        raise TypeError(
            "redis_object is a redis.asyncio client, which CircuitRedisStorage does not take yet: "
            "pass a blocking redis.Redis (call_async runs its I/O on a worker thread)"
        )
    pool = getattr(redis_object, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    if kwargs.get("decode_responses") or getattr(redis_object, "decode_responses", False):
        raise TypeError(
            "redis_object decodes responses (decode_responses=True), but a breaker's record is binary: "
            "pass a client made with decode_responses=False (redis-py's default)"
        )


def _positive_millis(argument: str, value: Any) -> int:
    """Seconds as whole ms, at least 1 (a zero timeout would wait forever), or an error naming `argument`."""
    ms = millis(argument, value)
    if ms < 1:
        raise ValueError(f"{argument} must be at least 0.001 seconds, got {value!r}")
    return ms
