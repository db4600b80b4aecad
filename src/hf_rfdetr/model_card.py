"""Model cards (the README.md of a Hub repository) written from a model's configuration."""

from __future__ import annotations

from .configuration_rfdetr import RFDetrConfig

_TEMPLATE = """---
license: apache-2.0
library_name: transformers
pipeline_tag: object-detection
tags:
- object-detection
- rf-detr
- hf_rfdetr
{datasets}---

# {title}

RF-DETR{variant_text}: a real-time transformer object detector (windowed DINOv2 backbone, multi-scale projector,
LW-DETR-style deformable decoder, Group DETR training) in Hugging Face `transformers` form, from
[hf_rfdetr](https://pypi.org/project/hf-rfdetr/).

| | |
|---|---|
| parameters | {parameters:,} |
| input resolution | {resolution} x {resolution} (height and width multiples of {block_size}) |
| labels | {num_labels} |
| source | {source} |
{metrics}
## Usage

```python
from transformers import pipeline

detector = pipeline("object-detection", model="{repo_id}", trust_remote_code=True)
detector("image.jpg", threshold=0.5)
```

```python
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForObjectDetection

processor = AutoImageProcessor.from_pretrained("{repo_id}", trust_remote_code=True)
model = AutoModelForObjectDetection.from_pretrained("{repo_id}", trust_remote_code=True).eval()
image = Image.open("image.jpg").convert("RGB")
with torch.no_grad():
    outputs = model(**processor(image, return_tensors="pt"))
detections = processor.post_process_object_detection(outputs, 0.5, [(image.height, image.width)])[0]
```

With `pip install hf-rfdetr`, `import hf_rfdetr` registers the classes and `trust_remote_code` is not needed.
{labels_note}"""


def render_model_card(
    config: RFDetrConfig,
    num_parameters: int,
    repo_id: str = "path/to/this/model",
    source: str = "random initialisation",
    metrics: dict[str, float] | None = None,
    dataset: str | None = None,
) -> str:
    """The model card text for a model with this config."""
    metric_rows = "".join(f"| {name} | {value:.4f} |\n" for name, value in (metrics or {}).items())
    labels = list(config.id2label.values())
    coco_slots = config.num_labels == 91 and "N/A" in labels
    labels_note = (
        "\nThe 91 logit slots are indexed by COCO category id (unused ids are named `N/A`), as in the original "
        "RF-DETR COCO checkpoints.\n"
        if coco_slots
        else f"\nLabels: {', '.join(labels[:20])}{' ...' if len(labels) > 20 else ''}.\n"
    )
    return _TEMPLATE.format(
        datasets=f"datasets:\n- {dataset}\n" if dataset else "",
        title=repo_id.rsplit("/", 1)[-1],
        variant_text=f" {config.variant}" if config.variant else "",
        parameters=num_parameters,
        resolution=config.resolution,
        block_size=config.block_size,
        num_labels=config.num_labels,
        source=source,
        metrics=f"\n| metric | value |\n|---|---|\n{metric_rows}" if metric_rows else "",
        repo_id=repo_id,
        labels_note=labels_note,
    )
