# Copyright 2026 The hf_rfdetr Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Exponential moving average of the weights as a `TrainerCallback` (the original's ModelEma).

After every `update_interval`-th optimizer step: the first update copies the weights (as the original's
`torch.optim.swa_utils.AveragedModel`), each later one sets ema = d * ema + (1 - d) * weights with
d = decay * (1 - exp(-updates / tau)), `updates` being the update's number (2 for the second), so early updates
follow the weights closely.
Every Trainer checkpoint gets an `ema/` folder (config.json + model.safetensors, loadable with `from_pretrained`
and holding the update count) and resuming restores it. With `RFDetrTrainer` the folder is written inside the
checkpoint save, before the checkpoint is marked complete (see `checkpoints.py`); with a plain `Trainer`, in
`on_save`. With `load_best_model_at_end`, the average of the best checkpoint is restored at the end of training, as
its weights are.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import logging

EMA_FOLDER = "ema"

logger = logging.get_logger(__name__)


class RFDetrEMACallback(TrainerCallback):
    def __init__(self, decay: float = 0.993, tau: float = 100.0, update_interval: int = 1) -> None:
        self.decay, self.tau, self.update_interval = decay, tau, max(1, int(update_interval))
        self.shadow: dict[str, torch.Tensor] | None = None
        self.updates = 1
        #: Where `on_train_begin` reads the average when resuming (set by `RFDetrTrainer.train`); by default
        #: `output_dir/checkpoint-{global_step}/ema`.
        self.resume_from: Path | None = None
        #: Whether `on_save` writes the average (`RFDetrTrainer` turns this off: it writes it in its checkpoint save).
        self.save_on_checkpoint = True

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau)) if self.tau > 0 else self.decay

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        self.updates = 1
        if state.global_step > 0:  # resuming: the checkpoint we resume from holds the average
            folder = self.resume_from or Path(args.output_dir) / f"checkpoint-{state.global_step}" / EMA_FOLDER
            if not (folder / "model.safetensors").exists():
                raise FileNotFoundError(f"resuming with EMA but {folder / 'model.safetensors'} is missing")
            self.load(folder, model.device if hasattr(model, "device") else None)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        """With `load_best_model_at_end` the Trainer has just restored the weights of the best checkpoint: restore its
        average too (its `ema/` folder), so that the EMA weights evaluated, saved or exported after training are
        the best checkpoint's, not the last step's."""
        if self.shadow is None or not args.load_best_model_at_end or not state.best_model_checkpoint:
            return
        folder = Path(state.best_model_checkpoint) / EMA_FOLDER
        if not (folder / "model.safetensors").is_file():
            logger.warning(
                f"load_best_model_at_end: {folder / 'model.safetensors'} is missing, the EMA weights stay the last "
                "step's"
            )
            return
        self.load(folder, getattr(model, "device", None))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One update; `updates` counts from 1, the number of the update to come (the first is a copy)."""
        state = model.state_dict()
        averaged = list(self.shadow.values())
        current = [state[name].detach() for name in self.shadow]
        if self.updates <= 1:  # AveragedModel.update_parameters with n_averaged == 0
            torch._foreach_copy_(averaged, current)
        else:
            decay = self.current_decay()
            torch._foreach_mul_(averaged, decay)
            torch._foreach_add_(averaged, current, alpha=1.0 - decay)
        self.updates += 1

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.shadow is not None and state.global_step % self.update_interval == 0:
            self.update(model)

    def on_save(self, args, state, control, model=None, **kwargs):
        if self.save_on_checkpoint and self.shadow is not None and state.is_world_process_zero:
            self.save(Path(args.output_dir) / f"checkpoint-{state.global_step}" / EMA_FOLDER, model)

    def save(self, folder: str | os.PathLike, model: torch.nn.Module) -> None:
        """Write the averaged weights as a model folder (`from_pretrained` loads it)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        state.update({k: v.detach().cpu().contiguous() for k, v in self.shadow.items()})
        save_file(state, folder / "model.safetensors", metadata={"format": "pt", "ema_updates": str(self.updates)})
        model.config.save_pretrained(folder)
        if getattr(model, "_auto_class", None) is not None:  # the code files its config's auto_map names
            custom_object_save(model, folder, config=model.config)
        (folder / "ema_state.json").write_text(
            json.dumps({"updates": self.updates, "decay": self.decay, "tau": self.tau})
        )

    def load(self, folder: str | os.PathLike, device: torch.device | None = None) -> None:
        folder = Path(folder)
        weights = load_file(folder / "model.safetensors", device=str(device) if device is not None else "cpu")
        missing = set(self.shadow) - set(weights)
        if missing:
            raise ValueError(f"{folder / 'model.safetensors'} lacks EMA weights for {sorted(missing)[:5]}")
        self.shadow = {name: weights[name].to(self.shadow[name].dtype) for name in self.shadow}
        self.updates = json.loads((folder / "ema_state.json").read_text())["updates"]

    @contextmanager
    def swapped_in(self, model: torch.nn.Module):
        """Temporarily put the averaged weights into `model` (for evaluation or export)."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield model
        finally:
            model.load_state_dict(backup, strict=False)
