"""Stand-in for transformers' `tests/exporters/test_export.py` (not in its sdist): no torch.export tests."""


class ExportTesterMixin:
    """Empty: `ModelTesterMixin` (transformers 5.x) inherits from it; its torch.export tests are not run here."""
