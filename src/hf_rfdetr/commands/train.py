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
"""`hf-rfdetr train`: fine-tune on a COCO folder with the original recipe."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune on a COCO folder (train/ valid/ [test/] with _annotations.coco.json)",
        description="Fine-tune RF-DETR with the original recipe on the Hugging Face Trainer. A Seg model (seg-nano, "
        "RFDETRSegNano, ... or a folder of one) trains instance segmentation on the folder's COCO segmentation masks.",
    )
    parser.add_argument("--dataset-dir", required=True, help="COCO folder with train/ valid/ [test/]")
    parser.add_argument(
        "--model",
        default="base",
        help="checkpoint name (base, nano, ..., seg-nano, ...: its COCO weights, as the original's train()), Hub id "
        "or local folder (default: base)",
    )
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="start a checkpoint name's architecture from random weights instead of its COCO checkpoint",
    )
    parser.add_argument("--output-dir", default="output", help="where checkpoints and the final model go")
    for name, kind, default, text in (
        ("epochs", int, 100, "passes over the training set"),
        ("batch-size", int, 4, "images per device and step"),
        ("grad-accum-steps", int, 4, "steps accumulated per update (total batch = batch size x this x devices)"),
        ("lr", float, 1e-4, "learning rate (decoder: x0.7)"),
        ("lr-encoder", float, 1.5e-4, "learning rate of the DINOv2 encoder (with layer-wise decay)"),
        ("resolution", int, None, "input size, a multiple of patch_size x num_windows (default: the model's)"),
        ("weight-decay", float, 1e-4, "AdamW weight decay"),
        ("warmup-epochs", float, 0.0, "epochs of linear learning-rate warmup from 0"),
        ("lr-drop", float, 100, "epoch from which the learning rates are x0.1, as the original's step schedule"),
        ("checkpoint-interval", int, 10, "epochs between kept checkpoints"),
        ("early-stopping-patience", int, 10, "evaluations without improvement before stopping"),
        ("early-stopping-min-delta", float, 0.001, "mAP gain that counts as an improvement"),
        ("num-workers", int, 2, "data loading processes"),
        ("seed", int, 42, "random seed"),
    ):
        stated = "" if default is None else f" (default: {default})"  # a None default states its own in the text
        parser.add_argument(f"--{name}", type=kind, default=default, help=text + stated)
    parser.add_argument("--device", help="cpu, cuda, ... (default: what is available)")
    parser.add_argument("--resume", help="checkpoint folder to continue from, or 'last'")
    parser.add_argument("--project", help="Weights & Biases project")
    parser.add_argument("--run", help="run name")
    for flag, text in (
        ("no-ema", "do not keep an exponential moving average of the weights"),
        ("gradient-checkpointing", "recompute activations in the backward pass to save memory"),
        ("no-tensorboard", "do not log to TensorBoard"),
        ("wandb", "log to Weights & Biases"),
        ("early-stopping", "stop when validation mAP (mask mAP for a Seg model) stops improving"),
        ("early-stopping-use-ema", "watch the EMA weights' mAP for early stopping"),
    ):
        parser.add_argument(f"--{flag}", action="store_true", help=text)
    parser.set_defaults(run_command=run)


def run(args: argparse.Namespace) -> int:
    if args.epochs <= 0:  # before anything is loaded: 0 epochs would save the untrained model as the trained one
        raise ValueError(
            f"--epochs {args.epochs}: the number of passes over the training set must be at least 1 (default: 100)"
        )
    from ..training.options import TRAINING_NUMBERS, check_training_numbers

    # before anything is loaded: a batch size of 0, a negative learning rate, ... failed late, in torch or the Trainer
    numbers = {name: getattr(args, name) for name in TRAINING_NUMBERS}
    check_training_numbers(numbers, spelling=_flag)
    from ..extras import require

    require("train", "hf-rfdetr train")
    from ..pretrained_weights import pretrained, resolve_name
    from ..training import fine_tune

    if not Path(args.dataset_dir).is_dir():  # before a checkpoint is downloaded
        raise FileNotFoundError(f"--dataset-dir {args.dataset_dir}: no such folder")
    model = args.model
    if resolve_name(model) and not args.from_scratch and not Path(model).exists():
        model = pretrained(model)  # the COCO checkpoint, as RFDETRBase().train(): downloaded on first use
    trainer = fine_tune(
        model,
        args.dataset_dir,
        model_name=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum_steps=args.grad_accum_steps,
        lr=args.lr,
        lr_encoder=args.lr_encoder,
        resolution=args.resolution,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        lr_drop=args.lr_drop,
        device=args.device,
        use_ema=not args.no_ema,
        gradient_checkpointing=args.gradient_checkpointing,
        checkpoint_interval=args.checkpoint_interval,
        resume=True if args.resume == "last" else args.resume,
        tensorboard=not args.no_tensorboard,
        wandb=args.wandb,
        project=args.project,
        run=args.run,
        early_stopping=args.early_stopping,
        early_stopping_patience=args.early_stopping_patience,
        early_stopping_min_delta=args.early_stopping_min_delta,
        early_stopping_use_ema=args.early_stopping_use_ema,
        output_dir=args.output_dir,
        num_workers=args.num_workers,
        seed=args.seed,
    )
    evaluations = [entry for entry in trainer.state.log_history if "eval_map" in entry]
    if evaluations:
        last = evaluations[-1]
        masks = (
            f", mask mAP {last['eval_segm_map']:.4f}, mask mAP50 {last['eval_segm_map_50']:.4f}"
            if "eval_segm_map" in last
            else ""
        )
        print(
            f"validation mAP {last['eval_map']:.4f}, mAP50 {last['eval_map_50']:.4f}{masks} (epoch {last['epoch']:.0f})"
        )
    print(f"saved the fine-tuned model to {args.output_dir}")
    return 0


def _flag(name: str, value: float) -> str:
    """`--batch-size 0`: an option as typed on the command line (floats without a trailing .0)."""
    return f"--{name.replace('_', '-')} {value if isinstance(value, int) else format(value, 'g')}"
