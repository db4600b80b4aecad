"""Run by tests/test_training_resume.py in a subprocess: a tiny `fine_tune` that the test SIGKILLs.

    python tests/resume_worker.py DATASET_DIR MODEL_DIR OUTPUT_DIR EPOCHS RESUME(0|1)

With `RESUME_TEST_PAUSE=POINT:STEP` the run stops at POINT of the save of `checkpoint-STEP`, creates the file named by
`RESUME_TEST_SIGNAL` and sleeps until it is killed, so that the test's SIGKILL lands exactly there:

- `model`: the model weights are written, nothing else (no optimizer, RNG state, EMA, marker);
- `ema`: inside the EMA save, after `ema/model.safetensors` and before `ema/config.json` and `ema/ema_state.json`;
- `marker`: everything is written except `checkpoint_complete.json`;
- `complete`: right after the checkpoint was marked complete (a kill after the checkpoint).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hf_rfdetr.training.checkpoints as checkpoints  # noqa: E402
import hf_rfdetr.training.ema as ema  # noqa: E402
import hf_rfdetr.training.trainer as trainer  # noqa: E402
from hf_rfdetr import fine_tune  # noqa: E402

#: The tiny run's settings, shared with the test (which also checks the run it compares to).
SETTINGS = dict(
    batch_size=2,
    grad_accum_steps=1,
    lr=1e-3,
    device="cpu",
    tensorboard=False,
    num_workers=0,
    checkpoint_interval=1,
    save_total_limit=1,
    disable_tqdm=True,
)


def _stop_here() -> None:
    Path(os.environ["RESUME_TEST_SIGNAL"]).write_text(str(os.getpid()))
    time.sleep(600)
    raise SystemExit("resume_worker: nobody killed me")


def _install_pause(point: str, step: int) -> None:
    """Wrap the function that runs at `point` so that it stops there during the save of checkpoint-`step`."""

    def at_step(folder) -> bool:
        return f"checkpoint-{step}" in Path(folder).parts

    if point == "model":
        original_save_model = trainer.RFDetrTrainer.save_model

        def save_model(self, output_dir=None, _internal_call=False):
            original_save_model(self, output_dir, _internal_call)
            if output_dir is not None and at_step(output_dir):
                _stop_here()

        trainer.RFDetrTrainer.save_model = save_model
    elif point == "ema":
        original_save_file = ema.save_file

        def save_file(tensors, filename, metadata=None):
            original_save_file(tensors, filename, metadata=metadata)
            if at_step(Path(filename).parent):
                _stop_here()

        ema.save_file = save_file
    elif point in ("marker", "complete"):
        original_mark_complete = checkpoints.mark_complete

        def mark_complete(folder, global_step, **kwargs):
            if point == "marker" and at_step(folder):
                _stop_here()
            original_mark_complete(folder, global_step, **kwargs)
            if point == "complete" and at_step(folder):
                _stop_here()

        trainer.mark_complete = mark_complete
    else:
        raise ValueError(f"unknown RESUME_TEST_PAUSE point {point!r}")


def main(dataset_dir: str, model: str, output_dir: str, epochs: str, resume: str) -> None:
    if os.environ.get("RESUME_TEST_PAUSE"):
        point, step = os.environ["RESUME_TEST_PAUSE"].split(":")
        _install_pause(point, int(step))
    fine_tune(model, dataset_dir, epochs=int(epochs), resume=resume == "1", output_dir=output_dir, **SETTINGS)


if __name__ == "__main__":
    main(*sys.argv[1:6])
