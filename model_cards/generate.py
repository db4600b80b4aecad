"""Write or refresh the model card (README.md) of a saved RF-DETR model folder.

The card is filled from the folder's config.json (variant, parameters, resolution, labels), the COCO metrics its
training left there (eval_results.json / test_results.json, else the last evaluation in trainer_state.json) or a
metrics file, and the arguments below. A card this generator wrote before keeps its source, dataset and training
lines unless new ones are given; a README.md without the generator's marker line is replaced only with --force.

    python model_cards/generate.py output --repo-id my-org/rf-detr-shapes --dataset my-org/shapes
    python model_cards/generate.py output --metrics test-metrics.json   # from `hf-rfdetr eval --output-json`
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hf_rfdetr.model_card import is_generated_card, load_evaluation_file, model_card_for_folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="saved model folder (config.json, model.safetensors, ...)")
    parser.add_argument("--repo-id", help="Hub repository the usage snippets load (default: the folder's name)")
    parser.add_argument("--dataset", help="training dataset: a Hub dataset id (linked, in the metadata) or text")
    parser.add_argument("--metrics", type=Path, help="JSON metrics file (hf-rfdetr eval --output-json, *_results.json)")
    parser.add_argument("--source", help="where the weights come from (default: kept, or guessed from the folder)")
    parser.add_argument("--training", help="one line on how the model was trained")
    parser.add_argument("--no-code", action="store_true", help="snippets for a repository without the model code")
    parser.add_argument("--stdout", action="store_true", help="print the card instead of writing README.md")
    parser.add_argument("--force", action="store_true", help="replace a README.md this generator did not write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    readme = args.folder / "README.md"
    try:
        card = model_card_for_folder(
            args.folder,
            args.repo_id,
            dataset=args.dataset,
            metrics=[load_evaluation_file(args.metrics)] if args.metrics else None,
            source=args.source,
            training=args.training,
            remote_code=False if args.no_code else None,
        )
    except (OSError, ValueError) as error:
        print(f"generate.py: error: {error}", file=sys.stderr)
        return 1
    if args.stdout:
        print(card)
        return 0
    if readme.is_file() and not args.force and not is_generated_card(readme.read_text(encoding="utf-8")):
        print(
            f"generate.py: error: {readme} was not written by this generator; pass --force to replace it",
            file=sys.stderr,
        )
        return 1
    readme.write_text(card, encoding="utf-8")
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
