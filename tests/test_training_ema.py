"""EMA of the weights during HF Trainer training: the original's formula, safetensors checkpoints, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from hf_rfdetr import RFDetrForObjectDetection
from hf_rfdetr.training import RFDetrEMACallback

from .conftest import tiny_config


class _Boxes(torch.utils.data.Dataset):
    """Eight random images, each with one box of a known class."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(8, 3, 64, 64, generator=generator)
        self.boxes = torch.rand(8, 4, generator=generator) * 0.4 + 0.2

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        label = {"class_labels": torch.tensor([index % 3]), "boxes": self.boxes[index : index + 1]}
        return {"pixel_values": self.images[index], "labels": label}


def _collate(batch: list[dict]) -> dict:
    return {"pixel_values": torch.stack([b["pixel_values"] for b in batch]), "labels": [b["labels"] for b in batch]}


def _train(output_dir: Path, callback: RFDetrEMACallback, resume: str | None = None) -> RFDetrForObjectDetection:
    torch.manual_seed(0)
    model = RFDetrForObjectDetection(tiny_config())
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=6,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        save_steps=3,
        logging_steps=3,
        report_to=[],
        use_cpu=True,
        seed=0,
        remove_unused_columns=False,
    )
    Trainer(model=model, args=args, train_dataset=_Boxes(), data_collator=_collate, callbacks=[callback]).train(
        resume_from_checkpoint=resume
    )
    return model


def test_update_follows_the_original_formula() -> None:
    """The first update copies the weights (the original's AveragedModel; it blended with decay 0.0099, keeping 1%
    of the initial weights), the second blends with decay 0.993 * (1 - exp(-2 / 100))."""
    model = RFDetrForObjectDetection(tiny_config())
    callback = RFDetrEMACallback(decay=0.993, tau=100)
    callback.shadow = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    with torch.no_grad():
        model.class_embed.weight.add_(1.0)
    callback.update(model)
    torch.testing.assert_close(callback.shadow["class_embed.weight"], model.class_embed.weight, rtol=0, atol=0)
    before = callback.shadow["class_embed.weight"].clone()
    with torch.no_grad():
        model.class_embed.weight.add_(1.0)
    callback.update(model)
    decay = 0.993 * (1 - math.exp(-2 / 100))
    expected = decay * before + (1 - decay) * model.class_embed.weight
    torch.testing.assert_close(callback.shadow["class_embed.weight"], expected)
    assert callback.updates == 3 and callback.current_decay() == 0.993 * (1 - math.exp(-3 / 100))


def test_updates_equal_torch_averaged_model() -> None:
    """Update by update, the average equals the original's: torch's AveragedModel with rfdetr's multi_avg_fn
    (decay * (1 - exp(-(n_averaged + 1) / tau)), buffers averaged too)."""
    from torch.optim.swa_utils import AveragedModel

    def multi_avg(averaged, current, n_averaged) -> None:
        if not averaged[0].is_floating_point():  # num_batches_tracked: not in the shadow (float entries only)
            return
        decay = 0.9 * (1 - math.exp(-(int(n_averaged) + 1) / 2))
        torch._foreach_mul_(averaged, decay)
        torch._foreach_add_(averaged, current, alpha=1 - decay)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    reference = AveragedModel(model, use_buffers=True, multi_avg_fn=multi_avg)
    callback = RFDetrEMACallback(decay=0.9, tau=2)
    callback.shadow = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    for _ in range(5):
        with torch.no_grad():
            model[0].weight.add_(torch.randn_like(model[0].weight))
            model[1].running_mean.add_(torch.randn(4))
        reference.update_parameters(model)
        callback.update(model)
        expected = reference.module.state_dict()
        for name, value in callback.shadow.items():
            torch.testing.assert_close(value, expected[name], msg=name)


def test_trainer_saves_and_resumes_the_average(tmp_path: Path) -> None:
    straight = RFDetrEMACallback(decay=0.9, tau=2)
    model = _train(tmp_path / "straight", straight)
    checkpoint = tmp_path / "straight" / "checkpoint-6"
    assert (checkpoint / "model.safetensors").exists() and (checkpoint / "ema" / "model.safetensors").exists()
    assert straight.updates == 7  # one update per optimizer step, counted from 1
    ema_model = RFDetrForObjectDetection.from_pretrained(checkpoint / "ema")
    torch.testing.assert_close(ema_model.class_embed.weight, straight.shadow["class_embed.weight"])
    assert (ema_model.class_embed.weight - model.class_embed.weight).abs().max() > 1e-5  # the average lags
    # The folder carries the code its auto_map names, as the regular checkpoint does (trust_remote_code loading).
    config = json.loads((checkpoint / "ema" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForObjectDetection"].startswith("modeling_rfdetr.")
    assert {p.name for p in (checkpoint / "ema").glob("*.py")} >= {"modeling_rfdetr.py", "configuration_rfdetr.py"}

    # Stop after step 3, resume from checkpoint-3: the average continues exactly.
    resumed = RFDetrEMACallback(decay=0.9, tau=2)
    _train(tmp_path / "resumed", RFDetrEMACallback(decay=0.9, tau=2))
    _train(tmp_path / "resumed", resumed, resume=str(tmp_path / "resumed" / "checkpoint-3"))
    assert resumed.updates == 7
    for name, value in straight.shadow.items():
        torch.testing.assert_close(resumed.shadow[name], value, atol=1e-5, rtol=1e-4, msg=name)


def test_swapped_in_restores_the_weights() -> None:
    model = RFDetrForObjectDetection(tiny_config())
    callback = RFDetrEMACallback()
    callback.shadow = {k: torch.zeros_like(v) for k, v in model.state_dict().items() if v.is_floating_point()}
    original = model.class_embed.weight.clone()
    with callback.swapped_in(model):
        assert torch.count_nonzero(model.class_embed.weight) == 0
    torch.testing.assert_close(model.class_embed.weight, original)
