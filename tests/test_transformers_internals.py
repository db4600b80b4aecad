"""The transformers internals hf_rfdetr relies on, one test each: if transformers changes one, the test names it."""

from __future__ import annotations

import inspect

import transformers
from transformers import PreTrainedModel, Trainer
from transformers.models.auto import modeling_auto
from transformers.pipelines import base as pipelines_base


def test_object_detection_names_table_is_a_writable_dict_read_by_the_pipeline() -> None:
    """hf_rfdetr.registration and modeling_rfdetr._name_for_pipelines write our class names into
    `MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES`, which the object-detection pipeline's `check_model_type` reads."""
    table = modeling_auto.MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES
    assert isinstance(table, dict), (
        f"transformers {transformers.__version__}: MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES is now "
        f"{type(table).__name__}; hf_rfdetr.registration writes into it"
    )
    source = inspect.getsource(pipelines_base.Pipeline.check_model_type)
    assert "__class__.__name__" in source, "Pipeline.check_model_type no longer checks class names"


def test_upload_modified_files_is_a_pretrained_model_method() -> None:
    """modeling_rfdetr overrides `PushToHubMixin._upload_modified_files` to add the model card and code on push."""
    method = getattr(PreTrainedModel, "_upload_modified_files", None)
    assert callable(method), (
        f"transformers {transformers.__version__} has no PreTrainedModel._upload_modified_files; "
        "RFDetrPreTrainedModel's override of it (modeling_rfdetr.py) is never called"
    )
    parameters = list(inspect.signature(method).parameters)
    assert parameters[:3] == ["self", "working_dir", "repo_id"], parameters


def test_trainer_has_a_gather_function_attribute() -> None:
    """training/trainer.py turns `Trainer.gather_function` (set in `create_accelerator_and_postprocess`) into a
    property that gathers the label dicts across processes."""
    source = inspect.getsource(Trainer)
    assert "self.gather_function" in source, (
        f"transformers {transformers.__version__}: Trainer no longer sets self.gather_function; "
        "RFDetrTrainer.gather_function (training/trainer.py) needs a new hook"
    )


def test_pipelines_build_their_batch_collate_function_from_the_module_global() -> None:
    """modeling_rfdetr._explain_unequal_pipeline_batches (remote code) replaces `pipelines.base.pad_collate_fn`, which
    `Pipeline.get_iterator` must look up by name when it batches, and which concatenates `pixel_values` unpadded."""
    source = inspect.getsource(pipelines_base.Pipeline.get_iterator)
    assert "pad_collate_fn(self.tokenizer, feature_extractor)" in source, (
        f"transformers {transformers.__version__}: Pipeline.get_iterator no longer calls pad_collate_fn; "
        "modeling_rfdetr._explain_unequal_pipeline_batches needs a new hook"
    )
    assert 'key in ["pixel_values", "image"]' in inspect.getsource(pipelines_base._pad)
