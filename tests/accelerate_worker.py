"""Run by `accelerate launch` in tests/test_accelerate.py: fine-tune the tiny model on every process and record,
per rank, what it trained on and a fingerprint of its final weights."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_rfdetr import fine_tune  # noqa: E402


def fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(dataset_dir: str, model: str, output_dir: str) -> None:
    trainer = fine_tune(
        model,
        dataset_dir,
        epochs=2,
        batch_size=2,
        grad_accum_steps=1,
        lr=1e-3,
        device="cpu",
        tensorboard=False,
        num_workers=0,
        checkpoint_interval=1,
        output_dir=output_dir,
    )
    rank = trainer.args.process_index
    evaluation = trainer.evaluate()  # on every rank: the loss and the gathering are collective
    record = {
        "rank": rank,
        "world_size": trainer.args.world_size,
        "global_step": trainer.state.global_step,
        "train_batch_size": trainer.args.train_batch_size,
        "samples_per_step": trainer.args.train_batch_size * trainer.args.world_size,
        "weights": fingerprint(trainer.model.state_dict()),
        "eval_map": evaluation.get("eval_map"),
        # the loss and its terms, logged per epoch (averaged over both ranks), and those of the evaluation
        "train_logs": [entry for entry in trainer.state.log_history if "loss" in entry],
        "evaluation_losses": {key: value for key, value in evaluation.items() if key.startswith("eval_loss")},
    }
    (Path(output_dir) / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:4])
