"""A small RF-DETR Seg trained from scratch on synthetic shapes learns to segment them (held-out mask mAP50 >= 0.5, EMA
weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hf_rfdetr import RFDetrConfig, RFDetrForInstanceSegmentation, fine_tune
from hf_rfdetr.training import apply_transforms, load_coco_folder

from .synthetic_coco import class_names, write_synthetic_coco


@pytest.mark.slow
def test_seg_training_from_scratch_reaches_mask_map50_on_held_out_images(tmp_path: Path) -> None:
    """240 training images of 1-2 coloured shapes with masks (3 classes), 8 epochs on the CPU at lr 5e-4.

    Smaller images, larger shapes and fewer per image than the detection test's: the masks are predicted at a quarter
    of the input (24 x 24 here), so the shapes span 7 to 14 mask pixels, and each step costs less. (With up to 3
    shapes or at lr 1e-3 the held-out mask mAP50 of the regular weights came out at 0.46 to 0.56: too close to 0.5.)"""
    root = write_synthetic_coco(
        tmp_path / "shapes",
        num_train=240,
        num_valid=32,
        num_test=48,
        image_size=(96, 96),
        masks=True,
        object_size=(0.3, 0.6),
        max_objects=2,
    )
    names = class_names(3)
    config = RFDetrConfig(
        backbone_hidden_size=96,
        backbone_num_attention_heads=3,
        backbone_num_hidden_layers=4,
        out_feature_indexes=[2, 4],
        patch_size=8,
        num_windows=2,
        resolution=96,
        positional_encoding_size=12,
        d_model=96,
        decoder_self_attention_heads=4,
        decoder_cross_attention_heads=4,
        decoder_ffn_dim=256,
        decoder_layers=2,
        num_queries=30,
        group_detr=4,
        segmentation_head=True,
        id2label=dict(enumerate(names)),
        label2id={name: index for index, name in enumerate(names)},
    )
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one thread is faster for this small model than two contending ones
    trainer = fine_tune(
        RFDetrForInstanceSegmentation(config),
        root,
        epochs=8,
        batch_size=8,
        grad_accum_steps=1,
        lr=5e-4,
        lr_encoder=5e-4,
        device="cpu",
        tensorboard=False,
        num_workers=0,
        checkpoint_interval=100,
        output_dir=tmp_path / "run",
    )
    losses = {round(e["epoch"]): e["loss"] for e in trainer.state.log_history if "loss" in e}
    curve = [
        (
            round(e["epoch"]),
            losses[round(e["epoch"])],
            e["eval_map_50"],
            e["eval_segm_map_50"],
            e["eval_ema_segm_map_50"],
        )
        for e in trainer.state.log_history
        if "eval_segm_map_50" in e
    ]
    print("epoch, training loss, validation box mAP50, mask mAP50, EMA mask mAP50:")
    print("\n".join(f"{epoch} {loss:.2f} {box:.3f} {mask:.3f} {ema:.3f}" for epoch, loss, box, mask, ema in curve))
    test_split = apply_transforms(load_coco_folder(root, splits=["train", "test"], masks=True), config)["test"]
    held_out = trainer.evaluate(test_split, metric_key_prefix="test")
    print({key: round(value, 3) for key, value in held_out.items() if key.endswith(("map", "map_50"))})
    # The bar is on the EMA weights (0.61 here), which the recipe evaluates and keeps as the model to use; the regular
    # weights swing by about 0.1 from epoch to epoch at this constant learning rate (0.56 here), so they get a looser
    # bar that still fails a model that did not learn to segment (about 0.3 after one epoch).
    assert held_out["test_ema_segm_map_50"] >= 0.5 and held_out["test_segm_map_50"] >= 0.45
    # it learned during these epochs (the mask head scores about 0.3 after one epoch already, before the boxes do)
    assert curve[-1][2] > curve[0][2] + 0.4 and curve[-1][4] > curve[0][4] + 0.25
