"""Run one callable from many threads released at one instant (the Rokt stage's threads pool)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

THREADS = 32


def together(fn: Callable[[], Any], threads: int = THREADS) -> list[Any]:
    """`fn` from `threads` threads released at one instant; their results (an error re-raised)."""
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads
    errors: list[BaseException] = []

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return results
