"""The one timing loop of the benchmarks: runs interleaved round by round, so that load from other processes hits
every side alike."""

from __future__ import annotations

import time
from collections.abc import Callable


def interleaved_ms(
    runs: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 2,
    synchronize: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Milliseconds per call of each run: `warmup` untimed rounds, then `repeats` timed ones; each round calls every
    run once, starting one later each round (a rotating order). `synchronize` (a device sync) is called around each
    timed call. The caller sets the autograd mode (inference_mode for inference, none for training steps)."""
    names = list(runs)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for index in range(warmup + repeats):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            if synchronize is not None:
                synchronize()
            start = time.perf_counter()
            runs[name]()
            if synchronize is not None:
                synchronize()
            if index >= warmup:
                timings[name].append((time.perf_counter() - start) * 1000)
    return timings
