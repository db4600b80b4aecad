"""Extract the generic test mixins of the installed transformers release into `.transformers-tests/<version>/tests/`.

transformers' source distribution ships its top-level `tests/*.py` (`test_modeling_common.py` with
`ModelTesterMixin`, `test_configuration_common.py` with `ConfigTester`, `test_image_processing_common.py` with
`ImageProcessingTestMixin`, ...); `tests/transformers_common/` runs them against RF-DETR. Run this with the Python
of the environment under test (`scripts/test.sh` does it after each install):

    .venv/bin/python scripts/fetch_transformers_tests.py                       # pip download of the sdist (~10 MB)
    .venv/bin/python scripts/fetch_transformers_tests.py --sdist transformers-5.24.0.tar.gz   # a local copy

Nothing happens when the folder for this version already holds the mixins.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where the mixins of each transformers version go (git-ignored).
TARGET_ROOT = ROOT / ".transformers-tests"
#: The file whose presence marks a complete extraction.
MARKER = "test_modeling_common.py"


def installed_transformers_version() -> str:
    import transformers

    return transformers.__version__


def download_sdist(version: str, directory: Path) -> Path:
    """`pip download` the source distribution of transformers `version` into `directory` and return its path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--dest",
        str(directory),
        f"transformers=={version}",
    ]
    subprocess.run(command, check=True)
    archives = sorted(directory.glob(f"transformers-{version}.tar.gz"))
    if not archives:
        raise FileNotFoundError(f"pip download left no transformers-{version}.tar.gz in {directory}")
    return archives[0]


def extract_tests(sdist: Path, version: str, target: Path) -> list[str]:
    """Copy `transformers-<version>/tests/*.py` (the top level only) from the sdist into `target`."""
    prefix = f"transformers-{version}/tests/"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            name = member.name
            if not (member.isfile() and name.startswith(prefix) and name.endswith(".py")):
                continue
            relative = name[len(prefix) :]
            if "/" in relative:
                continue
            source = archive.extractfile(member)
            (target / relative).write_bytes(source.read())
            written.append(relative)
    if MARKER not in written:
        raise FileNotFoundError(f"{sdist} has no {prefix}{MARKER}: not a transformers source distribution?")
    if "__init__.py" not in written:  # the repository's tests/__init__.py is empty; the sdist leaves it out, but
        (target / "__init__.py").write_text("")  # test_configuration_common.py executes it by path
        written.append("__init__.py")
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, help="a local transformers-<version>.tar.gz instead of pip download")
    parser.add_argument("--force", action="store_true", help="extract again even when the folder is complete")
    args = parser.parse_args(argv)
    version = installed_transformers_version()
    target = TARGET_ROOT / version / "tests"
    if (target / MARKER).is_file() and not args.force:
        print(f"transformers {version} test mixins already in {target.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        sdist = args.sdist if args.sdist is not None else download_sdist(version, Path(scratch))
        written = extract_tests(sdist, version, target)
    print(f"transformers {version}: {len(written)} test modules -> {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
