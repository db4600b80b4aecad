"""The `hf-rfdetr` command."""

from __future__ import annotations

import argparse
import sys


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an original rfdetr .pth checkpoint into a Hugging Face folder",
        description="Convert an original rfdetr checkpoint (.pth) into a folder with config.json, model.safetensors, "
        "preprocessor_config.json, the model code and a model card.",
    )
    parser.add_argument("checkpoint", help="path to the original .pth checkpoint")
    parser.add_argument("output", help="folder to write")
    parser.add_argument(
        "--variant",
        help="nano, small, medium, base, large or large-legacy (default: read from the checkpoint)",
    )
    parser.add_argument(
        "--weights", choices=("model", "ema"), default="model", help="regular or EMA weights (training checkpoints)"
    )
    parser.add_argument("--verify", action="store_true", help="compare outputs with the original rfdetr package")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the folder to this Hub repository")
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling when weights_only loading fails (only for files you trust: it can run code)",
    )
    parser.set_defaults(run_command=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from .conversion import convert_checkpoint

    folder = convert_checkpoint(
        args.checkpoint,
        args.output,
        variant=args.variant,
        weights=args.weights,
        verify=args.verify,
        push_to_hub=args.push_to_hub,
        trust=args.trust_checkpoint,
    )
    print(f"wrote {folder}" + (" (verified against rfdetr)" if args.verify else ""))
    return 0


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune on a COCO folder (train/ valid/ [test/] with _annotations.coco.json)",
        description="Fine-tune RF-DETR with the original recipe on the Hugging Face Trainer.",
    )
    parser.add_argument("--dataset-dir", required=True, help="COCO folder with train/ valid/ [test/]")
    parser.add_argument("--model", default="base", help="variant name, Hub id or local folder (default: base)")
    parser.add_argument("--output-dir", default="output", help="where checkpoints and the final model go")
    for name, kind, default, text in (
        ("epochs", int, 100, "passes over the training set"),
        ("batch-size", int, 4, "images per device and step"),
        ("grad-accum-steps", int, 4, "steps accumulated per update (total batch = batch size x this x devices)"),
        ("lr", float, 1e-4, "learning rate (decoder: x0.7)"),
        ("lr-encoder", float, 1.5e-4, "learning rate of the DINOv2 encoder (with layer-wise decay)"),
        ("resolution", int, None, "input size, a multiple of patch_size x num_windows (default: the model's)"),
        ("weight-decay", float, 1e-4, "AdamW weight decay"),
        ("checkpoint-interval", int, 10, "epochs between kept checkpoints"),
        ("early-stopping-patience", int, 10, "evaluations without improvement before stopping"),
        ("early-stopping-min-delta", float, 0.001, "mAP gain that counts as an improvement"),
        ("num-workers", int, 2, "data loading processes"),
        ("seed", int, 42, "random seed"),
    ):
        parser.add_argument(f"--{name}", type=kind, default=default, help=f"{text} (default: {default})")
    parser.add_argument("--device", help="cpu, cuda, ... (default: what is available)")
    parser.add_argument("--resume", help="checkpoint folder to continue from, or 'last'")
    parser.add_argument("--project", help="Weights & Biases project")
    parser.add_argument("--run", help="run name")
    for flag, text in (
        ("no-ema", "do not keep an exponential moving average of the weights"),
        ("gradient-checkpointing", "recompute activations in the backward pass to save memory"),
        ("no-tensorboard", "do not log to TensorBoard"),
        ("wandb", "log to Weights & Biases"),
        ("early-stopping", "stop when validation mAP stops improving"),
        ("early-stopping-use-ema", "watch the EMA weights' mAP for early stopping"),
    ):
        parser.add_argument(f"--{flag}", action="store_true", help=text)
    parser.set_defaults(run_command=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from .training import fine_tune

    trainer = fine_tune(
        args.model,
        args.dataset_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum_steps=args.grad_accum_steps,
        lr=args.lr,
        lr_encoder=args.lr_encoder,
        resolution=args.resolution,
        weight_decay=args.weight_decay,
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
        print(f"validation mAP {last['eval_map']:.4f}, mAP50 {last['eval_map_50']:.4f} (epoch {last['epoch']:.0f})")
    print(f"saved the fine-tuned model to {args.output_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-rfdetr", description="RF-DETR object detection with Hugging Face")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_convert(subparsers)
    _add_train(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run_command(args)
    except (ValueError, OSError) as error:  # bad input: say what is wrong, no traceback
        print(f"hf-rfdetr {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
