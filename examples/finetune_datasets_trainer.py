"""Fine-tune RF-DETR on a `datasets` dataset in the Hub detection layout with `transformers.Trainer`, step by step.

The dataset has an `image` column and an `objects` column with `bbox` (COCO `[x, y, w, h]` in pixels) and
`category` per object, as `cppe-5` on the Hub. This script is what `hf_rfdetr.fine_tune` does, written out with the
usual Hugging Face pieces: `TrainingArguments`, the `RFDetrTrainer` (a `Trainer` with the original RF-DETR optimizer
groups, EMA weights and COCO metrics), the RF-DETR transforms and collator.

    python examples/finetune_datasets_trainer.py --dataset cppe-5 --model nano --epochs 20 --output-dir rf-detr-cppe5
    python examples/finetune_datasets_trainer.py --dataset ./my-dataset-saved-with-save_to_disk ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import datasets
from transformers import AutoModelForObjectDetection, TrainingArguments

import hf_rfdetr
from hf_rfdetr import RFDetrConfig, RFDetrForObjectDetection, RFDetrImageProcessor
from hf_rfdetr.model_card import write_model_card
from hf_rfdetr.training import (
    CocoEvaluator,
    LearningRates,
    RFDetrDataCollator,
    RFDetrEMACallback,
    RFDetrTrainer,
    apply_transforms,
    id2label_from_dataset,
    prepare_dataset,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="Hub dataset id, or a folder written by save_to_disk")
    parser.add_argument("--model", default="nano", help="variant name, Hub id or local folder (default: nano)")
    parser.add_argument("--output-dir", default="rf-detr-finetuned")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum-steps", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--lr-encoder", type=float, default=1.5e-4)
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is available")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the fine-tuned model to this Hub repository")
    return parser.parse_args(argv)


def load_splits(name: str) -> datasets.DatasetDict:
    """The dataset with `train` and `validation` splits (a Hub `test` split serves as validation when there is none;
    without either, 15 % of train is held out)."""
    dataset = datasets.load_from_disk(name) if Path(name).is_dir() else datasets.load_dataset(name)
    if "validation" not in dataset:
        if "test" in dataset:
            dataset["validation"] = dataset.pop("test")
        else:
            held_out = dataset["train"].train_test_split(test_size=0.15, seed=0)
            dataset = datasets.DatasetDict(train=held_out["train"], validation=held_out["test"])
    return dataset


def load_model(name: str, id2label: dict[int, str]) -> RFDetrForObjectDetection:
    """A variant with random weights, or a checkpoint whose class head is re-initialised for these labels."""
    label2id = {label: index for index, label in id2label.items()}
    if name.lower() in hf_rfdetr.VARIANTS:
        return RFDetrForObjectDetection(RFDetrConfig.from_variant(name, id2label=id2label, label2id=label2id))
    return AutoModelForObjectDetection.from_pretrained(
        name, id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    splits = prepare_dataset(load_splits(args.dataset))  # checks the columns, casts categories to a ClassLabel
    id2label = id2label_from_dataset(splits)
    model = load_model(args.model, id2label)
    transformed = apply_transforms(splits, model.config)  # the original's augmentation (train) / resize (validation)

    training_args = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum_steps,
        learning_rate=args.lr,
        weight_decay=1e-4,
        max_grad_norm=0.1,
        lr_scheduler_type="constant",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        logging_strategy="epoch",
        metric_for_best_model="eval_map",
        report_to=[],
        use_cpu=args.cpu,
        dataloader_num_workers=args.num_workers,
        remove_unused_columns=False,  # the collator needs the `labels` column as it is
    )
    trainer = RFDetrTrainer(
        model=model,
        args=training_args,
        train_dataset=transformed["train"],
        eval_dataset=transformed["validation"],
        data_collator=RFDetrDataCollator.from_config(model.config),  # per-batch multi-scale
        compute_metrics=CocoEvaluator(id2label),
        learning_rates=LearningRates(lr=args.lr, lr_encoder=args.lr_encoder),
        ema=RFDetrEMACallback(decay=0.993, tau=100),
    )
    trainer.train()
    metrics = trainer.evaluate()  # eval_map, eval_map_50, ..., per class, and eval_ema_* for the EMA weights
    trainer.log_metrics("eval", metrics)

    trainer.save_model(args.output_dir)
    RFDetrImageProcessor.from_config(model.config).save_pretrained(args.output_dir)
    trainer.save_metrics("eval", metrics, combined=False)  # eval_results.json: the model card reads it
    trainer.save_state()
    dataset_id = None if Path(args.dataset).is_dir() else args.dataset
    write_model_card(
        args.output_dir, dataset=dataset_id, training=f"fine-tuned with RFDetrTrainer for {args.epochs} epochs"
    )
    if args.push_to_hub:
        hf_rfdetr.push_to_hub(args.output_dir, args.push_to_hub, dataset=dataset_id)
    return metrics


if __name__ == "__main__":
    main()
