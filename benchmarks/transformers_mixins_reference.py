"""transformers' generic test mixins on our RF-DETR and on transformers' own rf_detr, counted side by side.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/transformers_mixins_reference.py [--list]

Runs, each in its own pytest process, under the same harness (`tests/transformers_common/harness.py`, the mixins from
`.transformers-tests/<version>/tests`):

- ours: `tests/transformers_common/test_common_mixins.py` as CI runs it (`RFDetrModelTest`,
  `RFDetrImageProcessingTest`), with its expected failures (`EXPECTED_FAILURES`, transformers 4.57 only, and
  `test_model_outputs_equivalence` split: the segmentation model's random-point loss as a strict expected failure
  of its own; transformers' rf_detr fails the unsplit test for the same reason);
- theirs (transformers >= 5 only; 4.57 has no rf_detr): the same `ModelTesterMixin` (+ `ConfigTester`) on
  transformers' `RfDetrModel` / `RfDetrForObjectDetection` / `RfDetrForInstanceSegmentation` (the classes of its own
  `RfDetrModelTest`, and of ours), with a tester config of the same sizes as our `RFDetrModelTester` (64 px, patch 8,
  2 windows, a 4-block width-32 backbone tapped after blocks 2 and 4, d_model 32, 2 decoder layers, 2 self / 4 cross
  heads, FFN 32, 10 queries, 2 groups, 3 labels, no dropout), the same seeded inputs and targets (with box-shaped
  `masks` for instance segmentation), the same rf_detr skip list (`RF_DETR_FLAGS`, `RF_DETR_SKIPS`) and NO
  expected-failure marker; and `ImageProcessingTestMixin` on transformers' `RfDetrImageProcessor` with our
  image-processing tester's options (squash-resize to 64 x 64).

Only transformers' generic mixin tests are compared: the overrides in transformers' own
`tests/models/rf_detr/test_modeling_rf_detr.py` (its `test_attention_outputs`, `test_hidden_states_output`,
`test_initialization`, ...) are not part of the mixins and are not run for either side.

Prints passed / failed / skipped / xfailed / xpassed (and subtests) per side, then the names of the tests each side
fails, xfails and xpasses (`--list` also lists the skipped ones with their reasons). This is a measurement script,
not a test: pytest does not collect it (its name does not match `test_*.py`, and CI runs `tests/` only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ROOT / "tests" / "transformers_common" / "test_common_mixins.py"
CATEGORIES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
#: The generated module pytest collects for transformers' rf_detr: it only builds the classes defined here.
REFERENCE_MODULE = """\
from transformers_mixins_reference import reference_test_classes

RfDetrReferenceModelTest, RfDetrReferenceImageProcessingTest = reference_test_classes()
"""


def reference_test_classes() -> tuple[type[unittest.TestCase], type[unittest.TestCase]]:
    """The mixin test classes for transformers' own rf_detr, built like ours (same sizes, inputs and skip list)."""
    from transformers import (
        RfDetrConfig,
        RfDetrDinov2Config,
        RfDetrForInstanceSegmentation,
        RfDetrForObjectDetection,
        RfDetrImageProcessor,
        RfDetrModel,
    )
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

    from tests.transformers_common import test_common_mixins as ours

    class RfDetrReferenceModelTester(ours.RFDetrModelTester):
        """Our tester's sizes in transformers' `RfDetrConfig` fields (its backbone is a `RfDetrDinov2Config`).

        `num_hidden_states_types` is 1: transformers' outputs carry the decoder's `hidden_states` only, where ours
        also return `backbone_hidden_states` (2); with our 2 the generic `test_attention_outputs` fails (11 != 10).
        """

        def __init__(self, parent: unittest.TestCase, batch_size: int = 2, is_training: bool = True) -> None:
            super().__init__(parent, batch_size, is_training)
            self.num_hidden_states_types = 1

        def get_config(self) -> RfDetrConfig:
            backbone_config = RfDetrDinov2Config(
                hidden_size=32,
                num_attention_heads=2,
                num_hidden_layers=4,
                out_features=["stage2", "stage4"],  # our out_feature_indexes=[2, 4]
                patch_size=8,
                num_windows=2,
                image_size=self.image_size,  # 64 / 8 = 8 positions a side, our positional_encoding_size=8
            )
            return RfDetrConfig(
                backbone_config=backbone_config,
                d_model=self.d_model,
                decoder_layers=self.decoder_layers,
                decoder_self_attention_heads=self.decoder_self_attention_heads,
                decoder_cross_attention_heads=4,
                decoder_ffn_dim=32,
                num_queries=self.num_queries,
                group_detr=2,
                num_labels=self.num_labels,
                dropout=0.0,  # ours defaults to 0 (as the original); transformers' to 0.1
            )

    @ours.apply_rf_detr_skip_list
    class RfDetrReferenceModelTest(
        ours.DetectionModelTestSetup, ours.modeling_common.ModelTesterMixin, unittest.TestCase
    ):
        all_model_classes = (RfDetrModel, RfDetrForObjectDetection, RfDetrForInstanceSegmentation)
        model_tester_class = RfDetrReferenceModelTester
        config_class = RfDetrConfig

        def test_model_outputs_equivalence(self) -> None:
            """Reseeded per call, as for ours and in transformers' own rf_detr test (random mask points)."""
            with ours.reseeded_forwards(self.all_model_classes):
                super().test_model_outputs_equivalence()

    class RfDetrReferenceImageProcessingTester(ours.RFDetrImageProcessingTester):
        def __init__(self, parent: unittest.TestCase, batch_size: int = 4) -> None:
            super().__init__(parent, batch_size)
            self.image_processing_classes = IMAGE_PROCESSOR_MAPPING[RfDetrConfig]

    class RfDetrReferenceImageProcessingTest(ours.RFDetrImageProcessingTest):
        image_processor_tester_class = RfDetrReferenceImageProcessingTester
        image_processing_class = RfDetrImageProcessor

        def setUp(self) -> None:
            super().setUp()
            self.image_processor_tester = RfDetrReferenceImageProcessingTester(self)

    assert_unmarked(RfDetrReferenceModelTest)
    return RfDetrReferenceModelTest, RfDetrReferenceImageProcessingTest


