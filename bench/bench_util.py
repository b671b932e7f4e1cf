"""Timing helpers shared by the benchmark drivers in bench/."""
import time


def best_of(repeats, fn, warmup=True):
    """The shortest wall time of `repeats` calls of fn (after one untimed call if warmup)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
