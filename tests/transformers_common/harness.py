"""Import transformers' own generic test mixins from the `tests/` folder of the installed transformers release.

`scripts/fetch_transformers_tests.py` extracts that folder from transformers' source distribution into
`.transformers-tests/<version>/tests/`. Its modules import each other relatively (`from .test_modeling_common
import ...`), and our own `tests/` package already owns the name `tests`, so the folder is mounted as the package
`transformers_tests`, with `stubs/` (stand-ins for the few modules the sdist does not ship) as a second search path.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest
import transformers

ROOT = Path(__file__).resolve().parents[2]
STUBS = Path(__file__).resolve().parent / "stubs"
PACKAGE = "transformers_tests"
FETCH_COMMAND = "python scripts/fetch_transformers_tests.py"


def mixins_folder() -> Path:
    """The extracted `tests/` folder for the installed transformers version."""
    return ROOT / ".transformers-tests" / transformers.__version__ / "tests"


def _mount() -> None:
    """Register `transformers_tests` (the extracted folder + stubs) once; fail, naming the fix, when it is missing."""
    if PACKAGE in sys.modules:
        return
    folder = mixins_folder()
    if not (folder / "test_modeling_common.py").is_file():
        pytest.fail(
            f"transformers' test mixins for transformers {transformers.__version__} are not in "
            f"{folder.relative_to(ROOT)}: run `{FETCH_COMMAND}` with this environment's Python "
            "(scripts/test.sh does it after installing)",
            pytrace=False,
        )
    package = types.ModuleType(PACKAGE)
    package.__path__ = [str(folder), str(STUBS)]
    sys.modules[PACKAGE] = package
    if str(STUBS) not in sys.path:  # test_image_processing_common imports `fetch_hub_objects_for_ci` by name
        sys.path.append(str(STUBS))


def load(module: str) -> types.ModuleType:
    """Import `transformers_tests.<module>`, e.g. `load("test_modeling_common")`."""
    _mount()
    return importlib.import_module(f"{PACKAGE}.{module}")
