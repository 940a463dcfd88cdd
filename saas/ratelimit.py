"""Fixed-window rate limits: ``allow("login:ip:203.0.113.9", limit=20, window=600)``.

With Redis the count is shared by every process (INCR + EXPIRE); without it (the embedded
single-process set-up) a dictionary of this process keeps it.
"""

from __future__ import annotations

import threading
import time

from saas import stores

_local: dict[str, tuple[int, int]] = {}  # key → (window number, count)
_lock = threading.Lock()


def allow(key: str, *, limit: int, window: int) -> bool:
    """Count one hit on ``key``; False once more than ``limit`` fell in this window."""
    number = int(time.time()) // window
    redis = stores.redis()
    if redis is not None:
        name = f"kakehashi:rate:{key}:{number}"
        pipe = redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, window)
        count = int(pipe.execute()[0])
        return count <= limit
    with _lock:
        seen, count = _local.get(key, (number, 0))
        count = count + 1 if seen == number else 1
        _local[key] = (number, count)
        if len(_local) > 100_000:  # forget old windows
            for stale in [k for k, (n, _) in _local.items() if n != number]:
                del _local[stale]
        return count <= limit


def reset() -> None:
    """Forget this process's counts (tests; Redis counts expire by themselves)."""
    with _lock:
        _local.clear()
