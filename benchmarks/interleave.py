"""The one timing loop of the benchmarks: runs interleaved round by round, so that load from other processes hits
every side alike."""

from __future__ import annotations

import subprocess
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


def interleaved_processes_ms(commands: dict[str, list[str]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """`interleaved_ms` over runners that each live in a process of their own: `commands[name]` starts a worker that
    prints "ready" (or "absent" where it cannot run here, which leaves it out), then for each line on its stdin makes
    one call and prints "done", until stdin closes. Each call is timed around its round trip to the process (the pipe
    adds well under a millisecond). All workers stay alive side by side until the race ends.

    Raises:
        RuntimeError: a worker that neither got ready nor said it is absent (its exit status is named).
    """
    workers: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            state = process.stdout.readline().strip()
            if state == "ready":
                workers[name] = process
                continue
            process.stdin.close()
            if state != "absent" or process.wait() != 0:
                raise RuntimeError(f"{name} could not start (exit status {process.wait()})")

        def call(process: subprocess.Popen) -> None:
            process.stdin.write("run\n")
            process.stdin.flush()
            process.stdout.readline()

        return interleaved_ms({name: lambda p=process: call(p) for name, process in workers.items()}, repeats, warmup)
    finally:
        for process in workers.values():
            process.stdin.close()
            process.wait()
