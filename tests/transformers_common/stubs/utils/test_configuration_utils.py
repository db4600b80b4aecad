"""Stand-in for transformers' `tests/utils/test_configuration_utils.py` (not in its sdist): only the dict
`ConfigTester.check_config_arguments_init` reads, copied from transformers 5.x (huggingface/transformers,
`tests/utils/test_configuration_utils.py`). transformers 4.57's dict adds generation arguments that RF-DETR
does not use."""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
