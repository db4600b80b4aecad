"""Quiet model loading for the package's own entry points (the facade and the `hf-rfdetr` command).

transformers 5.x draws a "Loading weights" progress bar on every `from_pretrained`; for a detector that loads in a
second it is noise, printed once per model. `quiet_loading()` hides transformers' progress bars inside its block and
then restores the previous setting, so a library user's own `from_pretrained` calls keep transformers' defaults.
`hf-rfdetr --verbose` shows them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_loading"]


@contextmanager
def quiet_loading(verbose: bool = False) -> Iterator[None]:
    """Hide transformers' progress bars inside the block unless `verbose`; the previous setting comes back after."""
    if verbose:
        yield
        return
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()
