"""Every Python block of README.md runs, in order, offline, in one scratch folder (as a reader would run them).

A block preceded by `<!-- readme-test: skip (reason) -->` is not run; the reason must say why (it needs the
Hub or the network). The scratch folder links `src/` (the README opens `src/hf_rfdetr/assets/demo.jpg`) and holds a short
`input.mp4` for the video snippets.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .test_video import write_video

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = re.compile(r"<!-- readme-test: skip \((?P<reason>[^)]+)\) -->\s*$")


def python_blocks() -> list[tuple[int, str, str | None]]:
    """(line, code, skip reason or None) of each ```python block."""
    lines = README.read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        if lines[index].strip() == "```python":
            start = index + 1
            end = lines.index("```", start)
            previous = lines[index - 1] if index else ""
            match = SKIP.search(previous)
            blocks.append((start + 1, "\n".join(lines[start:end]) + "\n", match["reason"] if match else None))
            index = end
        index += 1
    return blocks


BLOCKS = python_blocks()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    (folder / "src").symlink_to(README.parent / "src")
    write_video(folder / "input.mp4", frames=3)
    return folder


def test_readme_has_runnable_blocks() -> None:
    assert len(BLOCKS) >= 15
    skipped = [(line, reason) for line, _, reason in BLOCKS if reason]
    assert len(skipped) <= 3 and all("Hub" in reason or "network" in reason for _, reason in skipped), skipped


def test_readme_reads_photos_upright() -> None:
    """Snippets take `target_sizes` from the image they loaded and draw on it, so they load it as viewers show it
    (transformers' `load_image`: EXIF orientation applied, RGB). `Image.open(...)` keeps a phone photo's orientation
    tag and its stored `.size`, which is not the frame of the boxes (issue 10 reads images upright)."""
    opened = [line for line, code, _ in BLOCKS if "Image.open(" in code]
    assert opened == [], f"README blocks at lines {opened} read images with Image.open; use load_image"
    assert sum("load_image(" in code for _, code, _ in BLOCKS) >= 7


@pytest.mark.parametrize("line, code", [(line, code) for line, code, reason in BLOCKS if reason is None])
def test_readme_block_runs(line: int, code: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
