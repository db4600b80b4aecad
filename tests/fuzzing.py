"""The hypothesis profile of the fuzz suites (`tests/test_fuzz_*.py`): a fixed, reproducible, bounded budget.

`derandomize=True` makes every run draw the same examples (CI is reproducible), `database=None` keeps runs from
depending on earlier ones, `deadline=None` because a shared CI machine's timing is noisy. Each test sets its own
`max_examples` through `fuzz_settings`; `HF_RFDETR_FUZZ_SCALE=10` multiplies every budget for a longer local run.
Run with `--hypothesis-show-statistics` to see how many examples each test ran and how long they took.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = "hf_rfdetr-fuzz"
settings.register_profile(
    PROFILE,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
SCALE = max(1, int(os.environ.get("HF_RFDETR_FUZZ_SCALE", "1")))


def fuzz_settings(max_examples: int) -> settings:
    """The suite's profile with a budget of `max_examples` (times `HF_RFDETR_FUZZ_SCALE`)."""
    return settings(settings.get_profile(PROFILE), max_examples=max_examples * SCALE)
