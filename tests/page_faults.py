"""Page faults of a forward- or step-like allocation after some set-up, in a fresh process (glibc's settings are
process-wide): how the tests check that `keep_freed_memory` (`optimize`, `RFDetrTrainer`) reuses freed memory."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

#: The tests that read glibc's page faults run on Linux with glibc only.
glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt settings of glibc on Linux"
)

# The process starts from glibc's initial thresholds (128 KiB) held fixed: glibc's own adjustment of them depends on
# the process's history of allocations, so whether its defaults fault varies from run to run (in a forward they did:
# 40,000 faults). Then the set-up, then the count: several large buffers alive at once and all freed at the end, as
# in a forward or a training step, with a 64 MB one above glibc's largest mmap threshold (a training step's
# activations); printed, the page faults per repetition.
_BEFORE = """
import ctypes, resource, sys
from pathlib import Path
import torch
from hf_rfdetr.optimization import _M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD

ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 128 << 10)
ctypes.CDLL(None).mallopt(_M_TRIM_THRESHOLD, 128 << 10)
"""
_COUNT = """

def allocate() -> None:
    buffers = [torch.ones(2 << 20) for _ in range(6)]  # 6 x 8 MB
    buffers.append(torch.ones(16 << 20))  # 64 MB
    del buffers


for _ in range(3):
    allocate()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    allocate()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / 10)
"""
#: Each repetition of `_COUNT` allocates 112 MB: 28,672 pages of 4 KiB when all are mapped afresh.
FRESH_PAGES = 112 * 2**20 // 4096


def page_faults(setup: str, *arguments: str) -> float:
    """Run `setup` (Python source; `sys.argv[1:]` are `arguments`) in a fresh process, then count the page faults per
    repetition of the allocation pattern."""
    result = subprocess.run(
        [sys.executable, "-c", _BEFORE + setup + _COUNT, *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    return float(result.stdout.split()[-1])
