"""Training survives faults exactly: checkpoints are marked complete last, resume takes the newest complete one, and a
run killed with SIGKILL (after a checkpoint, or in the middle of a save) and resumed ends with the same weights, EMA
weights and metrics as an uninterrupted run."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import Trainer, TrainerCallback

from hf_rfdetr import RFDetrForObjectDetection, RFDetrImageProcessor, fine_tune
from hf_rfdetr.training import RFDetrDataCollator, RFDetrTrainer
from hf_rfdetr.training.checkpoints import (
    COMPLETE_MARKER,
    RUN_RECORD,
    check_checkpoint_fits,
    checkpoint_run_id,
    incompleteness,
    is_complete,
    mark_complete,
    record_run,
    recorded_run_id,
    resolve_checkpoint,
    rotate_checkpoints,
    start_run,
)

from .conftest import tiny_config
from .synthetic_coco import write_synthetic_coco

WORKER = Path(__file__).with_name("resume_worker.py")
EPOCHS = 2  # 8 images, batches of 2: under 5 batches, drawn with replacement, 5 steps (checkpoint-5, checkpoint-10)
TOLERANCE = 1e-6


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoint folders: marker, resume choice, rotation
# ----------------------------------------------------------------------------------------------------------------------


def _checkpoint(root: Path, step: int, complete: bool = True, run_id: str | None = None) -> Path:
    folder = root / f"checkpoint-{step}"
    (folder / "ema").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights" * step)
    (folder / "ema" / "ema_state.json").write_text("{}")
    if complete:
        mark_complete(folder, step, run_id=run_id)
    return folder


def test_the_marker_lists_every_file_and_catches_later_damage(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path, 2)
    assert json.loads((folder / COMPLETE_MARKER).read_text()) == {
        "global_step": 2,
        "files": {"ema/ema_state.json": 2, "model.safetensors": 14},
    }
    assert is_complete(folder)
    (folder / "model.safetensors").write_bytes(b"half")  # overwritten after it was marked
    assert incompleteness(folder) == f"model.safetensors has 4 bytes, its {COMPLETE_MARKER} lists 14"
    (folder / "ema" / "ema_state.json").unlink()  # half deleted
    assert incompleteness(folder) == f"ema/ema_state.json, listed in its {COMPLETE_MARKER}, is missing"
    assert "has no checkpoint_complete.json" in incompleteness(_checkpoint(tmp_path, 4, complete=False))


def test_resume_true_takes_the_newest_complete_checkpoint_and_names_the_skipped_ones(tmp_path: Path, caplog) -> None:
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 4)
    _checkpoint(tmp_path, 6, complete=False)
    with caplog.at_level("WARNING", logger="hf_rfdetr.training.checkpoints"):
        assert resolve_checkpoint(True, tmp_path) == str(tmp_path / "checkpoint-4")
    assert caplog.messages == [
        f"Resuming from {tmp_path / 'checkpoint-4'}: skipped the incomplete checkpoint {tmp_path / 'checkpoint-6'}, as "
        f"it has no {COMPLETE_MARKER} (its save was interrupted, or another trainer wrote it)."
    ]
    assert resolve_checkpoint(tmp_path / "checkpoint-2", tmp_path) == str(tmp_path / "checkpoint-2")
    assert resolve_checkpoint(None, tmp_path) is None and resolve_checkpoint(False, tmp_path) is None
    with pytest.raises(ValueError, match="checkpoint-6: it is not a complete checkpoint, as it has no .* the newest "):
        resolve_checkpoint(tmp_path / "checkpoint-6", tmp_path)
    with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
        resolve_checkpoint(tmp_path / "checkpoint-8", tmp_path)


def test_resume_true_without_a_complete_checkpoint_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no complete checkpoint to resume from$"):
        resolve_checkpoint(True, tmp_path)
    _checkpoint(tmp_path, 2, complete=False)
    with pytest.raises(
        ValueError, match=r"no complete checkpoint to resume from \(only incomplete ones: checkpoint-2\)"
    ):
        resolve_checkpoint(True, tmp_path)


def test_rotation_counts_only_complete_checkpoints_and_keeps_the_newest_and_the_best(tmp_path: Path) -> None:
    for step in (2, 4, 6):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 7, complete=False)  # an interrupted save of an earlier run: never resumable
    _checkpoint(tmp_path, 10, complete=False)  # a later step, not reached yet by this run
    current = _checkpoint(tmp_path, 8)
    deleted = rotate_checkpoints(tmp_path, 1, current, best=tmp_path / "checkpoint-4")
    assert sorted(path.name for path in deleted) == ["checkpoint-2", "checkpoint-6", "checkpoint-7"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-4", "checkpoint-8"]
    assert rotate_checkpoints(tmp_path, None, current) == []  # no limit: complete checkpoints are all kept


def test_resume_true_takes_the_recorded_runs_newest_checkpoint_and_names_the_other_runs(tmp_path: Path, caplog) -> None:
    """An earlier run left checkpoint-5/10/15 (run "old") in the folder; the run recorded there ("new") saved
    checkpoint-8: resume=True continues checkpoint-8 and warns that it ignored the old run's."""
    for step in (5, 10, 15):
        _checkpoint(tmp_path, step, run_id="old")
    record_run(tmp_path, "new")
    _checkpoint(tmp_path, 8, run_id="new")
    with caplog.at_level("WARNING", logger="hf_rfdetr.training.checkpoints"):
        assert resolve_checkpoint(True, tmp_path) == str(tmp_path / "checkpoint-8")
    assert caplog.messages == [
        f"Resuming from {tmp_path / 'checkpoint-8'}, a checkpoint of the training run recorded in "
        f"{tmp_path / RUN_RECORD} (run new): ignored checkpoint-5, checkpoint-10, checkpoint-15, saved by other runs "
        "in the same folder."
    ]
    assert checkpoint_run_id(tmp_path / "checkpoint-8") == "new" and recorded_run_id(tmp_path) == "new"
    assert resolve_checkpoint(tmp_path / "checkpoint-15", tmp_path) == str(tmp_path / "checkpoint-15")  # if named


