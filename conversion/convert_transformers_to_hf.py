"""Convert a checkpoint of transformers' own RF-DETR (`RfDetrForObjectDetection`, model_type "rf_detr") into a
folder of this package (config.json with model_type "rfdetr", model.safetensors, preprocessor_config.json).

python conversion/convert_transformers_to_hf.py --checkpoint Roboflow/rf-detr-base --output rf-detr-base-hf --verify
    [--resolution 560] [--projector-layer-norm-eps 1e-6]

The projector LayerNorms take the original rfdetr package's epsilon 1e-6 unless --projector-layer-norm-eps says
otherwise, as when such a folder is loaded on the fly (`RFDetrForObjectDetection.from_pretrained(folder)`,
`hf_rfdetr.pretrained`): both give the same folder.
"""

from __future__ import annotations

import argparse
import logging
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert a transformers RfDetrForObjectDetection checkpoint (local folder or Hub repository) "
        "into an hf_rfdetr folder loadable with AutoModelForObjectDetection after `import hf_rfdetr`."
    )
    parser.add_argument("--checkpoint", required=True, metavar="FOLDER_OR_REPO", help="transformers folder or Hub id")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run both models on the same images first and fail if logits or boxes differ by more than 1e-4",
    )
    parser.add_argument(
        "--resolution",
        type=int,
        help="inference resolution (default: the checkpoint's image processor size, else the matching variant's)",
    )
    parser.add_argument(
        "--projector-layer-norm-eps",
        type=_positive_float,
        metavar="EPS",
        help="epsilon of the projector LayerNorms (default: 1e-6, the original rfdetr package's, as loading the "
        "folder on the fly uses). transformers applies its layer_norm_eps (default 1e-5) to the projector's "
        "convolution blocks but 1e-6 to its output norm, which one epsilon cannot reproduce: 1e-6 computes what the "
        "original computes with these weights; the checkpoint's layer_norm_eps follows transformers' convolution "
        "blocks instead",
    )
    return parser.parse_args(argv)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="%(message)s")
    logging.getLogger("hf_rfdetr.transformers_checkpoints").setLevel(logging.INFO)
    from hf_rfdetr.conversion import CheckpointError
    from hf_rfdetr.conversion_transformers import convert_transformers_checkpoint

    # Without the flag the converter's default applies: the one the on-load conversion uses.
    eps = {} if args.projector_layer_norm_eps is None else {"projector_layer_norm_eps": args.projector_layer_norm_eps}
    try:
        folder = convert_transformers_checkpoint(
            args.checkpoint, args.output, verify=args.verify, resolution=args.resolution, **eps
        )
    except (CheckpointError, ValueError, KeyError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {folder}" + (" (verified against transformers' RfDetrForObjectDetection)" if args.verify else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
