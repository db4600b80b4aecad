"""Stand-in for transformers' `tests/generation/test_utils.py` (not in its sdist)."""


class GenerationTesterMixin:
    """Empty: `ModelTesterMixin` only checks that non-generating models do not inherit from it."""
