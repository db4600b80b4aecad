"""The test suite's own set-up (tests/conftest.py): torch's threads under pytest-xdist, and no test leaking its thread
count into the tests after it."""

from __future__ import annotations

import pytest
import torch

from tests import conftest

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(
    ("cpus", "workers", "omp", "expected"),
    [(2, "2", None, 1), (8, "2", None, 4), (3, "4", None, 1), (8, "2", "3", None), (8, None, None, None)],
)
def test_xdist_workers_share_the_cores(monkeypatch, cpus: int, workers: str | None, omp: str | None, expected) -> None:
    before = torch.get_num_threads()
    monkeypatch.setattr(conftest.os, "cpu_count", lambda: cpus)
    for name, value in (("PYTEST_XDIST_WORKER_COUNT", workers), ("OMP_NUM_THREADS", omp)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    conftest.pytest_configure(None)
    assert calls == ([] if expected is None else [expected])
    assert torch.get_num_threads() == before


def test_a_tests_thread_count_stays_its_own(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.conftest import _torch_threads_restored  # noqa: F401")
    pytester.makepyfile(
        """
        import torch

        BEFORE = torch.get_num_threads()

        def test_changes_it():
            torch.set_num_threads(BEFORE + 1)

        def test_after_it():
            assert torch.get_num_threads() == BEFORE
        """
    )
    threads = torch.get_num_threads()
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
    assert torch.get_num_threads() == threads
