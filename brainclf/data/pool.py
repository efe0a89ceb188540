"""The one thread pool for decoding many files: every bulk reader (loading arrays, hashing, batch prediction,
style features, the label audit) goes through `decode_many`.

Decoding (PIL, pydicom, hashing) releases the GIL for most of its time, so a few threads keep the cores busy.
`decode_many` keeps at most `window` files in flight and yields results in input order as soon as they are
ready, so memory stays bounded by the window whatever the input's length, and a caller that groups the
results in chunks (batch prediction) holds one chunk at a time.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

DECODE_WORKERS = 4


def decode_many(items: Iterable[T], fn: Callable[[T], R], workers: int = DECODE_WORKERS,
                progress: Callable[[int, int], None] | None = None, window: int | None = None) -> Iterator[R]:
    """fn(item) for each item, in order, computed by `workers` threads with at most `window` (default
    8 x workers) items in flight. `progress(done, total)` after each result (total: len(items), or -1 when
    `items` has no length). An exception raised by `fn` is raised here, at its item; `fn` should catch the
    errors it can report (an unreadable file) and return them, so one bad file never stops a long job."""
    total = len(items) if hasattr(items, "__len__") else -1
    window = max(1, window or 8 * workers)
    it = iter(items)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = deque(pool.submit(fn, item) for item in itertools.islice(it, window))
        try:
            done = 0
            while pending:
                result = pending.popleft().result()
                for item in itertools.islice(it, 1):
                    pending.append(pool.submit(fn, item))
                done += 1
                if progress:
                    progress(done, total)
                yield result
        finally:  # the caller stopped early (or fn raised): drop the queued work instead of finishing it
            for f in pending:
                f.cancel()


def chunks(results: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` results (the last one shorter)."""
    it = iter(results)
    while part := list(itertools.islice(it, size)):
        yield part