def test_resume_true_without_a_checkpoint_of_the_recorded_run_says_so(tmp_path: Path) -> None:
    """The recorded run was killed before its first checkpoint: resume=True refuses the other runs' checkpoints."""
    _checkpoint(tmp_path, 5, run_id="old")
    _checkpoint(tmp_path, 10)  # written before run ids
    record_run(tmp_path, "new")
    with pytest.raises(
        ValueError,
        match=r"no complete checkpoint of the training run recorded in its "
        rf"{RUN_RECORD} \(run new, .*; checkpoint-5, checkpoint-10 belong to other runs",
    ):
        resolve_checkpoint(True, tmp_path)


def test_a_fresh_run_records_its_id_and_names_the_checkpoints_already_there(tmp_path: Path, caplog) -> None:
    _checkpoint(tmp_path, 5)
    _checkpoint(tmp_path, 10, complete=False)
    with caplog.at_level("WARNING", logger="hf_rfdetr.training.checkpoints"):
        run_id = start_run(tmp_path)
    assert recorded_run_id(tmp_path) == run_id and len(run_id) == 32
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith(
        f"{tmp_path} already holds checkpoint-5, checkpoint-10 of another training run"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [RUN_RECORD, "checkpoint-10", "checkpoint-5"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="hf_rfdetr.training.checkpoints"):
        assert start_run(tmp_path / "empty") != run_id
    assert caplog.messages == []


def test_rotation_with_a_run_id_leaves_the_other_runs_checkpoints_alone(tmp_path: Path) -> None:
    for step in (2, 4, 6):
        _checkpoint(tmp_path, step, run_id="old")
    _checkpoint(tmp_path, 3, run_id="new")
    current = _checkpoint(tmp_path, 5, run_id="new")
    assert [path.name for path in rotate_checkpoints(tmp_path, 1, current, run_id="new")] == ["checkpoint-3"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"checkpoint-{step}" for step in (2, 4, 5, 6)]


def _model_folder(folder: Path, **overrides) -> Path:
    """A complete checkpoint-like folder holding a tiny model's config.json and weights."""
    RFDetrForObjectDetection(tiny_config(**overrides)).save_pretrained(folder)
    mark_complete(folder, 5)
    return folder


def test_a_checkpoint_of_other_labels_or_another_architecture_is_refused_naming_what_differs(tmp_path: Path) -> None:
    model = RFDetrForObjectDetection(tiny_config())
    check_checkpoint_fits(_model_folder(tmp_path / "same"), model)  # the same model: no error
    renamed = _model_folder(tmp_path / "renamed", id2label={0: "cat", 1: "dog", 2: "fish"})
    with pytest.raises(
        ValueError,
        match=r"renamed: it is a checkpoint of another model .* its labels \{0: 'cat', 1: "
        r"'dog', 2: 'fish'\} \(the model's: \{0: 'cat', 1: 'dog', 2: 'bird'\}\)\. Resume from",
    ):
        check_checkpoint_fits(renamed, model)
    fewer = _model_folder(tmp_path / "fewer", id2label={0: "cat", 1: "dog"})
    with pytest.raises(
        ValueError,
        match=r"fewer: .* and 4 weight\(s\) of another name or shape .*configuration "
        r"fields num_labels=2 \(the model's: 3\)",
    ):
        check_checkpoint_fits(fewer, model)
    wider = _model_folder(tmp_path / "wider", d_model=64)
    with pytest.raises(ValueError, match=r"wider: .* with the configuration fields d_model=64 \(the model's: 32\)\."):
        check_checkpoint_fits(wider, model)


def test_fine_tune_refuses_to_resume_a_checkpoint_of_other_labels(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    """An explicitly named checkpoint of a 2-label model, for a 3-label dataset: a ValueError naming the checkpoint
    and the labels, not transformers' bare size-mismatch RuntimeError."""
    folder = _model_folder(tmp_path / "other" / "checkpoint-5", id2label={0: "a", 1: "b"})
    options = dict(epochs=1, batch_size=2, device="cpu", tensorboard=False, num_workers=0, disable_tqdm=True)
    with pytest.raises(ValueError, match=rf"cannot resume from {folder}: .* num_labels=2 \(the model's: 3\)"):
        fine_tune(inputs[1], inputs[0], output_dir=tmp_path / "run", resume=folder, **options)


def test_the_trainer_methods_this_relies_on_exist() -> None:
    """`RFDetrTrainer` overrides the private `Trainer._save_checkpoint(model, trial)` (transformers 4.57 and 5.x) and
    calls the private `_get_output_dir(trial=...)`; the public `train` takes `resume_from_checkpoint` first."""
    assert list(inspect.signature(Trainer._save_checkpoint).parameters) == ["self", "model", "trial"]
    assert "trial" in inspect.signature(Trainer._get_output_dir).parameters
    assert list(inspect.signature(Trainer.train).parameters)[1] == "resume_from_checkpoint"
    assert RFDetrTrainer._save_checkpoint is not Trainer._save_checkpoint


def test_the_collator_state_continues_the_scale_draws() -> None:
    collator = RFDetrDataCollator([32, 48, 64, 80, 96], seed=7)
    [collator.draw_scale() for _ in range(5)]
    state = collator.state_dict()
    expected = [collator.draw_scale() for _ in range(20)]
    restored = RFDetrDataCollator([32, 48, 64, 80, 96], seed=0)  # a fresh one, as a resumed run builds
    restored.load_state_dict(state)
    assert [restored.draw_scale() for _ in range(20)] == expected
    assert restored.seed == 7


# ----------------------------------------------------------------------------------------------------------------------
# Real runs
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A synthetic COCO folder (8 train, 4 valid images) and a tiny model folder."""
    root = tmp_path_factory.mktemp("resume")
    dataset = write_synthetic_coco(root / "shapes", num_train=8, num_valid=4, image_size=(64, 64))
    torch.manual_seed(0)
    config = tiny_config()
    RFDetrForObjectDetection(config).save_pretrained(root / "tiny")
    RFDetrImageProcessor.from_config(config).save_pretrained(root / "tiny")
    return dataset, root / "tiny"


def _command(inputs: tuple[Path, Path], output: Path, resume: bool) -> list[str]:
    return [sys.executable, str(WORKER), str(inputs[0]), str(inputs[1]), str(output), str(EPOCHS), str(int(resume))]


def _run(inputs: tuple[Path, Path], output: Path, resume: bool = False) -> str:
    """Train (or resume) to the end in a subprocess; returns its stderr."""
    done = subprocess.run(_command(inputs, output, resume), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def _run_and_kill(inputs: tuple[Path, Path], output: Path, pause: str) -> None:
    """Start a run that stops at `pause` (see resume_worker.py), wait until it is there, SIGKILL it."""
    signal_file = output.parent / f"{output.name}.paused"
    env = {**os.environ, "RESUME_TEST_PAUSE": pause, "RESUME_TEST_SIGNAL": str(signal_file)}
    log = (output.parent / f"{output.name}.log").open("w")
    process = subprocess.Popen(_command(inputs, output, False), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not signal_file.exists():
            assert process.poll() is None, f"the run ended before {pause}: {log.name}"
            assert time.monotonic() < deadline, f"the run did not reach {pause} in 300 s"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert not (output / "model.safetensors").exists()  # it never got to the end


@pytest.fixture(scope="module")
def uninterrupted(inputs: tuple[Path, Path], tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("uninterrupted") / "run"
    _run(inputs, output)
    return output


def _final_metrics(output: Path) -> list[dict[str, float]]:
    """The logged losses and evaluation metrics (without timings, and without the summary of the last `train` call,
    whose mean loss covers only the steps that call trained)."""
    history = json.loads((output / "trainer_state.json").read_text())["log_history"]
    skip = ("runtime", "per_second", "train_loss", "total_flos")
    return [{k: v for k, v in entry.items() if not any(part in k for part in skip)} for entry in history]


def _assert_same_run(expected: Path, actual: Path) -> None:
    for name in ("model.safetensors", "ema/model.safetensors"):
        reference, resumed = load_file(expected / name), load_file(actual / name)
        assert reference.keys() == resumed.keys()
        worst = max((reference[key].double() - resumed[key].double()).abs().max().item() for key in reference)
        assert worst <= TOLERANCE, f"{name}: max |delta| {worst:.3e} between the uninterrupted and resumed runs"
    reference_logs, resumed_logs = _final_metrics(expected), _final_metrics(actual)
    assert len(reference_logs) == len(resumed_logs) == 2 * EPOCHS + 1  # per epoch: training loss, evaluation
    for reference, resumed in zip(reference_logs, resumed_logs):
        assert reference.keys() == resumed.keys()
        for key, value in reference.items():
            assert abs(value - resumed[key]) <= TOLERANCE, (key, value, resumed[key])
    assert any("eval_ema_map" in entry for entry in resumed_logs)


@pytest.mark.slow
def test_sigkill_after_the_first_checkpoint_then_resume_equals_an_uninterrupted_run(
    inputs: tuple[Path, Path], uninterrupted: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    _run_and_kill(inputs, output, "complete:5")
    assert is_complete(output / "checkpoint-5") and not (output / "checkpoint-10").exists()
    _run(inputs, output, resume=True)
    _assert_same_run(uninterrupted, output)


@pytest.mark.slow
def test_sigkill_during_a_save_keeps_the_previous_checkpoint_and_resume_skips_the_broken_one(
    inputs: tuple[Path, Path], uninterrupted: Path, tmp_path: Path
) -> None:
    """Killed inside the EMA save of checkpoint-10 (`ema/model.safetensors` written, `ema/ema_state.json` not): the
    folder is incomplete, checkpoint-5 survives `save_total_limit=1`, and resume=True continues from it."""
    output = tmp_path / "run"
    _run_and_kill(inputs, output, "ema:10")
    broken = output / "checkpoint-10"
    assert (broken / "ema" / "model.safetensors").exists() and not (broken / "ema" / "ema_state.json").exists()
    assert not is_complete(broken) and is_complete(output / "checkpoint-5")
    stderr = _run(inputs, output, resume=True)
    assert f"Resuming from {output / 'checkpoint-5'}: skipped the incomplete checkpoint {broken}" in stderr
    _assert_same_run(uninterrupted, output)


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("point", ["save_model", "_save_rng_state", "ema", "mark_complete"])
def test_an_interrupted_save_at_any_point_leaves_an_incomplete_checkpoint(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch, point: str
) -> None:
    """In process, an exception at each stage of the save of checkpoint-10 stands for a kill there: checkpoint-10 is
    never complete, checkpoint-5 stays complete, and resume=True picks checkpoint-5 (then re-saves checkpoint-10)."""
    import hf_rfdetr.training.trainer as trainer_module

    def interrupt(original):
        def wrapper(*args, **kwargs):
            folder = next(Path(a) for a in (*args, *kwargs.values()) if isinstance(a, (str, Path)))
            if "checkpoint-10" in folder.parts:
                raise _Interrupted(point)
            return original(*args, **kwargs)

        return wrapper

    if point == "ema":
        monkeypatch.setattr(trainer_module.RFDetrEMACallback, "save", interrupt(trainer_module.RFDetrEMACallback.save))
    elif point == "mark_complete":
        monkeypatch.setattr(trainer_module, "mark_complete", interrupt(trainer_module.mark_complete))
    else:
        monkeypatch.setattr(Trainer, point, interrupt(getattr(Trainer, point)))
    options = dict(epochs=EPOCHS, output_dir=tmp_path, batch_size=2, grad_accum_steps=1, device="cpu")
    options |= dict(tensorboard=False, num_workers=0, checkpoint_interval=1, save_total_limit=1)
    with pytest.raises(_Interrupted):
        fine_tune(inputs[1], inputs[0], **options)
    assert is_complete(tmp_path / "checkpoint-5") and not is_complete(tmp_path / "checkpoint-10")
    assert resolve_checkpoint(True, tmp_path) == str(tmp_path / "checkpoint-5")
    monkeypatch.undo()
    trainer = fine_tune(inputs[1], inputs[0], resume=True, **options)
    assert trainer.state.global_step == 10 and (tmp_path / "model.safetensors").exists()


@pytest.mark.slow
def test_resume_with_dataloader_workers_is_exact(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    """With num_workers=2 each worker seeds its collator generator and augmentations from the worker seed, which the
    restored global RNG determines: a run resumed from its epoch-1 checkpoint equals the uninterrupted run."""
    options = dict(epochs=EPOCHS, batch_size=2, grad_accum_steps=1, device="cpu", tensorboard=False, lr=1e-3)
    options |= dict(num_workers=2, checkpoint_interval=1, disable_tqdm=True)
    fine_tune(inputs[1], inputs[0], output_dir=tmp_path / "straight", **options)
    shutil.copytree(tmp_path / "straight" / "checkpoint-5", tmp_path / "resumed" / "checkpoint-5")
    fine_tune(inputs[1], inputs[0], output_dir=tmp_path / "resumed", resume=True, **options)
    _assert_same_run(tmp_path / "straight", tmp_path / "resumed")


class _StopAfterSave(TrainerCallback):
    """Raises `_Interrupted` once checkpoint-`step` is saved (and marked complete): a kill right after it."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise _Interrupted(f"after checkpoint-{self.step}")


@pytest.mark.slow
def test_resume_keeps_the_early_stopping_patience_counter(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    """checkpoint-10's trainer_state.json holds EarlyStoppingCallback's counter; the resumed run restores it (transformers'
    `restore_callback_states_from_checkpoint`, off by default, which RFDetrTrainer turns on) and stops at the same
    step as the uninterrupted run, instead of counting the patience from 0 again."""
    options = dict(epochs=6, batch_size=2, grad_accum_steps=1, device="cpu", tensorboard=False, lr=1e-3)
    options |= dict(num_workers=0, disable_tqdm=True, early_stopping=True, early_stopping_patience=2)
    straight = fine_tune(inputs[1], inputs[0], output_dir=tmp_path / "straight", **options)
    stopped = straight.state.global_step
    assert 10 < stopped < 30, f"the uninterrupted run should stop early, after checkpoint-10 (stopped at {stopped})"
    counter = json.loads((tmp_path / "straight" / "checkpoint-10" / "trainer_state.json").read_text())
    assert counter["stateful_callbacks"]["EarlyStoppingCallback"]["attributes"]["early_stopping_patience_counter"] > 0
    with pytest.raises(_Interrupted):
        fine_tune(inputs[1], inputs[0], output_dir=tmp_path / "run", callbacks=[_StopAfterSave(10)], **options)
    resumed = fine_tune(inputs[1], inputs[0], output_dir=tmp_path / "run", resume=True, **options)
    assert resumed.state.global_step == stopped
    assert Path(resumed.state.best_model_checkpoint).name == Path(straight.state.best_model_checkpoint).name
    for name in ("model.safetensors", "ema/model.safetensors"):
        reference, actual = load_file(tmp_path / "straight" / name), load_file(tmp_path / "run" / name)
        assert max((reference[key] - actual[key]).abs().max().item() for key in reference) <= TOLERANCE


@pytest.mark.slow
def test_resume_true_continues_this_run_not_an_earlier_runs_newer_checkpoint(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    """An earlier run (batches of 1: checkpoint-8, checkpoint-16) used the folder; a new run (batches of 2:
    checkpoint-5, checkpoint-10) is killed after checkpoint-5 and resumed with resume=True: it continues its own
    checkpoint-5 (not the earlier run's checkpoint-16) and ends as the same run uninterrupted, the old checkpoints kept."""
    options = dict(epochs=EPOCHS, grad_accum_steps=1, device="cpu", tensorboard=False, lr=1e-3, num_workers=0)
    options |= dict(checkpoint_interval=1, disable_tqdm=True)
    fine_tune(inputs[1], inputs[0], output_dir=tmp_path / "run", batch_size=1, **options)
    fine_tune(inputs[1], inputs[0], output_dir=tmp_path / "straight", batch_size=2, **options)
    with pytest.raises(_Interrupted):
        fine_tune(
            inputs[1], inputs[0], output_dir=tmp_path / "run", batch_size=2, callbacks=[_StopAfterSave(5)], **options
        )
    trainer = fine_tune(inputs[1], inputs[0], output_dir=tmp_path / "run", batch_size=2, resume=True, **options)
    assert trainer.state.global_step == 10
    _assert_same_run(tmp_path / "straight", tmp_path / "run")
    assert sorted(
        checkpoint_run_id(folder) == trainer.run_id for folder in (tmp_path / "run").glob("checkpoint-*")
    ) == [
        False,
        False,
        True,
        True,  # the earlier run's checkpoint-8 and checkpoint-16, this run's 5 and 10
    ]


def test_resuming_a_checkpoint_saved_inside_an_epoch_says_it_is_not_exact(
    inputs: tuple[Path, Path], tmp_path: Path, caplog
) -> None:
    """checkpoint-3 of a 5-step epoch was saved after the data loader had prepared batch 4 (accelerate fetches one
    batch ahead), with the random states after it: resuming it warns that the augmentations will differ; resuming
    checkpoint-5, at the epoch end, does not warn (it is exact)."""
    options = dict(epochs=1, batch_size=2, grad_accum_steps=1, device="cpu", tensorboard=False, num_workers=0)
    options |= dict(disable_tqdm=True, save_strategy="steps", save_steps=3, use_ema=False, eval_strategy="no")
    output = tmp_path / "run"
    fine_tune(inputs[1], inputs[0], output_dir=output, **options)
    assert sorted(path.name for path in output.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-5"]
    warnings = {}
    for step in (3, 5):
        caplog.clear()
        with caplog.at_level("WARNING", logger="hf_rfdetr.training.trainer"):
            resumed = fine_tune(
                inputs[1], inputs[0], output_dir=output, resume=output / f"checkpoint-{step}", **options
            )
        assert resumed.state.global_step == 5
        warnings[step] = [message for message in caplog.messages if "saved inside epoch" in message]
    assert warnings[5] == []
    assert len(warnings[3]) == 1
    assert warnings[3][0].startswith(f"Resuming from {output / 'checkpoint-3'}, saved inside epoch 1 (at epoch 0.6): ")
