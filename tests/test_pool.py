"""brainclf.data.pool: the one decode pool (order, progress, bounded memory, errors)."""

from __future__ import annotations

import threading
import time

import pytest

from brainclf.data import chunks, decode_many


def test_results_in_input_order_with_progress():
    calls = []
    out = list(decode_many(range(50), lambda i: (time.sleep(0.001 * (i % 3)), i * i)[1], workers=3,
                           progress=lambda d, t: calls.append((d, t))))
    assert out == [i * i for i in range(50)]
    assert calls == [(i, 50) for i in range(1, 51)]


def test_at_most_window_items_in_flight_for_an_endless_input():
    started = []
    lock = threading.Lock()

    def fn(i):
        with lock:
            started.append(i)
        return i

    def endless():
        i = 0
        while True:
            yield i
            i += 1

    got = decode_many(endless(), fn, workers=2, window=5)
    first = [next(got) for _ in range(10)]
    got.close()
    assert first == list(range(10))
    assert len(started) <= 10 + 5  # never runs ahead of the consumer by more than the window


def test_an_exception_reaches_the_caller_at_its_item():
    def fn(i):
        if i == 3:
            raise ValueError("bad item")
        return i

    got = decode_many(range(10), fn, workers=2)
    assert [next(got) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="bad item"):
        next(got)


def test_chunks():
    assert list(chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []
