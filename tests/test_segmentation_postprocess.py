"""`RFDetrImageProcessor.post_process_instance_segmentation`: parity with the original `rfdetr` `PostProcess` (masks
resized first, thresholded second), transformers' `segmentation` / `segments_info` and pipeline, COCO RLE, errors, and
the saved folder carrying the post-processing code for `trust_remote_code`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from hf_rfdetr.models.rfdetr.configuration_rfdetr import RFDetrConfig
from hf_rfdetr.models.rfdetr.heads_rfdetr import RFDetrMaskFactors
from hf_rfdetr.models.rfdetr.image_processing_rfdetr import RFDetrImageProcessor

# Pixels whose resized logit lies this close to the threshold may legitimately flip between implementations.
MARGIN = 1e-4


def seg_outputs(
    batch: int = 2, queries: int = 100, classes: int = 91, head: tuple[int, int] = (78, 78), seed: int = 0
) -> SimpleNamespace:
    """Random segmentation-model outputs: logits (some pairs above 0.5), boxes partly outside the image, mask logits."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, queries, classes, generator=generator) * 2 - 5
    centers = torch.rand(batch, queries, 2, generator=generator) * 1.2 - 0.1
    sizes = torch.rand(batch, queries, 2, generator=generator) * 0.7 - 0.05
    masks = torch.randn(batch, queries, *head, generator=generator) * 6 + 1
    return SimpleNamespace(logits=logits, pred_boxes=torch.cat([centers, sizes], -1), pred_masks=masks)


