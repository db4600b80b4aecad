"""Convert an original rfdetr `.pth` checkpoint into a Hugging Face folder (same as `hf-rfdetr convert`).

python conversion/convert_rfdetr_to_hf.py rf-detr-base.pth rf-detr-base-hf --verify [--weights ema]
    [--variant base] [--push-to-hub org/rf-detr-base]
"""

import sys

from hf_rfdetr.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
