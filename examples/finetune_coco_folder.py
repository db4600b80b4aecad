"""Fine-tune RF-DETR on a COCO folder with `hf_rfdetr.fine_tune`, then evaluate it on the test split.

The folder is a Roboflow-style COCO export: `train/`, `valid/` and optionally `test/`, each with
`_annotations.coco.json` and the images. The fine-tuned model, its EMA weights (`ema/`), `eval_results.json` and a
model card go to `--output-dir`; the card is then refreshed with the test metrics. Add `--push-to-hub ORG/NAME` to
upload the result.

    python examples/finetune_coco_folder.py --dataset-dir my-dataset --model nano --epochs 20 --output-dir rf-detr-mine
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import hf_rfdetr
from hf_rfdetr.commands.eval import evaluate_coco_folder, format_report
from hf_rfdetr.model_card import Evaluation, read_evaluations, write_model_card


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset-dir", required=True, help="COCO folder with train/ valid/ [test/]")
    parser.add_argument("--model", default="nano", help="variant name, Hub id or local folder (default: nano)")
    parser.add_argument("--output-dir", default="rf-detr-finetuned", help="where the model goes")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum-steps", type=int, default=4, help="total batch = batch size x this (16)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--resolution", type=int, help="input size, a multiple of the model's block size")
    parser.add_argument("--device", help="cpu, cuda, ... (default: what is available)")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the fine-tuned model to this Hub repository")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    trainer = hf_rfdetr.fine_tune(
        args.model,
        args.dataset_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum_steps=args.grad_accum_steps,
        lr=args.lr,
        resolution=args.resolution,
        device=args.device,
        num_workers=args.num_workers,
        tensorboard=False,
        output_dir=args.output_dir,
    )
    print(f"trained {trainer.state.global_step} steps; saved to {args.output_dir}")

    # Evaluate the saved model on the held-out split, as `hf-rfdetr eval` does, and add the result to the card.
    split = "test" if (Path(args.dataset_dir) / "test").is_dir() else "validation"
    result = evaluate_coco_folder(
        args.output_dir, args.dataset_dir, split, batch_size=args.batch_size, device=args.device
    )
    print(format_report(result))
    output = Path(args.output_dir)
    (output / f"{split}_metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    evaluations = [*read_evaluations(output), Evaluation(split, result["metrics"], source=f"{split}_metrics.json")]
    write_model_card(output, metrics=evaluations)
    if args.push_to_hub:
        hf_rfdetr.push_to_hub(output, args.push_to_hub, metrics=evaluations)
        print(f"pushed to https://huggingface.co/{args.push_to_hub}")
    return result


if __name__ == "__main__":
    main()