def resized_logits(outputs: SimpleNamespace, image: int, queries: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The selected queries' mask logits resized as the original does (for locating near-threshold pixels)."""
    chosen = outputs.pred_masks[image, queries][:, None]
    return F.interpolate(chosen, size=size, mode="bilinear", align_corners=False)[:, 0]


def assert_masks_match(
    ours: torch.Tensor, expected: torch.Tensor, logits: torch.Tensor, threshold: float = 0.0
) -> None:
    """Equal bool masks except where the resized logit is within `MARGIN` of the threshold (reported: none so far)."""
    assert ours.dtype == torch.bool and ours.shape == expected.shape
    differ = ours != expected
    assert not (differ & ((logits - threshold).abs() > MARGIN)).any()


# ----------------------------------------------------------------------------------------------------------------------
# 1. Parity with the original PostProcess
# ----------------------------------------------------------------------------------------------------------------------


def _original(outputs: SimpleNamespace, target_sizes: torch.Tensor, num_select: int, threshold: float) -> list[dict]:
    """The original's `PostProcess` as `predict` calls it (`score_threshold=threshold`)."""
    from rfdetr.models.postprocess import PostProcess

    raw = {"pred_logits": outputs.logits, "pred_boxes": outputs.pred_boxes, "pred_masks": outputs.pred_masks}
    return PostProcess(num_select=num_select)(raw, target_sizes, score_threshold=threshold)


@pytest.mark.reference
@pytest.mark.parametrize(
    ("sizes", "head"),
    [
        ([(480, 640)], (78, 78)),  # landscape, batch 1
        ([(517, 333), (97, 211), (300, 300)], (40, 40)),  # portrait, odd sizes, batch 3
        ([(123, 457), (601, 89), (55, 55)], (24, 32)),  # a non-square head grid
        ([(64, 48), (35, 90)], (16, 12)),  # integer logits: many exact score ties (stable sort, as the original)
    ],
)
def test_parity_with_original_postprocess(sizes: list[tuple[int, int]], head: tuple[int, int]) -> None:
    outputs = seg_outputs(batch=len(sizes), head=head, seed=len(sizes))
    if len(sizes) == 2:
        outputs.logits = outputs.logits.round().clamp(-3, 2)
    if len(sizes) == 3:
        outputs.logits[1] = -20.0  # an image without detections
    target_sizes = torch.tensor(sizes)
    expected = _original(outputs, target_sizes, num_select=100, threshold=0.5)
    ours = RFDetrImageProcessor(num_top_queries=100).post_process_instance_segmentation(outputs, 0.5, target_sizes)
    assert len(ours) == len(expected) == len(sizes)
    for index, (mine, ref, size) in enumerate(zip(ours, expected, sizes)):
        assert torch.equal(mine["scores"], ref["scores"])
        assert torch.equal(mine["labels"], ref["labels"])
        assert torch.equal(mine["boxes"], ref["boxes"])
        assert mine["masks"].shape == (len(ref["scores"]), *size)
        queries = torch.div(
            torch.argsort(outputs.logits[index].sigmoid().flatten(), descending=True, stable=True)[
                : len(ref["scores"])
            ],
            outputs.logits.shape[-1],
            rounding_mode="floor",
        )
        assert_masks_match(mine["masks"], ref["masks"][:, 0], resized_logits(outputs, index, queries, size))
    if len(sizes) == 3:
        assert ours[1]["masks"].shape == (0, *sizes[1]) and ours[1]["segments_info"] == []
        assert (ours[1]["segmentation"] == -1).all()
    assert sum(len(r["scores"]) for r in ours) > 10  # the comparison covered real instances


@pytest.mark.reference
def test_parity_every_selected_pair_and_num_select_of_seg_nano() -> None:
    """Threshold 0 keeps all `num_select` pairs; `from_config` of a Seg variant selects the original's `num_select`."""
    from rfdetr.config import RFDETRSegNanoConfig

    processor = RFDetrImageProcessor.from_config(RFDetrConfig.from_variant("seg-nano"))
    assert processor.num_top_queries == RFDETRSegNanoConfig(device="cpu").num_select == 100
    outputs = seg_outputs(batch=1, queries=100, classes=91, head=(20, 20), seed=7)
    target_sizes = torch.tensor([[61, 47]])
    expected = _original(outputs, target_sizes, num_select=100, threshold=0.0)[0]
    ours = processor.post_process_instance_segmentation(outputs, 0.0, target_sizes)[0]
    assert ours["scores"].shape == (100,)
    assert torch.equal(ours["labels"], expected["labels"]) and torch.equal(ours["boxes"], expected["boxes"])
    queries = torch.div(
        torch.argsort(outputs.logits[0].sigmoid().flatten(), descending=True, stable=True)[:100],
        91,
        rounding_mode="floor",
    )
    assert_masks_match(ours["masks"], expected["masks"][:, 0], resized_logits(outputs, 0, queries, (61, 47)))


# ----------------------------------------------------------------------------------------------------------------------
# 2. Semantics (both environments)
# ----------------------------------------------------------------------------------------------------------------------


def test_masks_are_resized_first_and_thresholded_second() -> None:
    outputs = seg_outputs(batch=1, queries=30, classes=5, head=(12, 16), seed=1)
    result = RFDetrImageProcessor(num_top_queries=30).post_process_instance_segmentation(outputs, 0.1, [(50, 70)])[0]
    order = torch.argsort(outputs.logits[0].sigmoid().flatten(), descending=True, stable=True)[:30]
    kept = order[outputs.logits[0].sigmoid().flatten()[order] > 0.1]
    logits = resized_logits(outputs, 0, torch.div(kept, 5, rounding_mode="floor"), (50, 70))
    assert len(kept) > 3
    assert torch.equal(result["labels"], kept % 5)
    assert_masks_match(result["masks"], logits > 0, logits)
    # thresholding first and resizing the 0/1 map second would give other masks
    resized_binary = F.interpolate((outputs.pred_masks[0, kept // 5] > 0).float()[:, None], (50, 70), mode="nearest")
    assert not torch.equal(result["masks"], resized_binary[:, 0] > 0.5)


@pytest.mark.parametrize("probability", [0.5, 0.7, 0.05])
def test_mask_threshold_is_a_probability(probability: float) -> None:
    outputs = seg_outputs(batch=1, queries=20, classes=3, head=(10, 10), seed=2)
    processor = RFDetrImageProcessor(num_top_queries=20)
    result = processor.post_process_instance_segmentation(outputs, 0.0, [(33, 41)], mask_threshold=probability)[0]
    queries = torch.div(
        torch.argsort(outputs.logits[0].sigmoid().flatten(), descending=True, stable=True)[:20],
        3,
        rounding_mode="floor",
    )
    logits = resized_logits(outputs, 0, queries, (33, 41))
    logit = math.log(probability / (1 - probability))
    assert_masks_match(result["masks"], logits > logit, logits, logit)
    assert_masks_match(result["masks"], logits.sigmoid() > probability, logits, logit)
    if probability == 0.5:
        assert torch.equal(result["masks"], logits > 0)  # exactly the original's rule


def test_no_target_sizes_keeps_head_resolution_and_normalised_boxes() -> None:
    outputs = seg_outputs(batch=2, queries=10, classes=4, head=(9, 13), seed=3)
    processor = RFDetrImageProcessor(num_top_queries=40)
    results = processor.post_process_instance_segmentation(outputs, 0.0)
    detections = processor.post_process_object_detection(outputs, 0.0)
    for result, dets in zip(results, detections):
        assert result["masks"].shape == (40, 9, 13) and result["segmentation"].shape == (9, 13)
        assert torch.equal(result["boxes"], dets["boxes"]) and torch.equal(result["scores"], dets["scores"])
    order = torch.argsort(outputs.logits[0].sigmoid().flatten(), descending=True, stable=True)[:40]
    queries = torch.div(order, 4, rounding_mode="floor")
    assert torch.equal(results[0]["masks"], outputs.pred_masks[0, queries] > 0)


def test_top_k_default_and_override_reuse_the_detection_selection() -> None:
    outputs = seg_outputs(batch=1, queries=20, classes=3, head=(8, 8), seed=4)
    processor = RFDetrImageProcessor(num_top_queries=7)
    assert len(processor.post_process_instance_segmentation(outputs, 0.0)[0]["scores"]) == 7
    assert len(processor.post_process_instance_segmentation(outputs, 0.0, top_k=12)[0]["scores"]) == 12
    assert len(processor.post_process_instance_segmentation(outputs, 0.0, top_k=10**6)[0]["scores"]) == 60
    config = RFDetrConfig.from_variant("seg-medium")
    assert RFDetrImageProcessor.from_config(config).num_top_queries == config.num_queries == 200
    assert RFDetrImageProcessor.from_config(RFDetrConfig.from_variant("nano")).num_top_queries == 300


def test_factored_mask_logits_are_accepted() -> None:
    generator = torch.Generator().manual_seed(5)
    factors = RFDetrMaskFactors(
        torch.randn(1, 8, 6, 7, generator=generator), torch.randn(1, 10, 8, generator=generator), torch.tensor([0.3])
    )
    outputs = seg_outputs(batch=1, queries=10, classes=3, head=(6, 7), seed=5)
    dense = SimpleNamespace(**{**vars(outputs), "pred_masks": factors.dense()})
    processor = RFDetrImageProcessor(num_top_queries=10)
    ours = processor.post_process_instance_segmentation({**vars(outputs), "pred_masks": factors}, 0.0, [(20, 30)])
    assert torch.equal(
        ours[0]["masks"], processor.post_process_instance_segmentation(dense, 0.0, [(20, 30)])[0]["masks"]
    )


def test_pixel_mask_maps_only_the_image_region() -> None:
    """Padded input (keep_aspect_ratio): the image is the top-left 32 x 48 of a 64 x 64 canvas, 8 x 12 of the 16 x 16
    mask grid. With the padding rows/columns equal to the last image ones, the region resize equals the resize of the
    cropped grid."""
    outputs = seg_outputs(batch=1, queries=6, classes=2, head=(16, 16), seed=6)
    region = outputs.pred_masks[0, :, :8, :12]
    outputs.pred_masks[0] = F.pad(region, (0, 4, 0, 8), mode="replicate")
    pixel_mask = torch.zeros(1, 64, 64, dtype=torch.int64)
    pixel_mask[:, :32, :48] = 1
    processor = RFDetrImageProcessor(num_top_queries=12)
    result = processor.post_process_instance_segmentation(outputs, 0.0, [(90, 135)], pixel_mask=pixel_mask)[0]
    queries = torch.div(
        torch.argsort(outputs.logits[0].sigmoid().flatten(), descending=True, stable=True)[:12],
        2,
        rounding_mode="floor",
    )
    expected = F.interpolate(region[queries][:, None], (90, 135), mode="bilinear", align_corners=False)[:, 0]
    assert_masks_match(result["masks"], expected > 0, expected)
    unpadded = processor.post_process_instance_segmentation(outputs, 0.0, [(90, 135)])[0]
    assert not torch.equal(unpadded["masks"], result["masks"])  # without the pixel mask the padding is stretched in
    full = processor.post_process_instance_segmentation(
        outputs, 0.0, [(90, 135)], pixel_mask=torch.ones(1, 64, 64, dtype=torch.int64)
    )[0]
    assert torch.equal(full["masks"], unpadded["masks"])  # no padding: the original's resize, bit for bit


# ----------------------------------------------------------------------------------------------------------------------
# 3. transformers' segmentation / segments_info, the pipeline, RLE
# ----------------------------------------------------------------------------------------------------------------------


def _hand_made_outputs() -> SimpleNamespace:
    """Four instances on a 4 x 6 grid (target size = grid size: the resize is the identity), scores .92 > .8 > .7 > .6:
    A covers the left half, B everything (owns the right half: 50 % of its area), C a square inside A (owns nothing),
    D nothing; plus a query below the threshold."""
    scores = torch.tensor([0.92, 0.8, 0.7, 0.6, 0.1])
    logits = torch.full((1, 5, 3), -30.0)
    logits[0, torch.arange(5), torch.tensor([2, 0, 1, 1, 0])] = torch.log(scores / (1 - scores))
    masks = torch.full((1, 5, 4, 6), -5.0)
    masks[0, 0, :, :3] = 5.0
    masks[0, 1] = 5.0
    masks[0, 2, 1:3, 1:3] = 5.0
    masks[0, 4] = 5.0
    boxes = torch.tensor([[0.25, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0], [0.33, 0.5, 0.33, 0.5], [0.5, 0.5, 0.1, 0.1]])
    return SimpleNamespace(logits=logits, pred_boxes=torch.cat([boxes, boxes[:1]])[None], pred_masks=masks)


def test_segmentation_map_and_segments_info() -> None:
    processor = RFDetrImageProcessor(num_top_queries=5)
    result = processor.post_process_instance_segmentation(_hand_made_outputs(), 0.5, [(4, 6)])[0]
    assert result["labels"].tolist() == [2, 0, 1, 1] and result["masks"].shape == (4, 4, 6)
    assert not result["masks"][3].any()  # D: empty mask, kept in `masks` as the original keeps it
    expected = torch.tensor([[1, 1, 1, 2, 2, 2]] * 4, dtype=torch.int32)
    assert result["segmentation"].dtype == torch.int32 and torch.equal(result["segmentation"], expected)
    assert result["segments_info"] == [
        {"id": 1, "label_id": 2, "score": pytest.approx(0.92)},
        {"id": 2, "label_id": 0, "score": pytest.approx(0.8)},
    ]
    # the pipeline's overlap_mask_area_threshold=0.5: B owns exactly half of its mask, not more -> dropped, hole -1
    strict = processor.post_process_instance_segmentation(
        _hand_made_outputs(), 0.5, [(4, 6)], overlap_mask_area_threshold=0.5
    )[0]
    assert torch.equal(strict["segmentation"], torch.where(expected == 1, 1, -1).to(torch.int32))
    assert [s["id"] for s in strict["segments_info"]] == [1]
    looser = processor.post_process_instance_segmentation(
        _hand_made_outputs(), 0.5, [(4, 6)], overlap_mask_area_threshold=0.49
    )[0]
    assert torch.equal(looser["segmentation"], expected)


def _painted_in_score_order(masks: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """transformers' rf_detr painting, one instance at a time: each paints the pixels nobody painted yet, instances
    with nothing to paint get no id. Returns the id map and the indices of the painted instances."""
    segmentation = torch.full(masks.shape[1:], -1, dtype=torch.int32)
    painted = []
    for index, mask in enumerate(masks):
        fresh = mask & (segmentation == -1)
        if fresh.any():
            painted.append(index)
            segmentation[fresh] = len(painted)
    return segmentation, painted


def test_segmentation_map_equals_painting_in_score_order() -> None:
    """Over 32 instances (several chunks of the vectorised first-cover), the map is the one-by-one painting."""
    outputs = seg_outputs(batch=2, queries=60, classes=4, head=(12, 10), seed=10)
    outputs.pred_masks -= 8  # sparser masks: later instances still own some pixels
    results = RFDetrImageProcessor(num_top_queries=200).post_process_instance_segmentation(
        outputs, 0.0, [(41, 29), (16, 50)]
    )
    for result in results:
        expected, painted = _painted_in_score_order(result["masks"])
        assert result["masks"].shape[0] == 200 and len(painted) > 40
        assert torch.equal(result["segmentation"], expected)
        assert [s["id"] for s in result["segments_info"]] == list(range(1, len(painted) + 1))
        assert [s["label_id"] for s in result["segments_info"]] == result["labels"][painted].tolist()
        assert [s["score"] for s in result["segments_info"]] == result["scores"][painted].tolist()


def test_segmentation_map_matches_transformers_rf_detr() -> None:
    """transformers' own rf_detr post-processor (5.x) with its logit threshold 0.0 gives the same map and segments as
    ours with the probability 0.5 (scores: it rounds to 6 digits)."""
    try:
        from transformers import RfDetrImageProcessor
    except ImportError:
        pytest.skip("this transformers has no rf_detr (4.57)")
    outputs = seg_outputs(batch=2, queries=30, classes=5, head=(14, 14), seed=11)
    outputs.pred_masks -= 6
    theirs = RfDetrImageProcessor().post_process_instance_segmentation(
        outputs, threshold=0.05, mask_threshold=0.0, target_sizes=[(45, 61), (70, 33)], top_k=30
    )
    ours = RFDetrImageProcessor(num_top_queries=30).post_process_instance_segmentation(
        outputs, 0.05, [(45, 61), (70, 33)]
    )
    for mine, reference in zip(ours, theirs):
        assert len(reference["segments_info"]) > 3
        assert torch.equal(mine["segmentation"], reference["segmentation"])
        for segment, expected in zip(mine["segments_info"], reference["segments_info"], strict=True):
            assert segment["id"] == expected["id"] and segment["label_id"] == expected["label_id"]
            assert segment["score"] == pytest.approx(expected["score"], abs=1e-6)


def test_binary_maps_keep_every_instance() -> None:
    processor = RFDetrImageProcessor(num_top_queries=5)
    result = processor.post_process_instance_segmentation(_hand_made_outputs(), 0.5, [(4, 6)], return_binary_maps=True)
    result = result[0]
    assert result["segmentation"] is result["masks"] and result["segmentation"].shape == (4, 4, 6)
    assert [s["id"] for s in result["segments_info"]] == [1, 2, 3, 4]
    assert [s["label_id"] for s in result["segments_info"]] == [2, 0, 1, 1]


def test_coco_rle_round_trip() -> None:
    from pycocotools import mask as mask_utils

    outputs = seg_outputs(batch=2, queries=20, classes=3, head=(10, 12), seed=8)
    outputs.logits[1] = -20.0
    processor = RFDetrImageProcessor(num_top_queries=20)
    results = processor.post_process_instance_segmentation(
        outputs, 0.2, [(37, 53), (20, 20)], return_coco_annotation=True
    )
    rles = results[0]["segmentation"]
    assert len(rles) == len(results[0]["scores"]) > 2
    json.dumps(rles)  # ready for a COCO results file
    assert all(rle["size"] == [37, 53] and isinstance(rle["counts"], str) for rle in rles)
    decoded = torch.from_numpy(mask_utils.decode(rles)).permute(2, 0, 1).bool()
    assert torch.equal(decoded, results[0]["masks"])
    areas = torch.tensor(mask_utils.area(rles), dtype=torch.int64)
    assert torch.equal(areas, results[0]["masks"].flatten(1).sum(1))
    assert results[1]["segmentation"] == [] and results[1]["segments_info"] == []


def test_image_segmentation_pipeline_reads_the_result() -> None:
    """transformers' `ImageSegmentationPipeline.postprocess` (its threshold 0.9, mask_threshold 0.5 and
    overlap_mask_area_threshold 0.5) on our processor: one PIL mask per segment, equal to the id map's pixels."""
    from transformers import ImageSegmentationPipeline

    outputs = _hand_made_outputs()
    outputs.logits[0, 1, 0] = 3.0  # B (score 0.95) now first: it covers everything, so A, C and D own nothing
    pipe = ImageSegmentationPipeline.__new__(ImageSegmentationPipeline)
    pipe.image_processor = RFDetrImageProcessor(num_top_queries=5)
    pipe.model = SimpleNamespace(config=SimpleNamespace(id2label={0: "cat", 1: "dog", 2: "bird"}))
    model_outputs = {**vars(outputs), "target_size": [(4, 6)]}
    annotations = pipe.postprocess(model_outputs, threshold=0.5)
    assert [a["label"] for a in annotations] == ["cat"]
    assert annotations[0]["score"] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    assert annotations[0]["mask"].mode == "L" and annotations[0]["mask"].size == (6, 4)
    assert set(annotations[0]["mask"].getdata()) == {255}
    default = pipe.postprocess({**vars(_hand_made_outputs()), "target_size": [(4, 6)]})  # threshold 0.9: A (0.92) only
    assert [a["label"] for a in default] == ["bird"] and list(default[0]["mask"].getdata()) == [
        255,
        255,
        255,
        0,
        0,
        0,
    ] * 4


@pytest.fixture(scope="module")
def padded_seg_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny RF-DETR Seg folder whose saved processor keeps the aspect ratio (so a 480x300 image is padded)."""
    from hf_rfdetr import RFDetrForInstanceSegmentation
    from tests.conftest import perturb_, tiny_config

    torch.manual_seed(0)
    config = tiny_config(segmentation_head=True)
    folder = tmp_path_factory.mktemp("seg_keep_aspect")
    perturb_(RFDetrForInstanceSegmentation(config), 0, scale=0.1).eval().save_pretrained(folder)
    RFDetrImageProcessor.from_config(config, keep_aspect_ratio=True).save_pretrained(folder)
    return folder


def _top_half_of_the_image_region(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    """Forward hook: every query's mask logits cover exactly the top half of the image region (not of the canvas)."""
    canvas_height = kwargs["pixel_values"].shape[-2] if "pixel_values" in kwargs else args[0].shape[-2]
    pixel_mask = kwargs.get("pixel_mask")
    image_rows = canvas_height if pixel_mask is None else int(pixel_mask[0, :, 0].sum())
    mask_rows = output.pred_masks.shape[-2]
    output.pred_masks = torch.full_like(output.pred_masks, -20.0)
    output.pred_masks[:, :, : image_rows * mask_rows // canvas_height // 2] = 20.0
    return output


def test_padded_inputs_give_masks_on_the_image_region_in_predict_and_pipeline(padded_seg_folder: Path) -> None:
    """With `keep_aspect_ratio=True` the processor pads a 480x300 image; the facade's `predict` and
    `pipeline("image-segmentation")` pass the padding's `pixel_mask` on, so a mask covering the top half of the image
    region covers the top 150 of the image's 300 rows (the padded canvas stretched it to 125 before)."""
    from PIL import Image
    from transformers import pipeline

    from hf_rfdetr import RFDETRNano

    image = Image.new("RGB", (480, 300), (128, 128, 128))
    facade = RFDETRNano(pretrain_weights=str(padded_seg_folder))
    canvas = facade.processor(image, return_tensors="pt")["pixel_values"].shape[-2:]
    assert canvas[0] * 480 > canvas[1] * 300  # the canvas is taller than the image: there is padding below it
    facade.model.register_forward_hook(_top_half_of_the_image_region, with_kwargs=True)
    detections = facade.predict(image, threshold=0.0)
    assert len(detections) > 0 and detections.mask.shape[1:] == (300, 480)
    assert set(detections.mask.any(axis=2).sum(axis=1).tolist()) == {150}
    segmenter = pipeline("image-segmentation", model=str(padded_seg_folder))
    segmenter.model.register_forward_hook(_top_half_of_the_image_region, with_kwargs=True)
    assert segmenter.model.config.decoder_layers < 3  # a batch of more images than layers unbatches right
    for results in segmenter([image] * 3, threshold=0.0, batch_size=3):
        assert results
        rows = [int((np.array(result["mask"]) > 0).any(axis=1).sum()) for result in results]
        assert set(rows) <= {0, 150} and 150 in rows  # a segment owns its pixels or none (overlaps resolved)


# ----------------------------------------------------------------------------------------------------------------------
# 4. Errors
# ----------------------------------------------------------------------------------------------------------------------


def _call(outputs: Any, **kwargs: Any) -> list[dict[str, Any]]:
    return RFDetrImageProcessor(num_top_queries=10).post_process_instance_segmentation(outputs, **kwargs)


def test_missing_or_ill_shaped_pred_masks() -> None:
    outputs = seg_outputs(batch=2, queries=10, classes=3, head=(8, 8))
    detection_only = SimpleNamespace(logits=outputs.logits, pred_boxes=outputs.pred_boxes)
    with pytest.raises(ValueError, match=r"`outputs.pred_masks` is missing.*\(B, Q, h, w\).*post_process_object_det"):
        _call(detection_only)
    for bad in (outputs.pred_masks[:, :, 0], outputs.pred_masks[:, :5], outputs.pred_masks[:1]):
        with pytest.raises(ValueError, match=r"`outputs.pred_masks` must be mask logits of shape \(B, Q, h, w\) = "):
            _call(SimpleNamespace(**{**vars(outputs), "pred_masks": bad}))
    with pytest.raises(ValueError, match=r"got \(2, 5, 8, 8\)"):
        _call(SimpleNamespace(**{**vars(outputs), "pred_masks": outputs.pred_masks[:, :5]}))


def test_bad_target_sizes_and_options() -> None:
    outputs = seg_outputs(batch=2, queries=10, classes=3, head=(8, 8))
    with pytest.raises(ValueError, match=r"Got 1 target sizes for a batch of 2"):
        _call(outputs, target_sizes=[(10, 10)])
    with pytest.raises(ValueError, match=r"`target_sizes` must have shape \(batch_size, 2\), got \(2, 3\)"):
        _call(outputs, target_sizes=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"`target_sizes\[1\]` must be a \(height, width\) pair of positive integers"):
        _call(outputs, target_sizes=[(10, 10), (0, 5)])
    with pytest.raises(ValueError, match=r"`target_sizes\[0\]`.*got \(10.5, 10.0\)"):
        _call(outputs, target_sizes=[(10.5, 10), (5, 5)])
    with pytest.raises(ValueError, match=r"`mask_threshold` is a probability in \[0, 1\]"):
        _call(outputs, mask_threshold=1.5)
    with pytest.raises(ValueError, match=r"`mask_threshold` is a probability in \[0, 1\].*got '0.5'"):
        _call(outputs, mask_threshold="0.5")
    assert torch.equal(_call(outputs, mask_threshold=np.float32(0.5))[0]["masks"], _call(outputs)[0]["masks"])
    with pytest.raises(ValueError, match=r"cannot both be True"):
        _call(outputs, return_binary_maps=True, return_coco_annotation=True)
    for bad in (2, None, "0.5"):
        with pytest.raises(ValueError, match=rf"`overlap_mask_area_threshold` must be in \[0, 1\].*got {bad!r}"):
            _call(outputs, overlap_mask_area_threshold=bad)
    for bad in (None, "0.3", 1.01):
        with pytest.raises(ValueError, match=rf"`threshold` must be in \[0, 1\] \(a number\), got {bad!r}"):
            _call(outputs, threshold=bad)
    with pytest.raises(ValueError, match=r"`target_sizes\[0\]` must be a \(height, width\).*got \(nan, 10.0\)"):
        _call(outputs, target_sizes=[(float("nan"), 10), (5, 5)])
    with pytest.raises(ValueError, match=r"`pixel_mask` maps masks to `target_sizes`"):
        _call(outputs, pixel_mask=torch.ones(2, 32, 32))
    with pytest.raises(ValueError, match=r"`pixel_mask` must be the processor's \(B, H, W\) mask with B = 2"):
        _call(outputs, target_sizes=[(4, 4)] * 2, pixel_mask=torch.ones(32, 32))
    with pytest.warns(UserWarning, match=r"ignored argument\(s\) \['label_ids_to_fuse'\]"):
        _call(outputs, label_ids_to_fuse=[1])


def test_extreme_mask_thresholds() -> None:
    outputs = seg_outputs(batch=1, queries=10, classes=3, head=(8, 8))
    assert _call(outputs, threshold=0.0, mask_threshold=0.0)[0]["masks"].all()
    assert not _call(outputs, threshold=0.0, mask_threshold=1.0)[0]["masks"].any()


# ----------------------------------------------------------------------------------------------------------------------
# 5. The saved folder carries the split modules (trust_remote_code)
# ----------------------------------------------------------------------------------------------------------------------


def test_saved_processor_runs_as_remote_code(tmp_path: Path) -> None:
    """`save_pretrained` copies the modules the processor imports (`image_sizing.py`, `coco_targets.py`, ...); in a
    process where `hf_rfdetr` cannot be imported, `AutoImageProcessor.from_pretrained(trust_remote_code=True)` pre- and
    post-processes as here."""
    folder = tmp_path / "processor"
    processor = RFDetrImageProcessor.from_config(RFDetrConfig.from_variant("seg-nano"), num_top_queries=20)
    processor.save_pretrained(folder)
    assert {
        "image_processing_rfdetr.py",
        "image_sizing.py",
        "post_processing.py",
        "image_io.py",
        "coco_targets.py",
    } <= {path.name for path in folder.glob("*.py")}
    outputs = seg_outputs(batch=1, queries=20, classes=3, head=(10, 10), seed=9)
    torch.save(vars(outputs), tmp_path / "outputs.pt")
    expected = processor.post_process_instance_segmentation(outputs, 0.3, [(31, 45)])[0]
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["hf_rfdetr"] = None  # any import of the package now fails
        import numpy as np, torch
        from transformers import AutoImageProcessor
        processor = AutoImageProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        pixels = processor(np.zeros((40, 60, 3), dtype=np.uint8), return_tensors="pt")["pixel_values"]
        assert tuple(pixels.shape) == (1, 3, 312, 312), pixels.shape
        outputs = torch.load({str(tmp_path / "outputs.pt")!r})
        result = processor.post_process_instance_segmentation(outputs, 0.3, [(31, 45)])[0]
        torch.save({{k: result[k] for k in ("scores", "labels", "boxes", "masks", "segmentation")}},
                   {str(tmp_path / "result.pt")!r})
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    completed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    remote = torch.load(tmp_path / "result.pt")
    assert len(expected["scores"]) > 0
    for key, value in remote.items():
        assert torch.equal(value, expected[key]), key