def assert_unmarked(test_class: type) -> None:
    """Fail when a test method of `test_class` is marked xfail (ours' expected-failure marker must not leak in)."""
    marked = [
        name
        for name in dir(test_class)
        if name.startswith("test_")
        and any(mark.name == "xfail" for mark in getattr(getattr(test_class, name), "pytestmark", []))
    ]
    if marked:
        raise RuntimeError(f"{test_class.__name__}: {len(marked)} tests are marked xfail, e.g. {marked[0]}")


class OutcomeRecorder:
    """A pytest plugin that keeps the terminal reporter's outcome lists (what pytest's summary line counts)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, list[str]] = {}

    def pytest_sessionfinish(self, session) -> None:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for category, reports in reporter.stats.items():
            if not category:
                continue
            self.outcomes[category] = sorted(describe(report) for report in reports if hasattr(report, "nodeid"))


def describe(report) -> str:
    """`Class::test` with the skip reason of a skipped test."""
    name = report.nodeid.split("::", 1)[-1]
    if report.skipped and not hasattr(report, "wasxfail") and isinstance(report.longrepr, tuple):
        return f"{name}  ({report.longrepr[2].removeprefix('Skipped: ')})"
    return name


def run_child(side: str, output: Path) -> int:
    """Run one side's tests in this process and write the outcome lists to `output` as JSON."""
    import pytest

    sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
    recorder = OutcomeRecorder()
    arguments = [
        "-q",
        "-W",
        "ignore",
        "-p",
        "no:cacheprovider",
        f"--rootdir={ROOT}",
        "-c",
        str(ROOT / "pyproject.toml"),
    ]
    with tempfile.TemporaryDirectory() as folder:
        if side == "ours":
            target = OURS
        else:
            target = Path(folder) / "test_rf_detr_reference.py"
            target.write_text(REFERENCE_MODULE)
        code = pytest.main([*arguments, str(target)], plugins=[recorder])
    output.write_text(json.dumps({"exit_code": int(code), "outcomes": recorder.outcomes}))
    return 0


def run_side(side: str) -> dict:
    """Run `side` ("ours" or "theirs") in a fresh Python process; its outcome lists."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "outcomes.json"
        command = [sys.executable, __file__, "--child", side, "--output", str(output)]
        completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
        if not output.is_file():
            raise RuntimeError(
                f"{side}: pytest did not report (exit {completed.returncode}):\n{completed.stderr[-4000:]}"
            )
        return json.loads(output.read_text())


def counts(result: dict) -> dict[str, int]:
    outcomes = result["outcomes"]
    table = {category: len(outcomes.get(category, [])) for category in CATEGORIES}
    table["subtests passed"] = len(outcomes.get("subtests passed", []))
    table["subtests failed"] = len(outcomes.get("subtests failed", []))
    return table


def print_report(results: dict[str, dict], list_skips: bool) -> None:
    """The side-by-side count table, then each side's failed / xfailed / xpassed (and with `list_skips`, skipped)."""
    columns = list(results)
    tables = {side: counts(result) for side, result in results.items()}
    print(f"{'':18}" + "".join(f"{side:>32}" for side in columns))
    for row in tables[columns[0]]:
        print(f"{row:18}" + "".join(f"{tables[side][row]:>32}" for side in columns))
    shown = ("failed", "error", "xfailed", "xpassed", "subtests failed") + (("skipped",) if list_skips else ())
    for side, result in results.items():
        for category in shown:
            names = result["outcomes"].get(category, [])
            if names:
                print(f"\n{side}, {category} ({len(names)}):")
                print("\n".join(f"  {name}" for name in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="also list the skipped tests with their reasons")
    parser.add_argument("--child", choices=("ours", "theirs"), help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        sys.exit(run_child(arguments.child, arguments.output))

    import transformers

    version = transformers.__version__
    results = {f"ours (transformers {version})": run_side("ours")}
    if int(version.split(".")[0]) >= 5:
        results[f"rf_detr (transformers {version})"] = run_side("theirs")
    else:
        print(f"transformers {version} has no rf_detr model: only ours is run\n")
    print_report(results, arguments.list)


if __name__ == "__main__":
    main()
