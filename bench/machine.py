"""The machine's speed at the moment a bench starts, to read its figures against.

The sessions' machines differ, and one machine's speed wanders (a shared virtual
machine: by up to 40 % within minutes). Each bench prints this reference beside its
figures: the CPU time of a fixed piece of pure Python work (lower is faster). Figures
taken at references far apart are not comparable as they stand.
"""

from __future__ import annotations

import hashlib
import json
import time


def _work() -> None:
    document = {"sub": "x" * 43, "scope": "openid name address", "claims": list(range(50))}
    for n in range(2_000):
        document["n"] = n
        hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
        sorted(str(value) for value in range(40))


def reference() -> str:
    """'python reference X ms': the best of five runs of the same work."""
    runs = []
    for _ in range(5):
        began = time.process_time()
        _work()
        runs.append(time.process_time() - began)
    return f"python reference {1000 * min(runs):.1f} ms (lower is faster)"
